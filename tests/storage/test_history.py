"""Account history: the store's points (SQLite and PostgreSQL) and the recorder's throttling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from storage.db import AccountPoint, Store, open_store
from storage.history import AccountRecorder
from tests.conftest import postgres_schema_url

SECRET = "s" * 32


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: Any, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/h.db"
        return
    with postgres_schema_url() as url:
        yield url


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def account(ts: str, equity: str, day_pnl: str | None = "1.00") -> dict[str, Any]:
    return {
        "equity": equity,
        "buyingPower": equity,
        "cash": equity,
        "portfolioValue": equity,
        "dayPnl": day_pnl,
        "dayPnlPercent": None if day_pnl is None else "0.00",
        "timestamp": ts,
    }


def test_points_round_trip_exactly_and_prune(store_url: str) -> None:
    """Points come back oldest first with exact money; `since` and prune cut by time."""

    async def go() -> None:
        store: Store = await open_store(store_url, SECRET)
        alice = await store.create_user("alice", "pw")
        bob = await store.create_user("bob", "pw")
        now = datetime.now(UTC).replace(microsecond=123456)
        old = now - timedelta(hours=25)
        await store.add_account_points(
            [
                AccountPoint(alice.id, now, Decimal("100027.80"), Decimal("1027.80")),
                AccountPoint(alice.id, old, Decimal("99000.00"), None),
                AccountPoint(bob.id, now, Decimal("5.10"), Decimal("-0.05")),
                # the same instant again is skipped, not an error
                AccountPoint(alice.id, now, Decimal("1.00"), None),
            ]
        )
        got = await store.account_points(alice.id, now - timedelta(days=2))
        assert [(p.at, p.equity, p.day_pnl) for p in got] == [
            (old, Decimal("99000.00"), None),
            (now, Decimal("100027.80"), Decimal("1027.80")),
        ]
        recent = await store.account_points(alice.id, now - timedelta(days=1))
        assert [p.equity for p in recent] == [Decimal("100027.80")]
        assert await store.prune_account_points(now - timedelta(days=1)) == 1
        assert len(await store.account_points(alice.id, now - timedelta(days=2))) == 1
        assert len(await store.account_points(bob.id, now - timedelta(days=2))) == 1
        await store.close()

    run(go())


def test_recorder_records_changes_only_and_skips_bad_accounts(tmp_path: Any) -> None:
    """One point per changed account per sample; unchanged, missing and malformed are skipped."""

    async def go() -> None:
        store = await open_store(f"sqlite:///{tmp_path}/r.db", SECRET)
        alice = await store.create_user("alice", "pw")
        bob = await store.create_user("bob", "pw")
        now = datetime.now(UTC)
        t1 = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        t2 = (now + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        accounts: dict[str, Any] = {alice.user_id: account(t1, "100.00"), bob.user_id: None}
        enabled = [True]
        rec = AccountRecorder(store, lambda: list(accounts.items()), enabled=lambda: enabled[0])
        assert await rec.sample() == 1
        assert await rec.sample() == 0  # unchanged
        accounts[alice.user_id] = account(t2, "101.50", None)
        accounts[bob.user_id] = {**account(t2, "5.00"), "equity": "lots"}
        enabled[0] = False
        assert await rec.sample() == 0  # not the publishing process
        enabled[0] = True
        assert await rec.sample() == 1  # bob's malformed account is skipped
        points = await store.account_points(alice.id, now - timedelta(minutes=1))
        assert [(p.equity, p.day_pnl) for p in points] == [
            (Decimal("100.00"), Decimal("1.00")),
            (Decimal("101.50"), None),
        ]
        assert await store.account_points(bob.id, now - timedelta(minutes=1)) == []
        await store.close()

    run(go())


def test_recorder_task_survives_a_failing_store(tmp_path: Any, caplog: Any) -> None:
    """A store error is logged once and sampling continues; stop() ends the task."""

    async def go() -> None:
        store = await open_store(f"sqlite:///{tmp_path}/f.db", SECRET)
        user = await store.create_user("alice", "pw")
        calls = [0]

        def accounts() -> list[tuple[str, Any]]:
            calls[0] += 1
            if calls[0] <= 3:
                raise RuntimeError("boom")
            ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return [(user.user_id, account(ts, "1.00"))]

        rec = AccountRecorder(store, accounts, interval_s=0.01)
        rec.start()
        for _ in range(200):
            if rec.recorded:
                break
            await asyncio.sleep(0.01)
        await rec.stop()
        assert rec.recorded >= 1
        assert sum("recording failed" in r.getMessage() for r in caplog.records) == 1
        await store.close()

    run(go())
