"""A bridge process for the hand-over tests: RedisBroker + StreamManager + PortfolioService +
AlpacaBridge (with catch-up) for one account, run until killed (the test sends SIGKILL).

Usage: ``python -m tests.streaming.bridge_process <trading_url> <stream_url> <data_url>
<redis_url> <prefix> <user_id> <key> <secret>``. Prints ``ready`` once the account is live.
"""

from __future__ import annotations

import asyncio
import sys

from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount, Endpoints
from streaming.manager import StreamManager
from streaming.redis_broker import RedisBroker
from streaming.service import PortfolioService


async def redis_bridge(
    redis_url: str, prefix: str, user_id: str, key: str, secret: str, endpoints: Endpoints
) -> tuple[RedisBroker, StreamManager, PortfolioService, AlpacaBridge]:
    """A started Redis engine with a manager, a service and a bridge (catch-up from the engine's
    fills ledger) for one account; the bridge is not started yet."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.start()
    manager = StreamManager(broker, batch_window_ms=0)
    service = PortfolioService(manager.publisher, stale_after_s=300)
    bridge = AlpacaBridge(
        service,
        [BridgeAccount(user_id, key, secret)],
        data_key=key,
        data_secret=secret,
        endpoints=endpoints,
        sync_interval_s=300,
        calendar_factory=None,
        fills_ledger=broker.published_fills,
    )
    return broker, manager, service, bridge


async def main(argv: list[str]) -> None:
    trading_url, stream_url, data_url, redis_url, prefix, user_id, key, secret = argv
    endpoints = Endpoints(trading_url, stream_url, data_url)
    *_, bridge = await redis_bridge(redis_url, prefix, user_id, key, secret, endpoints)
    await bridge.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
