"""Out of descriptors (issue 7, item 2): the server keeps serving, logs calmly, counts refusals.

Runs ``python server.py`` as a process with ``RLIMIT_NOFILE`` = 256, opens 300 connections from
127.0.0.2 (per-address cap off) and checks: ``accept`` errors are counted
(``folio_http_refused{reason="accept_error"}``) and logged a few times, not once per attempt and
never as a traceback; the other trader, connected before, keeps receiving events over existing
connections; once the attacker lets go, new clients are accepted again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import TOKEN, wait
from tests.handlers.test_ws import ORDER
from tests.security.helpers import ATTACKER_IP

REPO = Path(__file__).resolve().parents[2]
LIMIT = 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, data, headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


@contextlib.contextmanager
def _server(tmp_path: Path) -> Any:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "DATABASE_"))}
    env.update(
        PORT=str(port),
        DATA_DIR=str(tmp_path),
        INTERNAL_TOKEN=TOKEN,
        SIMULATOR_AUTO_TRADE="false",
        BATCH_WINDOW_MS="0",
        MAX_CONNECTIONS_PER_ADDRESS="0",
        LOG_LEVEL="INFO",
    )
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "server.py"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_descriptors,
        )
    try:
        for _ in range(300):
            assert proc.poll() is None, log_path.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                if _request(conn, "GET", "/api/health")[0] == 200:
                    conn.close()
                    break
            except OSError:
                time.sleep(0.1)
        yield port, proc, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _login(conn: http.client.HTTPConnection, name: str) -> str:
    status, headers, body = _request(
        conn, "POST", "/api/login", {"username": name, "password": "demo"}
    )
    assert status == 200, body
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    return cookie.split("=", 1)[1]


def test_out_of_descriptors_keeps_serving_and_logs_calmly(tmp_path: Path) -> None:
    with _server(tmp_path) as (port, proc, log_path), contextlib.ExitStack() as stack:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=wait(10))
        cookie = _login(conn, "bob")
        bob_id = json.loads(_request(conn, "GET", "/api/me", Cookie=f"session={cookie}")[2])[
            "userId"
        ]
        ws = stack.enter_context(
            ws_connect(
                f"ws://127.0.0.1:{port}/ws/portfolio",
                additional_headers={"Cookie": f"session={cookie}"},
                open_timeout=wait(10),
            )
        )
        ws.send(json.dumps({"type": "subscribe", "channels": ["orders"]}))
        seq = [json.loads(ws.recv(wait(10))) for _ in range(2)][-1]["seq"]

        attack: list[socket.socket] = []
        try:
            for _ in range(300):
                sock = socket.socket()
                sock.bind((ATTACKER_IP, 0))
                sock.settimeout(wait(5))
                sock.connect(("127.0.0.1", port))
                sock.send(b"GET / HTTP/1.1\r\n")  # never finishes its headers
                attack.append(sock)
            time.sleep(1.0)  # the server runs out of descriptors and keeps trying

            # Existing clients are served: the hook over its keep-alive connection, bob's socket.
            for n in range(5):
                status, _, body = _request(
                    conn,
                    "POST",
                    "/internal/events",
                    {
                        "userId": bob_id,
                        "type": "order_update",
                        "data": {**ORDER, "orderId": f"e{n}"},
                    },
                    Authorization=f"Bearer {TOKEN}",
                )
                assert status == 202, body
                msg = json.loads(ws.recv(wait(10)))
                assert (msg["data"]["orderId"], msg["seq"]) == (f"e{n}", seq + n + 1)
            status, _, metrics = _request(conn, "GET", "/metrics", Authorization=f"Bearer {TOKEN}")
            assert status == 200
        finally:
            for sock in attack:
                sock.close()

        refused = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.decode().splitlines()
            if line.startswith('folio_http_refused_total{reason="accept_error"}')
        ]
        assert refused and refused[0] >= 1, metrics.decode()[-2000:]
        # New clients are accepted again once descriptors are free.
        deadline = time.monotonic() + wait(10)
        while True:
            try:
                fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=wait(5))
                assert _login(fresh, "alice")
                fresh.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "no new client accepted after the attack"
                time.sleep(0.2)
        ws.close()
        conn.close()
        assert proc.poll() is None
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    refusal_lines = [line for line in log.splitlines() if "(accept_error)" in line]
    assert 1 <= len(refusal_lines) <= 5, refusal_lines
    assert "Too many open files" in refusal_lines[0] and "ulimit -n" in refusal_lines[0]
    assert log.count("Too many open files") == len(refusal_lines)


@pytest.mark.parametrize("limit", [LIMIT])
def test_descriptor_limit_is_documented(limit: int) -> None:
    """docs/operations.md names the descriptor limit to set and the metric to watch."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "ulimit -n" in text and "LimitNOFILE" in text
    assert 'folio_http_refused{reason="accept_error"}' in text
