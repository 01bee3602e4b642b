"""A server stall is not blamed on clients (issue 7, item 5); a bad DATA_DIR is one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Running, recv_type, subscribe, wait
from tests.handlers.test_ws import _read_close_code, _silent_client

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.gen_test(timeout=60)
async def test_a_server_stall_does_not_close_healthy_clients(make_server: Any) -> None:
    """The event loop blocks for 3x HEARTBEAT_TIMEOUT_S (as a SIGSTOP or a long GC would): no
    healthy client is closed with 4000 when it resumes; a client that really never answers is
    still closed afterwards."""
    folio: Running = await make_server(heartbeat_interval_s=0.2, heartbeat_timeout_s=0.5)
    conns = [await folio.connect(await folio.login(name)) for name in ("alice", "bob", "alice")]
    for conn in conns:
        await subscribe(conn, ["orders"])
    await asyncio.sleep(0.5)  # pings are flowing
    time.sleep(1.5)  # the whole server stops (this test shares its loop)
    await asyncio.sleep(1.0)  # it resumes: several heartbeat ticks
    for conn in conns:
        await conn.write_message('{"type": "ping"}')
        assert (await recv_type(conn, "pong"))["type"] == "pong"
        assert conn.close_code is None
    manager = folio.server.manager
    assert manager is not None
    assert manager.metrics.disconnects.labels(code="4000")._value.get() == 0
    # a silent client is still detected
    reader = await _silent_client(folio.port, await folio.login("bob"))
    assert await asyncio.wait_for(_read_close_code(reader), wait(10)) == 4000


def test_bad_data_dir_is_one_clean_line(tmp_path: Path) -> None:
    """DATA_DIR pointing at a file, or where nothing can be created: exit 2 and one line naming
    DATA_DIR and the fix, never a traceback."""
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    for data_dir in (str(a_file), "/proc/folio-cannot-create"):
        result = subprocess.run(
            [sys.executable, "server.py", "--port", "0"],
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "DATA_DIR": data_dir},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "DATA_DIR" in lines[0] and "writable directory" in lines[0], lines[0]
        assert "Traceback" not in result.stderr


def test_unopenable_database_is_one_clean_line(tmp_path: Path) -> None:
    """DATA_DIR fine but the SQLite file cannot be opened (a directory in its place)."""
    (tmp_path / "folio.db").mkdir()
    result = subprocess.run(
        [sys.executable, "server.py", "--port", "0"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "start-up error" in line]
    assert len(errors) == 1 and "DATA_DIR" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL"),
    ],
)
def test_unreachable_services_are_one_clean_line(
    tmp_path: Path, env: dict[str, str], names: str
) -> None:
    result = subprocess.run(
        [sys.executable, "server.py", "--port", "0"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "start-up error" in line]
    assert len(errors) == 1 and names in errors[0], result.stderr
    assert "Traceback" not in result.stderr
