"""Two server processes sharing Redis and one database: fan-out, one publisher, hand-over.

Server A runs in demo mode (it owns the simulator); server B is configured like a second
process of the same deployment: same database and SECRET_KEY, Alpaca URLs pointing at A's
simulator. Both run the broker bridge; only the leader publishes.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from server import FolioServer
from tests.conftest import Running, base_env, recv, subscribe, wait
from tests.handlers.test_ws import ORDER
from tests.streaming.test_redis import REDIS_URL, prefix  # noqa: F401 - fixture

pytestmark = pytest.mark.redis


async def _start(env: dict[str, str]) -> Running:
    server = FolioServer(load_settings(environ=env))
    await asyncio.wait_for(server.start(), wait(20))
    return Running(server)


async def _pair(tmp_path: Path, prefix: str) -> tuple[Running, Running]:  # noqa: F811
    a = await _start(base_env(tmp_path / "a", redis_url=REDIS_URL, redis_prefix=prefix))
    sim = a.server.simulator
    b_env = base_env(
        tmp_path / "b",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        database_url=a.settings.database_url,
        secret_key=a.settings.secret_key,
        alpaca_api_key="DEMO-MARKET-DATA",
        alpaca_secret_key="demo-market-data-secret",
        alpaca_trading_url=sim.trading_url,
        alpaca_stream_url=sim.trading_stream_url,
        alpaca_data_url=sim.data_stream_url,
    )
    b = await _start(b_env)
    return a, b


async def _messages(conn: Any, seconds: float) -> list[dict[str, Any]]:
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait(seconds)
    while loop.time() < end:
        try:
            msg = await recv(conn, max(0.05, end - loop.time()))
        except TimeoutError:
            break
        assert msg is not None
        out.append(msg)
    return out


@pytest.mark.gen_test(timeout=90)
async def test_events_fan_out_across_processes_once(tmp_path: Path, prefix: str) -> None:  # noqa: F811
    """A hook call on A reaches alice on B; a broker fill is published once (by the leader)."""
    a, b = await _pair(tmp_path, prefix)
    try:
        assert (a.server.leader.is_leader, b.server.leader.is_leader) == (True, False)
        cookie = await b.login("alice")  # sessions are shared through the database
        on_b = await b.connect(cookie)
        on_a = await a.connect(cookie)
        ack, _ = await subscribe(on_b)
        await subscribe(on_a)
        alice = await a.user_id("alice")
        assert (await a.push(alice, "order_update", ORDER)).code == 202
        for conn in (on_a, on_b):
            msg = await recv(conn)
            assert msg is not None and msg["type"] == "order_update"
            assert msg["seq"] == ack["seq"] + 1
        # Targeted fan-out: a process receives alice's stream while it holds her socket only.
        bob_cookie = await a.login("bob")
        bob_on_a = await a.connect(bob_cookie)
        await subscribe(bob_on_a)
        bob = await a.user_id("bob")
        assert a.server.broker.watched() == {alice, bob}  # type: ignore[attr-defined]
        assert b.server.broker.watched() == {alice}  # type: ignore[attr-defined]
        bob_on_a.close()
        for _ in range(200):
            if bob not in a.server.broker.watched():  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        assert a.server.broker.watched() == {alice}  # type: ignore[attr-defined]

        # a fill at the broker: both processes' bridges see it, only the leader publishes it
        a.server.simulator.submit_order("DEMO-ALICE", symbol="IBM", qty=Decimal("3"), side="buy")
        msgs = await _messages(on_b, 3.0)
        statuses = [m["data"]["status"] for m in msgs if m["type"] == "order_update"]
        assert statuses == ["new", "filled"], statuses
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(ack["seq"] + 2, ack["seq"] + 2 + len(seqs)))
        # B's own state followed the broker too (it answers REST and snapshots from memory)
        code, body = await b.get_json("/api/positions", cookie)
        assert code == 200 and [p["symbol"] for p in body["positions"]] == ["IBM"]

        # A goes away: B takes the lease and announces the state it holds
        await a.server.stop()
        await b.server.leader.tick()
        assert b.server.leader.is_leader and b.server.service.publishing
        msgs = await _messages(on_b, 1.0)
        announced = [
            p["symbol"]
            for m in msgs
            if m["type"] in ("batch", "position_update")
            for p in (m["data"].get("positions", []) if m["type"] == "batch" else [m["data"]])
        ]
        assert "IBM" in announced
    finally:
        await b.server.stop()
        await a.server.stop()


@pytest.mark.gen_test(timeout=90)
async def test_sixth_connection_refused_across_processes(tmp_path: Path, prefix: str) -> None:  # noqa: F811
    """REQ-3 for the deployment: three tabs on A and two on B; the sixth is refused (1008)
    on either process; closing one on B frees a slot that a tab on A can take."""
    a, b = await _pair(tmp_path, prefix)
    try:
        cookie = await a.login("alice")
        on_a = [await a.connect(cookie) for _ in range(3)]
        on_b = [await b.connect(cookie) for _ in range(2)]
        for conn in (*on_a, *on_b):
            await subscribe(conn, ["orders"])
        for server in (a, b):
            sixth = await server.connect(cookie)
            msg = await recv(sixth)
            assert msg is not None and msg["data"]["code"] == "max_connections"
            assert await recv(sixth) is None and sixth.close_code == 1008
        # bob is not affected
        bob = await b.connect(await b.login("bob"))
        await subscribe(bob, ["orders"])
        on_b[0].close()
        alice = await a.user_id("alice")
        for _ in range(200):
            if len(b.server.manager.hub.connections(alice)) == 1:
                break
            await asyncio.sleep(0.02)
        for _ in range(200):  # the slot's release is a Redis round trip
            if not b.server.broker._releasing:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        again = await a.connect(cookie)
        ack, _ = await subscribe(again, ["orders"])
        assert ack["type"] == "subscribed"
    finally:
        await b.server.stop()
        await a.server.stop()
