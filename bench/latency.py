"""Load and latency benchmark for folio-stream: hook → server → WebSocket clients.

Starts the real server (``python server.py``, demo mode, a fresh DATA_DIR) as a subprocess, adds
bench users with ``server.py adduser``, opens ``--connections`` WebSocket clients spread over
``--users`` users (each subscribed to every channel, no symbol filter), then pushes
``position_update`` events through ``POST /internal/events`` at ``--rate`` events/s for
``--duration`` seconds from a separate sender process (several keep-alive HTTP connections; all
events of one user go over one connection, one request at a time, so their order is kept).

Every event carries ``strategyId = "bench:<counter>:<time.time_ns() at send>"``; a client takes
``time.time_ns()`` when a frame arrives, so latency = receive − send on the same clock. With
batching a ``batch`` frame carries several positions and an older snapshot of a symbol may be
superseded by a newer one in the same window (by design); the report separates:

- delivered: the client got this very snapshot (latency = its receive − its send);
- superseded: a newer snapshot of the same symbol arrived instead (effective latency = arrival of
  the first snapshot at least as new − send);
- lost: neither (must be 0), plus ``seq`` gaps, out-of-order snapshots and unexpected closes.

Not part of the test suite: ``make bench`` or ``.venv/bin/python bench/latency.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench"
BENCH_PREFIX = "bench:"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# settings the benchmark controls; anything else of the caller's environment is passed through
_STRIP_ENV = ("ALPACA_", "DATABASE_", "REDIS_", "ALLOWED_ORIGINS", "ENABLE_REALTIME", "HOST")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (the server's method too)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), -(-int(pct * len(sorted_values)) // 100)))
    return sorted_values[rank - 1]


def _summary(values_ms: list[float]) -> dict[str, Any]:
    values = sorted(values_ms)
    return {
        "count": len(values),
        "p50": _pct(values, 50),
        "p95": _pct(values, 95),
        "p99": _pct(values, 99),
        "max": values[-1] if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (from /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null"), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def _login(base: str, username: str, password: str, timeout: float = 10.0) -> tuple[str, str]:
    """Return ``(userId, "session=…" cookie)``."""
    status, body, headers = _http_json(
        "POST", f"{base}/api/login", {"username": username, "password": password}, timeout=timeout
    )
    if status != 200:
        raise RuntimeError(f"login {username}: HTTP {status} {body}")
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    return str(body["userId"]), cookie


async def run_sender(script: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run ``script _sender`` as its own process, ``cfg`` as JSON on stdin; return its JSON.

    The load is sent from a separate process so the clients' receive loop and the sender do
    not share an event loop. Raises RuntimeError when it fails; it is killed if we are cancelled.
    """
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "_sender",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        out, _ = await sender.communicate(json.dumps(cfg).encode())
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    if sender.returncode != 0:
        raise RuntimeError(f"sender process failed with exit code {sender.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


# --------------------------------------------------------------------------------------------
# the server process
# --------------------------------------------------------------------------------------------
class ServerProcess:
    """``python server.py`` in its own session, stderr to a file; :meth:`stop` is idempotent."""

    def __init__(self, data_dir: Path, port: int, batch_window_ms: int, log_level: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = data_dir / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_ENV)}
        self.env.update(
            {
                "PORT": str(port),
                "DATA_DIR": str(data_dir),
                "SECRET_KEY": secrets.token_urlsafe(32),
                "SIMULATOR_AUTO_TRADE": "false",
                "INTERNAL_TOKEN": TOKEN,
                "MAX_CONNECTIONS_PER_USER": "1000",
                # every client comes from 127.0.0.1: no per-address limits
                "MAX_CONNECTIONS_PER_ADDRESS": "0",
                "WS_UPGRADE_RATE": "100000",
                "WS_UPGRADE_BURST": "100000",
                "BATCH_WINDOW_MS": str(batch_window_ms),
                "LOG_LEVEL": log_level,
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.stop_seconds: float | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def adduser(self, names: list[str], password: str, parallel: int = 4) -> None:
        """Create traders with ``server.py adduser``, a few at a time, retried if SQLite is busy."""
        todo = list(names)
        last_error = ""
        for attempt in range(5):
            failed: list[str] = []
            # the first one alone creates the database (parallel first runs race on the schema)
            for i in [0, *range(1, len(todo), parallel)]:
                procs = [
                    (
                        name,
                        subprocess.Popen(
                            [sys.executable, "server.py", "adduser", name, "--password", password],
                            cwd=REPO,
                            env=self.env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                        ),
                    )
                    for name in todo[i : i + (1 if i == 0 else parallel)]
                ]
                for name, proc in procs:
                    _, err = proc.communicate(timeout=60)
                    exists = err.startswith(b"adduser:") and b"already exists" in err
                    if proc.returncode != 0 and not exists:
                        failed.append(name)
                        last_error = err.decode(errors="replace").strip()
            if not failed:
                return
            todo = failed
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"adduser failed for {todo}: {last_error}")

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "server.py"],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches only the bench, which stops the server
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server never became healthy:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, SIGKILL if it does not exit."""
        proc = self.proc
        if proc is None or self.exit_code is not None:
            return
        started = time.monotonic()
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                self.exit_code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.exit_code = -9
        else:
            self.exit_code = proc.returncode
        self.stop_seconds = time.monotonic() - started

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, Any]:
        """Count WARNING/ERROR/Traceback lines in the server's stderr; keep the first few."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {"warnings": 0, "errors": 0, "tracebacks": 0, "sample": []}
        lines = text.splitlines()
        warnings = [ln for ln in lines if " WARNING " in ln]
        errors = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln]
        tracebacks = sum(1 for ln in lines if ln.startswith("Traceback"))
        flagged = set(errors) | set(warnings)
        sample = [ln[:300] for ln in lines if ln in flagged]
        return {
            "warnings": len(warnings),
            "errors": len(errors),
            "tracebacks": tracebacks,
            "sample": sample[:15],
        }


