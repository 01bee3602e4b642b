"""The server as a process: ``python server.py`` start-up, settings errors, adduser, SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "DATABASE_"))}
    env.update({"DATA_DIR": str(tmp_path), "SIMULATOR_AUTO_TRADE": "false", "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=kw.pop("stdin", subprocess.DEVNULL),  # never a terminal, as in CI
        **kw,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "server exited during start-up"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server never became healthy")


def test_bad_setting_stops_start_with_a_message_naming_it(tmp_path: Path) -> None:
    """PORT=abc → exit 2 and a message naming PORT; ALPACA key without SECRET_KEY → named too."""
    result = _run([], _env(tmp_path, PORT="abc"))
    assert result.returncode == 2
    assert "PORT must be an integer" in result.stderr
    result = _run([], _env(tmp_path, ALPACA_API_KEY="k", ALPACA_SECRET_KEY="s"))
    assert result.returncode == 2
    assert "SECRET_KEY is required" in result.stderr
    result = _run(["--batch-window-ms", "-5"], _env(tmp_path))
    assert result.returncode == 2 and "BATCH_WINDOW_MS" in result.stderr


def test_adduser_creates_users_and_links_encrypted_keys(tmp_path: Path) -> None:
    """adduser creates a trader linked to a broker account; the key is not stored in clear."""
    env = _env(tmp_path, SECRET_KEY="s" * 32, FOLIO_PASSWORD="pw-carol")
    result = _run(["adduser", "carol", "--alpaca-key", "PKCAROLKEY", "--alpaca-secret", "SHH"], env)
    assert result.returncode == 0, result.stderr
    assert "created trader carol" in result.stdout and "linked" in result.stdout
    result = _run(["adduser", "carol"], env)
    assert result.returncode == 2 and "already exists" in result.stderr
    result = _run(["adduser", "root", "--admin", "--password", "pw"], env)
    assert result.returncode == 0 and "created admin root" in result.stdout
    result = _run(["adduser", "dave", "--alpaca-key", "K"], env)
    assert result.returncode == 2 and "go together" in result.stderr
    raw = (tmp_path / "folio.db").read_bytes()
    assert b"PKCAROLKEY" not in raw and b"SHH" not in raw and b"pw-carol" not in raw


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_sigterm_flushes_closes_1001_and_exits_0(tmp_path: Path, event_loop: str) -> None:
    """SIGTERM: open sockets get close 1001, the process exits 0 within 5 s (on either loop)."""
    from websockets.sync.client import connect

    port = _free_port()
    env = _env(
        tmp_path,
        PORT=str(port),
        BATCH_WINDOW_MS="5000",
        INTERNAL_TOKEN="tok",
        EVENT_LOOP=event_loop,
    )
    stack = contextlib.ExitStack()
    proc = subprocess.Popen(
        [sys.executable, "server.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),
    )
    try:
        _wait_healthy(port, proc)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/login",
            data=json.dumps({"username": "alice", "password": "demo"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        ws = connect(f"ws://127.0.0.1:{port}/ws/portfolio", additional_headers={"Cookie": cookie})
        stack.enter_context(ws)
        ws.send(json.dumps({"type": "subscribe", "channels": ["positions"]}))
        assert json.loads(ws.recv(5))["type"] == "subscribed"
        assert json.loads(ws.recv(5))["type"] == "snapshot"
        # a position update held by the 5 s batch window must still be delivered at shutdown
        position = {
            "symbol": "AAPL",
            "quantity": "1",
            "currentPrice": "1.00",
            "entryPrice": "1.00",
            "unrealizedPnl": "0.00",
            "unrealizedPnlPercent": "0.00",
            "marketValue": "1.00",
            "side": "long",
            "openedAt": "2026-11-25T00:00:00Z",
        }
        hook = urllib.request.Request(
            f"http://127.0.0.1:{port}/internal/events",
            data=json.dumps({"userId": "1", "type": "position_update", "data": position}).encode(),
            headers={"Authorization": "Bearer tok", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(hook) as resp:
            assert resp.status == 202
        proc.send_signal(signal.SIGTERM)
        batch = json.loads(ws.recv(5))
        assert batch["type"] == "batch" and batch["data"]["positions"][0]["symbol"] == "AAPL"
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert proc.wait(timeout=5) == 0
    finally:
        stack.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = (tmp_path / "server.log").read_text()
    assert "Traceback" not in stderr, stderr
