"""Two server processes sharing Redis and one database: fan-out, account leases, hand-over.

Server A runs in demo mode (it owns the simulator); server B is configured like a second
process of the same deployment: same database and SECRET_KEY, Alpaca URLs pointing at A's
simulator. Both run the ``all`` role: each streams the broker accounts whose lease it holds
(:mod:`streaming.leases`), so every fill is published once, by one of them.
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


async def _balance(a: Running, b: Running) -> None:
    """Run both lease loops until the two demo accounts are split one each."""
    for _ in range(3):
        for server in (a, b):
            await server.server.ownership.tick()  # type: ignore[union-attr]
    owned = [s.server.ownership.leases.owned for s in (a, b)]  # type: ignore[union-attr]
    assert len(owned[0]) == len(owned[1]) == 1 and not owned[0] & owned[1], owned


@pytest.mark.gen_test(timeout=120)
async def test_events_fan_out_across_processes_once(tmp_path: Path, prefix: str) -> None:  # noqa: F811
    """A hook call on A reaches alice on B; a broker fill is published once (by the process
    leasing alice's account); when that process stops, the other takes the account over."""
    a, b = await _pair(tmp_path, prefix)
    try:
        await _balance(a, b)
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

        # a fill at the broker: only the process leasing alice's account streams it
        owner, other = (a, b) if alice in a.server.ownership.leases.owned else (b, a)  # type: ignore[union-attr]
        assert alice not in other.server.service.state_users()  # type: ignore[union-attr]
        a.server.simulator.submit_order("DEMO-ALICE", symbol="IBM", qty=Decimal("3"), side="buy")
        msgs = await _messages(on_b, 3.0)
        statuses = [m["data"]["status"] for m in msgs if m["type"] == "order_update"]
        assert statuses == ["new", "filled"], statuses
        seqs = [m["seq"] for m in msgs]
        assert seqs == list(range(ack["seq"] + 2, ack["seq"] + 2 + len(seqs)))
        # Both answer REST from the view the owner saved in Redis
        for server in (a, b):
            code, body = await server.get_json("/api/positions", cookie)
            assert code == 200 and [p["symbol"] for p in body["positions"]] == ["IBM"]

        # The owner's bridge stops (cleanly: its lease is released; A keeps serving, it runs
        # the simulator); the other takes alice over (REST sync) and streams her next fill.
        survivor = other
        sim = a.server.simulator
        await owner.server.ownership.stop()  # type: ignore[union-attr]
        await survivor.server.ownership.tick()  # type: ignore[union-attr]
        assert alice in survivor.server.ownership.leases.owned  # type: ignore[union-attr]
        await _messages(on_b, 0.5)
        sim.submit_order("DEMO-ALICE", symbol="IBM", qty=Decimal("2"), side="buy")
        msgs = await _messages(on_b, 3.0)
        statuses = [m["data"]["status"] for m in msgs if m["type"] == "order_update"]
        assert statuses == ["new", "filled"], statuses
        code, body = await survivor.get_json("/api/positions", cookie)
        assert code == 200 and [p["quantity"] for p in body["positions"]] == ["5"]
    finally:
        await b.server.stop()
        await a.server.stop()


@pytest.mark.gen_test(timeout=90)
async def test_admin_disconnect_closes_the_user_on_every_process(
    tmp_path: Path,
    prefix: str,  # noqa: F811
) -> None:
    """Disconnecting alice on A closes her socket on B at once (Redis control message), long
    before B's own session check (heartbeat interval 15 s here) would."""
    a, b = await _pair(tmp_path, prefix)
    try:
        cookie = await b.login("alice")
        on_b = await b.connect(cookie)
        await subscribe(on_b, ["account"])
        await asyncio.sleep(0.2)  # B's control listener is subscribed
        admin = await a.login("admin", "admin")
        alice = await a.user_id("alice")
        resp = await a.request("POST", f"/api/admin/users/{alice}/disconnect", {}, cookie=admin)
        assert resp.code == 200
        msg = await recv(on_b, 2.0)
        assert msg is None and on_b.close_code == 4001
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


@pytest.mark.gen_test(timeout=90)
async def test_admin_stats_show_every_process(tmp_path: Path, prefix: str) -> None:  # noqa: F811
    """The admin stats answer for the cluster: both processes with their connections and the
    accounts they stream; a process that stopped reporting is shown as gone, one that stopped
    cleanly left."""
    import time

    import ujson

    a, b = await _pair(tmp_path, prefix)
    try:
        await _balance(a, b)
        alice = await b.login("alice")
        conns = [await b.connect(alice) for _ in range(2)]
        for conn in conns:
            await subscribe(conn, ["orders"])
        # A report from a process that died a minute ago (its own clock stamp, in Redis).
        redis = a.server.cluster._redis  # type: ignore[union-attr]
        stale = {"activeConnections": 7, "at": time.time() - 60, "role": "all"}
        await redis.hset(f"{prefix}:procs", "dead-host:1:abc", ujson.dumps(stale))
        for server in (b, a):  # B reports, then A (which answers the stats) reads
            await server.server.cluster.tick()  # type: ignore[union-attr]
        admin = await a.login("admin", "admin")
        code, stats = await a.get_json("/api/admin/websocket-stats", admin)
        assert code == 200
        cluster = stats["cluster"]
        alive = [p for p in cluster["processes"] if p["alive"]]
        gone = [p for p in cluster["processes"] if not p["alive"]]
        assert len(alive) == 2 and [p["id"] for p in gone] == ["dead-host:1:abc"]
        assert cluster["totals"]["activeConnections"] == 2  # the gone one does not count
        assert cluster["totals"] == {
            "processes": 2,
            "gone": 1,
            "activeConnections": 2,
            "eventsDelivered": cluster["totals"]["eventsDelivered"],
            "bridges": 2,
            "accountsStreamed": 2,
        }
        by_self = {p["self"]: p for p in alive}
        assert by_self[True]["activeConnections"] == 0  # A, answering
        assert by_self[False]["activeConnections"] == 2  # B
        assert {"latencyMs", "loopLagMs", "outbox", "pid", "host"} <= set(by_self[False])
        # B stops cleanly: its entry goes at once.
        for conn in conns:
            conn.close()
        await b.server.stop()
        await a.server.cluster.tick()  # type: ignore[union-attr]
        ids = [p["id"] for p in a.server.cluster.view()["processes"]]  # type: ignore[union-attr]
        assert len(ids) == 2 and "dead-host:1:abc" in ids
    finally:
        await b.server.stop()
        await a.server.stop()
