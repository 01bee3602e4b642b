"""`server.py users disable|delete` against a running server: its sockets close with 4001 —
at once through Redis, or at the server's next session check without it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Running, subscribe
from tests.ops.test_admin_users import closed_with
from tests.streaming.test_redis import REDIS_URL, prefix  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


async def users_cli(folio: Running, *args: str, **env: str) -> str:
    """Run ``server.py users …`` on the server's database without blocking its loop."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "REDIS_"))}
    full.update(
        DATABASE_URL=folio.settings.database_url,
        SECRET_KEY=folio.settings.secret_key,
        DATA_DIR=folio.settings.data_dir,
        **env,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "users",
        *args,
        cwd=REPO,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.gen_test(timeout=90)
async def test_cli_disable_closes_sockets_within_a_heartbeat_without_redis(
    make_server: Any,
) -> None:
    folio = await make_server(heartbeat_interval_s="0.5", heartbeat_timeout_s="30")
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn, ["account"])
    out = await users_cli(folio, "disable", "alice", HEARTBEAT_INTERVAL_S="0.5")
    assert "alice disabled; 1 session(s) ended" in out and "within 0.5 s" in out
    await closed_with(conn, 4001)
    assert (
        await folio.request("POST", "/api/login", {"username": "alice", "password": "demo"})
    ).code == 401
    await users_cli(folio, "enable", "alice")
    await folio.login("alice")


@pytest.mark.redis
@pytest.mark.gen_test(timeout=90)
async def test_cli_delete_closes_sockets_at_once_through_redis(
    make_server: Any,
    prefix: str,  # noqa: F811
) -> None:
    """Heartbeat interval 15 s: a close within 5 s can only come from the control message."""
    folio = await make_server(redis_url=REDIS_URL, redis_prefix=prefix)
    assert folio.settings.heartbeat_interval_s == 15
    conn = await folio.connect(await folio.login("bob"))
    await subscribe(conn, ["account"])
    out = await users_cli(folio, "delete", "bob", "--yes", REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix)
    assert "bob deleted" in out and "1 running process(es) told" in out
    await closed_with(conn, 4001, within=5)
    assert await folio.server.store.get_user_by_name("bob") is None  # type: ignore[union-attr]