# --------------------------------------------------------------------------------------------
# the sender (a separate process: `latency.py _sender`, config on stdin, results on stdout)
# --------------------------------------------------------------------------------------------
def _position_body_parts(user_id: str, symbol: str) -> tuple[bytes, bytes]:
    """The request body split around the strategyId value, so sending only formats one string."""
    data = {
        "symbol": symbol,
        "quantity": "10",
        "currentPrice": "101.25",
        "entryPrice": "100.00",
        "unrealizedPnl": "12.50",
        "unrealizedPnlPercent": "1.25",
        "marketValue": "1012.50",
        "side": "long",
        "openedAt": "2026-11-25T14:30:00Z",
        "strategyId": "@@",
    }
    text = json.dumps({"userId": user_id, "type": "position_update", "data": data})
    head, tail = text.split("@@")
    return head.encode(), tail.encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("chunked responses are not supported by the bench sender")
    if length:
        await reader.readexactly(length)
    return status


async def _sender_main(cfg: dict[str, Any]) -> dict[str, Any]:
    users: list[str] = cfg["users"]
    symbols: list[str] = cfg["symbols"]
    rate: float = cfg["rate"]
    total = int(rate * cfg["duration"])
    n_conns = min(cfg["senders"], len(users))
    parts = {(u, s): _position_body_parts(u, s) for u in users for s in symbols}
    # event i → user i % U, symbol (i // U) % S, due at t0 + i / rate; user u → connection u % K
    plan: list[list[tuple[int, str, str]]] = [[] for _ in range(n_conns)]
    for i in range(total):
        u = i % len(users)
        plan[u % n_conns].append((i, users[u], symbols[(i // len(users)) % len(symbols)]))
    sent: list[tuple[int, str, str, int]] = []
    statuses: Counter[int] = Counter()
    request_ms: list[float] = []
    lag_max = 0.0
    errors: list[str] = []
    t0 = time.monotonic() + 0.2
    # a server that falls far behind must not keep the run going for ever: stop sending then
    give_up = t0 + float(cfg.get("max_seconds") or float("inf"))
    host = cfg.get("host", "127.0.0.1")
    port = int(cfg.get("hook_port") or cfg["port"])
    path = cfg.get("path", "/internal/events")

    async def run_conn(events: list[tuple[int, str, str]]) -> None:
        nonlocal lag_max
        reader, writer = await asyncio.open_connection(host, port)
        prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        try:
            for i, user, symbol in events:
                if time.monotonic() > give_up:
                    break
                due = t0 + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lag_max = max(lag_max, -delay)
                head, tail = parts[(user, symbol)]
                send_ns = time.time_ns()
                body = head + f"{BENCH_PREFIX}{i}:{send_ns}".encode() + tail
                writer.write(prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    errors.append(f"event {i}: {exc!r}")
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                request_ms.append((time.time_ns() - send_ns) / 1e6)
                statuses[status] += 1
                if status == 202:
                    sent.append((i, user, symbol, send_ns))
                elif len(errors) < 20:
                    errors.append(f"event {i}: HTTP {status}")
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(run_conn(events) for events in plan))
    elapsed = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "planned": total,
        "sent": sent,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "elapsed_s": elapsed,
        "setup_s": t0 - started,
        "max_lag_s": lag_max,
        "request_ms": _summary(request_ms),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "connections": n_conns,
    }


def _sender_entry() -> int:
    cfg = json.loads(sys.stdin.read())
    result = asyncio.run(_sender_main(cfg))
    sys.stdout.write(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# the WebSocket clients
# --------------------------------------------------------------------------------------------
@dataclass
class WsClient:
    index: int
    user_id: str
    cookie: str
    frames: list[tuple[int, str]] = field(default_factory=list)  # (recv ns, raw text)
    start_seq: int | None = None
    epoch: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    closed_by_bench: bool = False
    error: str | None = None
    ws: Any = None
    task: asyncio.Task[None] | None = None


async def _open_client(client: WsClient, port: int, compression: bool) -> None:
    from websockets.asyncio.client import connect

    client.ws = await connect(
        f"ws://127.0.0.1:{port}/ws/portfolio",
        additional_headers={"Cookie": client.cookie},
        compression="deflate" if compression else None,
        ping_interval=None,  # the server pings; websockets answers automatically
        max_size=2**22,
        max_queue=None,
        open_timeout=30,
    )
    channels = ["positions", "orders", "account", "trades"]
    await client.ws.send(json.dumps({"type": "subscribe", "channels": channels}))
    while client.start_seq is None:
        msg = json.loads(await asyncio.wait_for(client.ws.recv(), 30))
        if msg["type"] == "snapshot":
            client.start_seq, client.epoch = msg["seq"], msg.get("epoch")
        elif msg["type"] == "error":
            raise RuntimeError(f"connection {client.index}: {msg}")


async def _receive(client: WsClient) -> None:
    from websockets.exceptions import ConnectionClosed

    ws = client.ws
    frames = client.frames
    try:
        while True:
            text = await ws.recv()
            frames.append((time.time_ns(), text))
    except ConnectionClosed as exc:
        if exc.rcvd is not None:
            client.close_code, client.close_reason = exc.rcvd.code, exc.rcvd.reason
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        client.error = repr(exc)


@dataclass
class _Sampler:
    """VmRSS of the server every 0.1 s: the peak, and one sample a second for the timeline."""

    pid: int
    peak: float = 0.0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    next_mark: float = 0.0

    def restart_timeline(self) -> None:
        self.timeline, self.started, self.next_mark = [], time.monotonic(), 0.0

    async def run(self) -> None:
        while True:
            rss = _rss_mb(self.pid)
            if rss is not None:
                self.peak = max(self.peak, rss)
                elapsed = time.monotonic() - self.started
                if elapsed >= self.next_mark:
                    self.timeline.append((round(elapsed, 1), rss))
                    self.next_mark += 1.0
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------
def _analyse(
    clients: list[WsClient], sent: list[tuple[int, str, str, int]], window_ms: int
) -> dict[str, Any]:
    """Delivered / superseded / lost, seq gaps and latency summaries of ``clients``' frames."""
    raw = analyse_raw(clients, sent)
    return summarise(raw, window_ms)


def summarise(raw: dict[str, Any], window_ms: int) -> dict[str, Any]:
    """Turn :func:`analyse_raw`'s lists (merged over clients) into percentile summaries."""
    out = {k: v for k, v in raw.items() if not k.startswith("raw_")}
    out["latency_delivered_ms"] = _summary(raw["raw_delivered_ms"])
    out["latency_effective_ms"] = _summary(raw["raw_effective_ms"])
    sizes = raw["raw_batch_sizes"]
    out["batch_size"] = _summary([float(n) for n in sizes]) if sizes else None
    unbatched = out["frames_if_unbatched"]
    out["frame_reduction"] = 1 - out["position_frames"] / unbatched if unbatched else None
    out["batch_window_ms"] = window_ms
    return out


def analyse_raw(
    clients: list[Any],
    sent: list[tuple[int, str, str, int]],
    decode: Any = json.loads,
) -> dict[str, Any]:
    """Match every sent update against what each connection received.

    Args:
        clients: objects with ``index``, ``user_id``, ``start_seq``, ``epoch`` and ``frames``
            (a list of ``(receive time ns, raw frame text or bytes)``).
        sent: ``(event number, userId, symbol, send time ns)`` of every update the hook accepted.
        decode: raw frame → message dict, or None for a frame that is not a message (e.g. a
            Socket.IO ping); default ``json.loads``.

    Returns:
        Counts (expected/delivered/superseded/lost, seq gaps, …), ``last_effective_ns`` (the
        latest arrival that satisfied an update) and the raw lists ``raw_delivered_ms``,
        ``raw_effective_ms`` and ``raw_batch_sizes``, to be merged and :func:`summarise`-d.
    """
    sent_by_key: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for i, user, symbol, send_ns in sent:
        sent_by_key[(user, symbol)].append((i, send_ns))
    for rows in sent_by_key.values():
        rows.sort()
    sent_per_user = Counter(user for _, user, _, _ in sent)

    delivered_ms: list[float] = []
    effective_ms: list[float] = []
    effective_sent_ns: list[int] = []
    types: Counter[str] = Counter()
    stream_frames = 0
    position_frames = 0
    positions_received = 0
    batch_sizes: list[int] = []
    seq_gaps = 0
    seq_gap_examples: list[str] = []
    out_of_order = 0
    unexpected = 0
    foreign_positions = 0
    lost = 0
    superseded = 0
    delivered = 0
    expected = 0
    epochs_changed = 0
    last_effective_ns = 0
    for client in clients:
        received: dict[str, list[tuple[int, int]]] = defaultdict(list)  # symbol → (i, recv ns)
        next_seq = (client.start_seq or 0) + 1
        for recv_ns, text in client.frames:
            msg = decode(text)
            if msg is None:
                continue
            type_ = msg.get("type", "?")
            types[type_] += 1
            if "seq" in msg and type_ not in ("subscribed", "snapshot", "pong", "error"):
                stream_frames += 1
                if msg["seq"] != next_seq:
                    seq_gaps += 1
                    if len(seq_gap_examples) < 5:
                        seq_gap_examples.append(
                            f"conn {client.index} user {client.user_id}: "
                            f"expected seq {next_seq}, got {msg['seq']}"
                        )
                next_seq = msg["seq"] + 1
                if msg.get("epoch") != client.epoch:
                    epochs_changed += 1
            if type_ in ("position_update", "batch"):
                position_frames += 1
            if type_ == "position_update":
                positions = [msg["data"]]
            elif type_ == "batch":
                positions = msg["data"].get("positions") or []
                batch_sizes.append(len(positions))
            else:
                continue
            for pos in positions:
                positions_received += 1
                tag = str(pos.get("strategyId") or "")
                if not tag.startswith(BENCH_PREFIX):
                    foreign_positions += 1
                    continue
                _, i, send_ns = tag.split(":")
                delivered_ms.append((recv_ns - int(send_ns)) / 1e6)
                received[pos["symbol"]].append((int(i), recv_ns))
        # match every sent event of this user against what this connection saw
        for (user, symbol), rows in sent_by_key.items():
            if user != client.user_id:
                continue
            got = received.pop(symbol, [])
            for a, b in zip(got, got[1:], strict=False):
                if b[0] <= a[0]:
                    out_of_order += 1
            sent_ids = {i for i, _ in rows}
            unexpected += sum(1 for i, _ in got if i not in sent_ids)
            j = 0
            for i, send_ns in rows:
                expected += 1
                while j < len(got) and got[j][0] < i:
                    j += 1
                if j == len(got):
                    lost += 1
                    continue
                if got[j][0] == i:
                    delivered += 1
                else:
                    superseded += 1
                effective_ms.append((got[j][1] - send_ns) / 1e6)
                effective_sent_ns.append(send_ns)
                last_effective_ns = max(last_effective_ns, got[j][1])
        unexpected += sum(len(v) for v in received.values())  # symbols never sent to this user
    frames_if_unbatched = sum(sent_per_user[c.user_id] for c in clients)
    return {
        "expected": expected,
        "delivered": delivered,
        "superseded": superseded,
        "lost": lost,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
        "foreign_positions": foreign_positions,
        "seq_gaps": seq_gaps,
        "seq_gap_examples": seq_gap_examples,
        "epoch_changes": epochs_changed,
        "frames_by_type": dict(types),
        "stream_frames": stream_frames,
        "positions_received": positions_received,
        "frames_if_unbatched": frames_if_unbatched,
        "position_frames": position_frames,
        "last_effective_ns": last_effective_ns,
        "raw_delivered_ms": delivered_ms,
        "raw_effective_ms": effective_ms,
        "raw_effective_sent_ns": effective_sent_ns,
        "raw_batch_sizes": batch_sizes,
    }


def effective_timeline(
    sent_ns: list[int], effective_ms: list[float], start_ns: int, step_s: float = 0.5
) -> list[list[float]]:
    """Effective latency by when the update was sent: ``[[t s, count, p50, p99, max ms], …]``.

    ``t`` is the start of each ``step_s`` slice after ``start_ns`` (the first send). A tail spread
    evenly over the slices is queueing; a tail in a few slices is a stall (a GC, a burst) there.
    """
    slices: dict[int, list[float]] = defaultdict(list)
    for t, ms in zip(sent_ns, effective_ms, strict=True):
        slices[int((t - start_ns) / 1e9 / step_s)].append(ms)
    out = []
    for k in sorted(slices):
        values = sorted(slices[k])
        out.append(
            [
                round(k * step_s, 3),
                len(values),
                round(_pct(values, 50) or 0, 1),
                round(_pct(values, 99) or 0, 1),
                round(values[-1], 1),
            ]
        )
    return out


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
async def _run(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    result: dict[str, Any] = {}
    n_users = args.users
    usernames = [f"bench{n:03d}" for n in range(1, n_users + 1)]
    symbols = [f"BN{n:02d}" for n in range(args.symbols)]

    t = time.monotonic()
    server.adduser(usernames, "bench-pw")
    result["adduser_s"] = time.monotonic() - t
    server.start()
    pid = server.pid
    await asyncio.sleep(1.0)
    cpu_start = _cpu_s(pid) or 0.0
    result["rss_start_mb"] = _rss_mb(pid)

    logins = [_login(server.base, name, "bench-pw") for name in usernames]
    user_ids = [uid for uid, _ in logins]
    clients = [
        WsClient(index=n, user_id=logins[n % n_users][0], cookie=logins[n % n_users][1])
        for n in range(args.connections)
    ]
    sampler = _Sampler(pid)
    sampler_task = asyncio.ensure_future(sampler.run())
    try:
        t = time.monotonic()
        sem = asyncio.Semaphore(20)

        async def open_one(client: WsClient) -> None:
            async with sem:
                await _open_client(client, server.port, args.compression)
            client.task = asyncio.ensure_future(_receive(client))

        await asyncio.gather(*(open_one(c) for c in clients))
        result["connect_s"] = time.monotonic() - t
        await asyncio.sleep(args.idle)
        result["rss_idle_mb"] = _rss_mb(pid)
        cpu_idle = _cpu_s(pid) or 0.0
        sampler.peak = result["rss_idle_mb"] or 0.0
        sampler.restart_timeline()
        my_cpu_before = time.process_time()

        # ---- load
        cfg = {
            "port": server.port,
            "users": user_ids,
            "symbols": symbols,
            "rate": args.rate,
            "duration": args.duration,
            "senders": args.senders,
        }
        send = await run_sender(Path(__file__).resolve(), cfg)
        load_end = time.monotonic()
        sent = [tuple(row) for row in send.pop("sent")]
        result["sender"] = send

        # ---- drain: wait until every connection saw the last snapshot of each of its symbols
        last: dict[tuple[str, str], int] = {}
        for i, user, symbol, _ in sent:
            last[(user, symbol)] = max(i, last.get((user, symbol), -1))
        wanted = {
            user: {f"{BENCH_PREFIX}{i}:" for (u, _), i in last.items() if u == user}
            for user in set(user_ids)
        }
        deadline = time.monotonic() + args.window_ms / 1000.0 + args.drain_timeout
        while time.monotonic() < deadline:
            if all(
                c.task is not None
                and (c.task.done() or all(tag in _tail_text(c) for tag in wanted[c.user_id]))
                for c in clients
            ):
                break
            await asyncio.sleep(0.1)
        result["drain_s"] = time.monotonic() - load_end
        await asyncio.sleep(0.2)
        result["rss_after_load_mb"] = _rss_mb(pid)
        cpu_load_end = _cpu_s(pid) or 0.0
        result["bench_client_cpu_s"] = time.process_time() - my_cpu_before
    finally:
        sampler_task.cancel()
    result["rss_peak_mb"] = sampler.peak
    result["rss_timeline_mb"] = sampler.timeline
    result["server_cpu_load_s"] = cpu_load_end - cpu_idle
    result["server_cpu_total_s"] = cpu_load_end
    result["server_cpu_startup_s"] = cpu_start
    load_s = send["elapsed_s"]
    result["server_cpu_load_pct"] = 100.0 * result["server_cpu_load_s"] / max(load_s, 1e-9)

    # ---- the server's own view
    _, admin_cookie = _login(server.base, "admin", "admin")
    status, stats, _ = _http_json(
        "GET", f"{server.base}/api/admin/websocket-stats", headers={"Cookie": admin_cookie}
    )
    result["server_stats"] = stats if status == 200 else {"http_status": status, "body": stats}

    # ---- close clients, analyse
    for c in clients:
        c.closed_by_bench = c.task is not None and not c.task.done()
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None))
    await asyncio.gather(*(c.task for c in clients if c.task is not None))
    result["unexpected_closes"] = [
        {"conn": c.index, "user": c.user_id, "code": c.close_code, "reason": c.close_reason}
        for c in clients
        if not c.closed_by_bench
    ]
    result["client_errors"] = [c.error for c in clients if c.error][:10]
    result["analysis"] = _analyse(clients, sent, args.window_ms)
    return result


def _tail_text(client: WsClient) -> str:
    """The last few frames of a connection as one string (for the drain check)."""
    return "".join(text for _, text in client.frames[-50:])


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def _print_report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    a = r.get("analysis", {})
    s = r.get("sender", {})
    lat_d = a.get("latency_delivered_ms", {})
    lat_e = a.get("latency_effective_ms", {})
    srv = (r.get("server_stats") or {}).get("latencyMs") or {}
    rows: list[tuple[str, str]] = [
        ("machine", f"{r['machine']['nproc']} CPU, {r['machine']['cpu']}"),
        (
            "setup",
            f"{args.connections} connections over {args.users} users, {args.symbols} symbols/user, "
            f"BATCH_WINDOW_MS={args.window_ms}, deflate={'on' if args.compression else 'off'}",
        ),
        (
            "target load",
            f"{args.rate:,.0f} position updates/s for {args.duration:g} s "
            f"via {s.get('connections')} HTTP keep-alive connections",
        ),
        ("", ""),
        ("updates sent (202)", _fmt(len_sent(r))),
        ("updates planned", _fmt(s.get("planned"))),
        ("HTTP statuses", json.dumps(s.get("statuses"))),
        ("achieved rate", _fmt(len_sent(r) / max(s.get("elapsed_s") or 1e-9, 1e-9), "/s", 0)),
        ("sender max lag behind schedule", _fmt((s.get("max_lag_s") or 0) * 1000, " ms")),
        ("hook request time p50/p99", _lat_pair(s.get("request_ms", {}))),
        ("", ""),
        ("expected (sent × conns of user)", _fmt(a.get("expected"))),
        ("  delivered (own snapshot)", _fmt(a.get("delivered"))),
        ("  superseded (newer snapshot sent)", _fmt(a.get("superseded"))),
        ("  LOST", _fmt(a.get("lost"))),
        ("seq gaps / out of order / unexpected", _triple(a)),
        ("unexpected closes", _fmt(len(r.get("unexpected_closes", [])))),
        ("", ""),
        ("stream frames received (all types)", _fmt(a.get("stream_frames"))),
        ("  position_update + batch frames", _fmt(a.get("position_frames"))),
        ("  without batching they would be", _fmt(a.get("frames_if_unbatched"))),
        ("frame reduction by batching", _fmt(100 * (a.get("frame_reduction") or 0), " %")),
        (
            "positions per batch frame p50/max",
            "-"
            if not a.get("batch_size")
            else f"{a['batch_size']['p50']:.0f} / {a['batch_size']['max']:.0f}",
        ),
        ("", ""),
        ("latency delivered p50/p95/p99/max", _lat4(lat_d)),
        ("latency effective p50/p95/p99/max", _lat4(lat_e)),
        ("server's own latency p50/p95/p99", _lat3(srv)),
        ("", ""),
        ("server RSS at start (no connections)", _fmt(r.get("rss_start_mb"), " MB")),
        ("server RSS, connections idle", _fmt(r.get("rss_idle_mb"), " MB")),
        ("server RSS peak under load", _fmt(r.get("rss_peak_mb"), " MB")),
        ("server RSS after load", _fmt(r.get("rss_after_load_mb"), " MB")),
        ("server RSS during load (MB)", _timeline(r.get("rss_timeline_mb") or [])),
        (
            "server CPU under load",
            f"{_fmt(r.get('server_cpu_load_s'), ' s', 2)} "
            f"({_fmt(r.get('server_cpu_load_pct'), ' % of one core', 0)})",
        ),
        ("server CPU total (incl. start-up)", _fmt(r.get("server_cpu_total_s"), " s", 2)),
        (
            "bench CPU: clients / sender",
            f"{_fmt(r.get('bench_client_cpu_s'), ' s', 2)} / {_fmt(s.get('cpu_s'), ' s', 2)}",
        ),
        (
            "server exit on SIGTERM",
            f"code {r.get('server_exit_code')} in {_fmt(r.get('server_stop_s'), ' s', 2)}",
        ),
        ("server log", _log_line(r.get("server_log", {}))),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}" if key else "")
    for line in (r.get("server_log") or {}).get("sample", []):
        print(f"  server: {line}")
    for ex in a.get("seq_gap_examples", []):
        print(f"  gap: {ex}")
    for close in r.get("unexpected_closes", [])[:5]:
        print(f"  closed: {close}")
    verdict = "PASS" if r.get("ok") else "FAIL"
    p95, peak = lat_e.get("p95"), r.get("rss_peak_mb")
    print(
        f"\ndelivery {verdict}: lost {a.get('lost')}, seq gaps {a.get('seq_gaps')}, "
        f"out of order {a.get('out_of_order')}, unexpected closes "
        f"{len(r.get('unexpected_closes', []))}, server exit {r.get('server_exit_code')}"
    )
    met = {True: "met", False: "MISSED", None: "-"}
    start = r.get("rss_start_mb")
    # REQ-6 names memory "for connection management": what the connections add to the process.
    conn_mb = None if peak is None or start is None else peak - start
    print(
        f"REQ-4 p95 < 500 ms: {met[None if p95 is None else p95 < 500]} "
        f"(effective p95 {_fmt(p95, ' ms')}); "
        f"REQ-6 connection management < 100 MB: "
        f"{met[None if conn_mb is None else conn_mb < 100]} "
        f"(+{_fmt(conn_mb, ' MB')} over the idle process; whole process peak {_fmt(peak, ' MB')})"
    )


def len_sent(r: dict[str, Any]) -> int:
    return int(r.get("sent_count") or 0)


def _timeline(points: list[tuple[float, float]], count: int = 8) -> str:
    """About ``count`` evenly spaced ``t:rss`` samples of the RSS timeline."""
    if not points:
        return "-"
    step = max(1, len(points) // count)
    picked = points[::step]
    if picked[-1] != points[-1]:
        picked.append(points[-1])
    return "  ".join(f"{t:.0f}s:{rss:.0f}" for t, rss in picked)


def _lat4(d: dict[str, Any]) -> str:
    return " / ".join(_fmt(d.get(k)) for k in ("p50", "p95", "p99", "max")) + " ms"


def _lat3(d: dict[str, Any]) -> str:
    return " / ".join(_fmt(d.get(k)) for k in ("p50", "p95", "p99")) + " ms"


def _lat_pair(d: dict[str, Any]) -> str:
    return " / ".join(_fmt(d.get(k), "", 2) for k in ("p50", "p99")) + " ms"


def _triple(a: dict[str, Any]) -> str:
    return " / ".join(_fmt(a.get(k)) for k in ("seq_gaps", "out_of_order", "unexpected"))


def _log_line(log: dict[str, Any]) -> str:
    return (
        f"{log.get('warnings', 0)} warnings, {log.get('errors', 0)} errors, "
        f"{log.get('tracebacks', 0)} tracebacks"
    )


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0]}


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/latency.py",
        description="Latency/load benchmark: internal hook → server → WebSocket clients.",
    )
    p.add_argument("--connections", "--conns", type=int, default=100, help="WebSocket clients")
    p.add_argument("--users", type=int, default=20, help="bench users (connections spread)")
    p.add_argument("--symbols", type=int, default=10, help="symbols per user")
    p.add_argument("--rate", type=float, default=1000.0, help="position updates per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument(
        "--batch-window-ms", dest="window_ms", type=int, default=250, help="BATCH_WINDOW_MS"
    )
    p.add_argument(
        "--senders", type=int, default=20, help="HTTP keep-alive connections (at most --users)"
    )
    p.add_argument("--idle", type=float, default=2.0, help="seconds idle before the load")
    p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to wait at the end")
    p.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate (browsers do)",
    )
    p.add_argument("--log-level", default="WARNING", help="server LOG_LEVEL")
    p.add_argument("--keep", action="store_true", help="keep the DATA_DIR (server.log) afterwards")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if args.connections < 1 or args.users < 1 or args.symbols < 1 or args.rate <= 0:
        p.error("--connections, --users, --symbols and --rate must be positive")
    args.users = min(args.users, args.connections)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_sender"]:
        return _sender_entry()
    args = _parse_args(argv)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    data_dir = Path(tempfile.mkdtemp(prefix="folio-bench-"))
    server = ServerProcess(data_dir, _free_port(), args.window_ms, args.log_level)
    result: dict[str, Any] = {"machine": _machine(), "args": vars(args)}
    failure: BaseException | None = None
    try:
        if not args.json:
            print(
                f"folio-stream bench: {args.connections} connections, {args.rate:g} updates/s "
                f"for {args.duration:g} s, BATCH_WINDOW_MS={args.window_ms} …",
                file=sys.stderr,
            )
        result.update(asyncio.run(_run(args, server)))
    except KeyboardInterrupt:
        print("interrupted: stopping the server", file=sys.stderr)
        failure = KeyboardInterrupt()
    except Exception as exc:  # noqa: BLE001 - reported with the server log
        failure = exc
    finally:
        server.stop()
        result["server_exit_code"] = server.exit_code
        result["server_stop_s"] = server.stop_seconds
        result["server_log"] = server.log_problems()
        if args.keep or (failure is not None and not isinstance(failure, KeyboardInterrupt)):
            print(f"server log kept in {server.log_path}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    if isinstance(failure, KeyboardInterrupt):
        return 130
    if failure is not None:
        print(
            f"bench failed: {failure!r}\n--- server log tail ---\n{server.log_tail()}",
            file=sys.stderr,
        )
        return 1

    sender = result.get("sender", {})
    result["sent_count"] = sender.get("statuses", {}).get("202", 0)
    a = result["analysis"]
    result["ok"] = bool(
        a["lost"] == 0
        and a["seq_gaps"] == 0
        and a["out_of_order"] == 0
        and a["unexpected"] == 0
        and not result["unexpected_closes"]
        and not result["client_errors"]
        and result["sent_count"] == sender.get("planned")
        and result["server_exit_code"] == 0
        and result["server_log"]["tracebacks"] == 0
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_report(args, result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
