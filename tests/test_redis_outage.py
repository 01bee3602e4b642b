"""Redis goes away and comes back: events emitted meanwhile wait in the outbox, then are
published in order and replayable (issue 9, "Redis outages").

Runs its own ``redis-server`` on a free port (never the shared one), with its data in the test's
temporary directory so a restart keeps the keys, as a persistent Redis would.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES, Running, recv_type, subscribe, wait
from tests.handlers.test_ws import ORDER

pytestmark = pytest.mark.redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--dbfilename",
                "dump.rdb",
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.1):
                    return
            except OSError:
                subprocess.run(["sleep", "0.02"], check=False)
        raise AssertionError("private redis-server did not start")

    def stop_saving(self) -> None:
        """SHUTDOWN SAVE: the keys survive the restart (a persistent Redis)."""
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "save"], check=False, timeout=10
        )
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def _until(predicate: Any, what: str, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + wait(seconds)
    while not predicate():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=120)
async def test_events_emitted_while_redis_is_down_are_published_in_order(
    private_redis: PrivateRedis,  # first: torn down after the server
    make_server: Any,
) -> None:
    folio: Running = await make_server(redis_url=private_redis.url, redis_prefix="outage")
    manager = folio.server.manager
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    ack, _ = await subscribe(conn, ["orders"])
    last_seq, epoch = ack["seq"], ack["epoch"]
    alice = await folio.user_id("alice")

    private_redis.stop_saving()
    for i in range(5):  # accepted by the hook while Redis is away
        resp = await folio.push(alice, "order_update", {**ORDER, "orderId": f"out-{i}"})
        assert resp.code == 202
    await _until(lambda: manager.stats()["outbox"]["engineDown"], "the outbox to hold them")
    assert manager.stats()["outbox"]["events"] >= 1

    private_redis.start()
    await _until(lambda: manager.stats()["outbox"]["events"] == 0, "the outbox to drain")
    assert manager.stats()["outbox"]["dropped"] == 0

    # Nothing lost: a client resuming from where it was replays all five, in order.
    again = await folio.connect(cookie)
    ack2, snap = await subscribe(again, ["orders"], lastSeq=last_seq, epoch=epoch)
    assert ack2["data"]["recovered"] is True and snap is None
    replay = [await recv_type(again, "order_update") for _ in range(5)]
    assert [m["data"]["orderId"] for m in replay] == [f"out-{i}" for i in range(5)]
    assert [m["seq"] for m in replay] == list(range(last_seq + 1, last_seq + 6))
    conn.close()
    again.close()
