"""/livez, /readyz (database, Redis, broker feed, role), JSON 404s for machine paths, API docs."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import ujson

from tests.conftest import Running, postgres_schema_url, require_service, wait


@pytest.mark.gen_test(timeout=30)
async def test_livez_and_readyz_when_all_is_well(folio: Running) -> None:
    """Both 200 without a session; /readyz names each check and the role."""
    assert await folio.get_json("/livez") == (200, {"status": "ok"})
    code, body = await folio.get_json("/readyz")
    assert code == 200, body
    assert body["status"] == "ready" and body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "role"}
    assert body["checks"]["database"] == {"ok": True, "engine": "sqlite"}
    assert body["checks"]["role"] == {"ok": True, "role": "single"}
    assert body["checks"]["broker"]["ok"] is True and "stale" in body["checks"]["broker"]


@pytest.mark.gen_test(timeout=30)
async def test_machine_paths_are_json_404_never_the_spa(folio: Running) -> None:
    """A probe or scraper pointed at a wrong path gets 404 JSON, not 200 text/html."""
    for path in (
        "/api",
        "/api/",
        "/api/nope",
        "/internal/nope",
        "/ws/nope",
        "/metrics/x",
        "/metricsz",
        "/livez/x",
        "/readyz/deep",
        "/healthz",
        "/status",
        "/openapi.json",
        "/asyncapi.json",
    ):
        resp = await folio.request("GET", path)
        assert resp.code == 404, path
        assert resp.headers["Content-Type"].startswith("application/json"), path
        assert ujson.loads(resp.body)["error"]["code"] == "not_found", path
    resp = await folio.request("GET", "/admin")  # a client route: the SPA
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/html")


@pytest.mark.gen_test(timeout=30)
async def test_api_documents_are_served(folio: Running) -> None:
    """/api/openapi.json and /api/asyncapi.json answer the documents in docs/."""
    code, doc = await folio.get_json("/api/openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.1") and "/readyz" in doc["paths"]
    code, doc = await folio.get_json("/api/asyncapi.json")
    assert code == 200 and doc["asyncapi"].startswith("3.0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own on a free port (never the shared one)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require_service("redis-server", FileNotFoundError("apt-get install -y redis-server"))
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                import time

                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


async def _readyz_until(folio: Running, code: int, within: float) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + wait(within)
    while True:
        got, body = await folio.get_json("/readyz")
        if got == code or asyncio.get_running_loop().time() > deadline:
            assert got == code, body
            return dict(body)
        await asyncio.sleep(0.2)


@pytest.mark.gen_test(timeout=90)
async def test_readyz_503_while_redis_is_down_and_200_after(
    make_server: Any, private_redis: PrivateRedis
) -> None:
    """Stopping the (private) Redis makes /readyz 503 naming redis; restarting it heals it."""
    folio = await make_server(redis_url=private_redis.url)
    body = await _readyz_until(folio, 200, 10)
    assert body["checks"]["redis"] == {"ok": True}
    assert body["checks"]["role"]["role"] == "all"
    private_redis.stop()
    body = await _readyz_until(folio, 503, 10)
    assert body["status"] == "not_ready" and "redis" in body["failing"]
    assert "database" not in body["failing"]
    assert body["message"].startswith("not ready: redis (")
    assert await folio.get_json("/livez") == (200, {"status": "ok"})  # alive all along
    private_redis.start()  # same port
    body = await _readyz_until(folio, 200, 30)
    assert body["failing"] == []


@pytest.mark.gen_test(timeout=60)
async def test_readyz_503_when_postgresql_drops_the_connection(make_server: Any) -> None:
    """A terminated database connection is named by /readyz (only our own backend is killed)."""
    import psycopg

    from tests.conftest import TEST_DATABASE_URL

    with postgres_schema_url() as url:
        folio = await make_server(database_url=url)
        assert (await folio.get_json("/readyz"))[0] == 200
        store: Any = folio.server.store
        pid = store._conn.info.backend_pid
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        code, body = await folio.get_json("/readyz")
        assert code == 503 and body["failing"] == ["database"], body
        assert "\n" not in body["checks"]["database"]["error"]
        await folio.server.stop()
