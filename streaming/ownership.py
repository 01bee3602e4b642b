"""A cluster bridge's streams follow its leases: start on taking one, stop before giving it up.

Every ``lease_s / 3`` seconds :meth:`BridgeOwnership.tick`:

1. reads the linked broker accounts (database);
2. renews this bridge's leases (:class:`streaming.leases.AccountLeases`); accounts whose lease
   was lost, or that were unlinked, have their stream stopped and their state forgotten;
3. gives up the surplus over its fair share — stream stopped, the publisher's outbox drained
   (so the fills ledger is complete), *then* the lease released, so the next owner's catch-up
   starts where this bridge ended;
4. takes free leases up to its share and starts those streams (the bridge syncs each from REST
   and catches up on what happened while nobody streamed it);
5. saves every held trader's view again if Redis lost them (restarted empty).

The bridge is told which accounts to stream (:meth:`AlpacaBridge.set_accounts`); nothing else
tells the service or the publisher whether to publish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount
from streaming.broker import BrokerUnavailable
from streaming.leases import AccountLeases
from streaming.publisher import Publisher
from streaming.service import PortfolioService
from streaming.shared import RedisViews
from streaming.tasks import every

__all__ = ["BridgeOwnership"]

log = logging.getLogger(__name__)


class BridgeOwnership:
    """Drives one bridge process's streams from its account leases.

    Args:
        leases: this bridge's leases.
        bridge: the alpaca-py bridge (started with no accounts).
        service: the portfolio service the bridge feeds.
        publisher: the process's publisher (drained before a lease is given up).
        shared: where the traders' views are saved for web processes.
        accounts: coroutine function returning every linked broker account.
    """

    def __init__(
        self,
        leases: AccountLeases,
        bridge: AlpacaBridge,
        service: PortfolioService,
        publisher: Publisher,
        shared: RedisViews,
        accounts: Callable[[], Awaitable[list[BridgeAccount]]],
    ) -> None:
        self.leases = leases
        self.bridge = bridge
        self.service = service
        self.publisher = publisher
        self.shared = shared
        self._accounts = accounts
        self._linked: dict[str, BridgeAccount] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        #: Accounts whose lease was lost (or that were unlinked) since the last balance.
        self._lost: set[str] = set()
        self._lock = asyncio.Lock()
        self._stopped = False

    async def start(self) -> None:
        """Take this bridge's first accounts, then keep renewing and balancing in the background.

        Renewal runs on its own timer, so a slow bring-up (REST sync and catch-up of an
        account just taken, which may retry for seconds) never lets the other leases lapse.
        """
        await self.tick()
        interval = self.leases.lease_s / 3.0
        self._tasks = [
            every(interval, self._renew, "lease-renewal"),
            every(interval, self.tick, "account-balance"),
        ]

    async def _renew(self) -> None:
        """Renew the leases held; remember the accounts to stop (lost, or unlinked)."""
        self._lost |= await self.leases.renew(self._linked)

    async def tick(self) -> None:
        """One round of renew, give up, take, re-save (see the module docstring)."""
        async with self._lock:
            try:
                self._linked = {a.user_id: a for a in await self._accounts()}
            except Exception as exc:  # database away: keep the last list, still renew
                log.warning("linked accounts not read (%s); using the last list", exc)
            wanted = self._linked
            await self._renew()
            lost, self._lost = self._lost, set()
            surplus = self.leases.surplus(wanted)
            if lost or surplus:
                await self._stop(lost | set(surplus))
                await self.leases.release(set(surplus) | (lost & self.leases.owned))
            taken = await self.leases.acquire(wanted)
            owned = [wanted[u] for u in sorted(self.leases.owned) if u in wanted]
            if taken or set(owned) != set(self.bridge.accounts):  # taken, or re-keyed
                await self.bridge.set_accounts(owned)
            view = self.service.current_view
            views = {a.user_id: functools.partial(view, a.user_id) for a in owned}
            try:
                if await self.shared.ensure_marker(self.leases.identity, views):
                    log.info("saved %d trader view(s) for web processes", len(views))
            except BrokerUnavailable as exc:
                log.warning("trader views not checked (%s)", exc)

    async def _stop(self, users: Collection[str]) -> None:
        """Stop these accounts' streams, forget their state, publish what they produced."""
        keep = [a for a in self.bridge.accounts if a.user_id not in users]
        await self.bridge.set_accounts(keep)
        for user_id in users:
            self.service.remove_account(user_id)
        try:
            await asyncio.wait_for(self.publisher.wait_idle(), self.leases.lease_s / 2.0)
        except TimeoutError:
            log.warning("events of a given-up account still waiting to be published")
        log.info("stopped streaming the account(s) of user(s) %s", sorted(users))

    async def stop(self) -> None:
        """Stop renewing, stop every stream, publish what is pending, release every lease."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        async with self._lock:
            await self._stop([a.user_id for a in self.bridge.accounts])
            await self.leases.close()
            await self.shared.forget_marker(self.leases.identity)
