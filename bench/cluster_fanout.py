"""Cluster fan-out benchmark: targeted Redis subscriptions vs one pattern subscription per process.

Issue 9, item 5. Until commit 52d3f9e every server process pattern-subscribed to
``<prefix>:pub:*`` and received every user's publications; since the targeted fan-out a process
subscribes to ``<prefix>:pub:<userId>`` only while it holds a subscribed socket of that user. This
script runs the same load against both versions, in the same run, alternating:

- ``--processes`` (4) ``python server.py`` processes sharing one SQLite ``DATABASE_URL`` (a fresh
  copy of a template holding the bench users), one ``SECRET_KEY`` and Redis (``--redis-url``,
  default the shared ``redis://127.0.0.1:6379``) under a unique ``REDIS_PREFIX`` whose keys are
  deleted afterwards (never a FLUSH). Process 0 runs in demo mode and owns the simulator
  (``SIMULATOR_AUTO_TRADE=false``); the others point their Alpaca URLs at it, as a second
  process of a deployment would (see tests/test_redis_fanout.py).
- ``--users`` bench users, each with ``--tabs`` real WebSocket clients (``websockets``, offering
  permessage-deflate) on ONE process (user i → process i % K), subscribed to every channel.
- A sender process pushes ``position_update`` events through ``POST /internal/events`` at
  ``--rate``/s for ``--duration`` s, round-robin over users; user i's events go to process
  (i + 1) % K, never the one holding its sockets, so every event crosses Redis. One keep-alive
  connection per user, one request at a time: a user's events keep their order.
- ``BATCH_WINDOW_MS=0`` by default: every event is one Redis publication and one frame, so
  "every client got every event" is checked exactly (seq consecutive from the snapshot, the
  user's accepted events all present, in order).

Measured over the load (from just before the first event until every client has its user's last
event): utime+stime of each server process and of ``redis-server`` (pid from ``INFO server``,
``/proc/<pid>/stat``); Redis ``INFO stats`` deltas (commands processed, network output bytes);
and, per process, the bytes its pub/sub connection received from Redis (``ss -ti``
``bytes_received`` of the socket that ``CLIENT LIST`` flags ``P``) with its subscription counts.
"Publications received" is those bytes divided by the bytes of one publication: pub/sub bytes of
all processes ÷ publications they needed, over the targeted runs (there each process needs exactly
its users' events), plus, for a pattern subscription, the RESP2 bytes of ``pmessage`` and the
pattern that every such message carries besides. The machine is shared: compare the two modes by
their ratios in the same run.

Not part of the test suite: ``.venv/bin/python bench/cluster_fanout.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import _free_port, _login, run_sender  # noqa: E402 - bench/ is not a package

REPO = Path(__file__).resolve().parents[1]
PATTERN_REF = "52d3f9e"  # the last commit with the pattern subscription
TOKEN = "cluster-bench"
TAG = "cb:"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-pw"
# settings the benchmark controls; anything else of the caller's environment is passed through
_STRIP_ENV = (
    "ALPACA_",
    "DATABASE_",
    "REDIS_",
    "SIMULATOR_",
    "SECRET_KEY",
    "ALLOWED_ORIGINS",
    "ENABLE_REALTIME",
    "HOST",
    "PORT",
    "DATA_DIR",
)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(pct / 100 * len(values))) - 1))]


def _new_prefix() -> str:
    """A unique REDIS_PREFIX for one run (its keys are deleted at the end)."""
    return f"clusterbench-{secrets.token_hex(4)}"


def _pubsub_sockets(pids: set[int], redis_port: int) -> dict[int, tuple[int, int]]:
    """Local port → (pid, bytes_received) of every TCP connection of ``pids`` to ``redis_port``.

    From ``ss -tinpH``: the first line of a record names the process, the indented next line
    holds ``tcp_info`` (``bytes_received`` = payload bytes received, RFC 4898 HCThruOctetsReceived).
    """
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    result: dict[int, tuple[int, int]] = {}
    current: tuple[int, int] | None = None
    for line in out.splitlines():
        if not line[:1].isspace():
            current = None
            m_pid = re.search(r"pid=(\d+),", line)
            parts = line.split()
            if (
                m_pid
                and int(m_pid.group(1)) in pids
                and len(parts) >= 4
                and parts[3].rsplit(":", 1)[-1] == str(redis_port)
            ):
                local = parts[2]
                current = (int(local.rsplit(":", 1)[1]), int(m_pid.group(1)))
        elif current is not None:
            m_bytes = re.search(r"bytes_received:(\d+)", line)
            result[current[0]] = (current[1], int(m_bytes.group(1)) if m_bytes else 0)
            current = None
    return result


# --------------------------------------------------------------------------------------------
# server processes
# --------------------------------------------------------------------------------------------
@dataclass
class Node:
    """One ``python server.py`` of the cluster, run from ``tree`` (a checkout of some commit)."""

    index: int
    tree: Path
    data_dir: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "server.py"],
                cwd=self.tree,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"process {self.index} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"process {self.index} never became healthy:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, SIGKILL if it does not exit (idempotent)."""
        proc = self.proc
        if proc is None or self.exit_code is not None:
            return
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

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, Any]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        bad = [ln for ln in lines if " WARNING " in ln or " ERROR " in ln or " CRITICAL " in ln]
        return {
            "warnings_errors": len(bad),
            "tracebacks": sum(1 for ln in lines if ln.startswith("Traceback")),
            "sample": [ln[:240] for ln in bad[:5]],
        }


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_ENV)}


def _make_template_db(work: Path, names: list[str], secret_key: str) -> Path:
    """Create a SQLite database holding the bench users (``server.py adduser``, 4 at a time)."""
    db = work / "template" / "folio.db"
    db.parent.mkdir(parents=True)
    env = _base_env()
    env.update(
        {
            "DATA_DIR": str(db.parent),
            "DATABASE_URL": f"sqlite:///{db}",
            "SECRET_KEY": secret_key,
            "LOG_LEVEL": "WARNING",
        }
    )
    todo = list(names)
    for attempt in range(5):
        failed: list[str] = []
        last_error = ""
        # the first one alone creates the schema
        for i in [0, *range(1, len(todo), 4)]:
            batch = todo[i : i + (1 if i == 0 else 4)]
            procs = [
                (
                    name,
                    subprocess.Popen(
                        [sys.executable, "server.py", "adduser", name, "--password", PASSWORD],
                        cwd=REPO,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    ),
                )
                for name in batch
            ]
            for name, proc in procs:
                _, err = proc.communicate(timeout=120)
                if proc.returncode != 0 and b"already exists" not in err:
                    failed.append(name)
                    last_error = err.decode(errors="replace").strip()
        if not failed:
            return db
        todo = failed
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"adduser failed for {todo}: {last_error}")


def _cluster(
    args: argparse.Namespace, tree: Path, run_dir: Path, db: Path, secret_key: str, prefix: str
) -> list[Node]:
    sim_port = _free_port()
    common = _base_env()
    common.update(
        {
            "DATABASE_URL": f"sqlite:///{db}",
            "SECRET_KEY": secret_key,
            "REDIS_URL": args.redis_url,
            "REDIS_PREFIX": prefix,
            "INTERNAL_TOKEN": TOKEN,
            "MAX_CONNECTIONS_PER_USER": "1000",
            "BATCH_WINDOW_MS": str(args.batch_window_ms),
            "SIMULATOR_AUTO_TRADE": "false",
            "LOG_LEVEL": args.log_level,
        }
    )
    nodes = []
    for k in range(args.processes):
        env = dict(common)
        port = _free_port()
        env.update({"PORT": str(port), "DATA_DIR": str(run_dir / f"p{k}")})
        if k == 0:
            env["SIMULATOR_PORT"] = str(sim_port)
        else:  # a second process of the deployment: Alpaca URLs at process 0's simulator
            env.update(
                {
                    "ALPACA_API_KEY": "DEMO-MARKET-DATA",
                    "ALPACA_SECRET_KEY": "demo-market-data-secret",
                    "ALPACA_TRADING_URL": f"http://127.0.0.1:{sim_port}",
                    "ALPACA_STREAM_URL": f"ws://127.0.0.1:{sim_port}/stream",
                    "ALPACA_DATA_URL": f"ws://127.0.0.1:{sim_port}/v2/iex",
                }
            )
        nodes.append(Node(k, tree, run_dir / f"p{k}", env, port))
    return nodes


# --------------------------------------------------------------------------------------------
# the sender (a separate process: `cluster_fanout.py _sender`, config on stdin, result on stdout)
# --------------------------------------------------------------------------------------------
def _body_parts(user_id: str) -> tuple[bytes, bytes]:
    data = {
        "symbol": "CLB",
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
    head, tail = json.dumps({"userId": user_id, "type": "position_update", "data": data}).split(
        "@@"
    )
    return head.encode(), tail.encode()


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[0].split()[1])


async def _sender_main(cfg: dict[str, Any]) -> dict[str, Any]:
    targets: list[tuple[str, int]] = [tuple(t) for t in cfg["targets"]]  # (userId, hook port)
    rate: float = cfg["rate"]
    total = int(rate * cfg["duration"])
    plan: list[list[int]] = [[] for _ in targets]
    for i in range(total):
        plan[i % len(targets)].append(i)
    sent: list[tuple[int, int]] = []  # (event index, user index)
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    lag_max = 0.0
    t0 = time.monotonic() + 0.3

    async def run_user(u: int) -> None:
        nonlocal lag_max
        user_id, port = targets[u]
        head, tail = _body_parts(user_id)
        prefix = (
            f"POST /internal/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in plan[u]:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lag_max = max(lag_max, -delay)
                body = head + f"{TAG}{i}:{time.time_ns()}".encode() + tail
                writer.write(prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                try:
                    status = await _read_status(reader)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    errors.append(f"event {i}: {exc!r}")
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                statuses[status] += 1
                if status == 202:
                    sent.append((i, u))
                elif len(errors) < 20:
                    errors.append(f"event {i}: HTTP {status}")
        finally:
            writer.close()

    await asyncio.gather(*(run_user(u) for u in range(len(targets))))
    return {
        "planned": total,
        "sent": sent,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "elapsed_s": time.monotonic() - t0,
        "max_lag_s": lag_max,
    }


def _sender_entry() -> int:
    cfg = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(asyncio.run(_sender_main(cfg))))
    return 0


# --------------------------------------------------------------------------------------------
# WebSocket clients
# --------------------------------------------------------------------------------------------
@dataclass
class Tab:
    """One WebSocket client: a tab of ``user`` (index) on process ``node``."""

    user: int
    node: int
    cookie: str
    start_seq: int = 0
    seqs: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)  # bench event indices, in arrival order
    latency_ms: list[float] = field(default_factory=list)
    last: int = -1
    close_code: int | None = None
    error: str | None = None
    ws: Any = None
    task: asyncio.Task[None] | None = None


async def _open_tab(tab: Tab, port: int) -> None:
    from websockets.asyncio.client import connect

    tab.ws = await connect(
        f"ws://127.0.0.1:{port}/ws/portfolio",
        additional_headers={"Cookie": tab.cookie},
        compression="deflate",
        ping_interval=None,  # the server pings; websockets answers
        max_size=2**22,
        max_queue=None,
        open_timeout=60,
    )
    channels = ["positions", "orders", "account", "trades"]
    await tab.ws.send(json.dumps({"type": "subscribe", "channels": channels}))
    while True:
        msg = json.loads(await asyncio.wait_for(tab.ws.recv(), 60))
        if msg["type"] == "snapshot":
            tab.start_seq = int(msg["seq"])
            return
        if msg["type"] == "error":
            raise RuntimeError(f"user {tab.user}: {msg}")


async def _receive(tab: Tab) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            text = await tab.ws.recv()
            now = time.time_ns()
            msg = json.loads(text)
            if "seq" in msg and msg.get("type") not in ("subscribed", "snapshot", "pong", "error"):
                tab.seqs.append(int(msg["seq"]))
            if msg.get("type") == "position_update":
                tag = str(msg["data"].get("strategyId") or "")
                if tag.startswith(TAG):
                    _, i, sent_ns = tag.split(":")
                    tab.events.append(int(i))
                    tab.last = int(i)
                    tab.latency_ms.append((now - int(sent_ns)) / 1e6)
    except ConnectionClosed as exc:
        tab.close_code = exc.rcvd.code if exc.rcvd is not None else None
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        tab.error = repr(exc)


def _check(tabs: list[Tab], sent: list[tuple[int, int]]) -> dict[str, Any]:
    """Every tab got every accepted event of its user, in order, with consecutive seq."""
    by_user: dict[int, list[int]] = {}
    for i, u in sorted(sent):
        by_user.setdefault(u, []).append(i)
    lost = seq_gaps = out_of_order = unexpected = 0
    for tab in tabs:
        expected = by_user.get(tab.user, [])
        got = set(tab.events)
        lost += sum(1 for i in expected if i not in got)
        unexpected += len(got - set(expected)) + (len(tab.events) - len(got))
        out_of_order += sum(1 for a, b in zip(tab.events, tab.events[1:], strict=False) if b <= a)
        prev = tab.start_seq
        for s in tab.seqs:
            if s != prev + 1:
                seq_gaps += 1
            prev = s
    return {
        "expected": sum(len(by_user.get(t.user, [])) for t in tabs),
        "received": sum(len(t.events) for t in tabs),
        "lost": lost,
        "seq_gaps": seq_gaps,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
        "closed": sum(1 for t in tabs if t.close_code is not None or t.error),
    }


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------
def _redis_view(r: Any, pids: set[int], redis_port: int) -> dict[str, Any]:
    """Redis stats and, per server pid, its pub/sub connection (bytes received, sub counts)."""
    stats = r.info("stats")
    clients = r.client_list()
    sockets = _pubsub_sockets(pids, redis_port)
    per_pid: dict[int, dict[str, int]] = {}
    for c in clients:
        if "P" not in c.get("flags", ""):
            continue
        port = int(str(c["addr"]).rsplit(":", 1)[1])
        if port in sockets:
            pid, received = sockets[port]
            per_pid[pid] = {
                "bytes_received": received,
                "sub": int(c.get("sub", 0)),
                "psub": int(c.get("psub", 0)),
            }
    return {
        "commands": int(stats["total_commands_processed"]),
        "net_out": int(stats["total_net_output_bytes"]),
        "net_in": int(stats["total_net_input_bytes"]),
        "pubsub_channels": int(stats.get("pubsub_channels", 0)),
        "pubsub_patterns": int(stats.get("pubsub_patterns", 0)),
        "per_pid": per_pid,
    }


async def _run_once(
    args: argparse.Namespace,
    mode: str,
    tree: Path,
    template_db: Path,
    names: list[str],
    secret_key: str,
    work: Path,
    run_no: int,
) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(args.redis_url, decode_responses=True)
    server_info = r.info("server")
    redis_pid, redis_port = int(server_info["process_id"]), int(server_info["tcp_port"])
    prefix = _new_prefix()
    run_dir = work / f"run{run_no}-{mode}"
    run_dir.mkdir()
    db = run_dir / "folio.db"
    shutil.copy(template_db, db)
    nodes = _cluster(args, tree, run_dir, db, secret_key, prefix)
    tabs: list[Tab] = []
    result: dict[str, Any] = {"mode": mode, "run": run_no, "prefix": prefix}
    try:
        nodes[0].start()  # the simulator's owner and first leader
        nodes[0].wait_healthy()
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            node.wait_healthy()
        pids = {n.pid for n in nodes}
        k = len(nodes)
        logins = [
            _login(nodes[0].base, name, PASSWORD, timeout=30) for name in names
        ]  # sessions live in the DB
        tabs = [
            Tab(user=u, node=u % k, cookie=cookie)
            for u, (_, cookie) in enumerate(logins)
            for _ in range(args.tabs)
        ]
        sem = asyncio.Semaphore(10)

        async def open_one(tab: Tab) -> None:
            async with sem:
                await _open_tab(tab, nodes[tab.node].port)
            tab.task = asyncio.ensure_future(_receive(tab))

        await asyncio.gather(*(open_one(t) for t in tabs))
        await asyncio.sleep(args.idle)

        # ---- before the load
        cpu0 = {n.index: _cpu_s(n.pid) for n in nodes}
        rcpu0 = _cpu_s(redis_pid)
        view0 = _redis_view(r, pids, redis_port)
        t_start = time.monotonic()
        cfg = {
            "targets": [(uid, nodes[(u + 1) % k].port) for u, (uid, _) in enumerate(logins)],
            "rate": args.rate,
            "duration": args.duration,
        }
        send = await run_sender(Path(__file__).resolve(), cfg)
        sent = [(int(i), int(u)) for i, u in send.pop("sent")]
        last_of: dict[int, int] = {}
        for i, u in sent:
            last_of[u] = max(i, last_of.get(u, -1))
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            if all(t.last >= last_of.get(t.user, -1) or t.task.done() for t in tabs):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        window = time.monotonic() - t_start

        # ---- after the load
        cpu1 = {n.index: _cpu_s(n.pid) for n in nodes}
        rcpu1 = _cpu_s(redis_pid)
        view1 = _redis_view(r, pids, redis_port)

        per_node = []
        for n in nodes:
            before = view0["per_pid"].get(n.pid, {})
            after = view1["per_pid"].get(n.pid, {})
            users_here = {u for u in range(len(names)) if u % k == n.index}
            per_node.append(
                {
                    "index": n.index,
                    "cpu_s": cpu1[n.index] - cpu0[n.index],
                    "pubsub_bytes": after.get("bytes_received", 0)
                    - before.get("bytes_received", 0),
                    "sub": after.get("sub"),
                    "psub": after.get("psub"),
                    "needed": sum(1 for _, u in sent if u in users_here),
                    "hooked": sum(1 for _, u in sent if (u + 1) % k == n.index),
                }
            )
        result.update(
            {
                "window_s": window,
                "sender": send,
                "sent": len(sent),
                "nodes": per_node,
                "redis_cpu_s": rcpu1 - rcpu0,
                "redis_commands": view1["commands"] - view0["commands"],
                "redis_net_out": view1["net_out"] - view0["net_out"],
                "redis_net_in": view1["net_in"] - view0["net_in"],
                "pubsub_channels": view1["pubsub_channels"],
                "pubsub_patterns": view1["pubsub_patterns"],
                "check": _check(tabs, sent),
                "latency_ms": {
                    "p50": _pct([x for t in tabs for x in t.latency_ms], 50),
                    "p99": _pct([x for t in tabs for x in t.latency_ms], 99),
                },
            }
        )
    finally:
        for tab in tabs:
            if tab.ws is not None:
                await tab.ws.close()
        await asyncio.gather(*(t.task for t in tabs if t.task is not None))
        for node in reversed(nodes):  # the simulator's owner last: no reconnect noise in logs
            node.stop()
        result["exit_codes"] = [n.exit_code for n in nodes]
        result["logs"] = [n.log_problems() for n in nodes]
        deleted = 0
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            deleted += int(r.delete(key))
        for key in r.scan_iter(match=f"{prefix}-*", count=1000):  # e.g. the consumer group
            deleted += int(r.delete(key))
        result["redis_keys_deleted"] = deleted
        r.close()
    return result


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _summarise(res: dict[str, Any]) -> dict[str, Any]:
    nodes = res["nodes"]
    cpu = [n["cpu_s"] for n in nodes]
    pubsub = [n["pubsub_bytes"] for n in nodes]
    needed = sum(n["needed"] for n in nodes)
    return {
        "cpu_sum": sum(cpu),
        "cpu_max": max(cpu),
        "redis_cpu": res["redis_cpu_s"],
        "pubsub_bytes_sum": sum(pubsub),
        "pubsub_bytes_max": max(pubsub),
        "bytes_per_needed": sum(pubsub) / needed if needed else None,
    }


def _report(args: argparse.Namespace, results: list[dict[str, Any]], machine: str) -> str:
    lines: list[str] = []
    add = lines.append
    k = args.processes
    add(
        f"Setup: {k} processes, {args.users} users × {args.tabs} tabs = {args.users * args.tabs} "
        f"WebSockets (deflate), user i on process i % {k}, its events hooked on process "
        f"(i + 1) % {k}; {args.rate:g} position_update/s for {args.duration:g} s, "
        f"BATCH_WINDOW_MS={args.batch_window_ms}; Redis {args.redis_url}. Machine: {machine}."
    )
    add("")
    add(
        "| run | mode | sent | subs per process (sub/psub) | process CPU s sum | max "
        "| Redis CPU s | Redis cmds | Redis net out MB | pub/sub MB received per process "
        "| ≈ publications received per process | lost | seq gaps | p50/p99 ms |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    # bytes of one publication: from the targeted runs, where each process needs exactly its
    # users' events; a pmessage (pattern) carries "pmessage" and the pattern besides (RESP2)
    rs = [r for r in results if r["mode"] == "targeted" and "nodes" in r]
    b = sum(n["pubsub_bytes"] for r in rs for n in r["nodes"])
    c = sum(n["needed"] for r in rs for n in r["nodes"])
    pattern_len = len(f"{_new_prefix()}:pub:*")  # every prefix has the same length
    extra = 1 + len(f"${pattern_len}\r\n") + pattern_len + 2
    per_pub = {"targeted": b / c if c else 0.0}
    per_pub["pattern"] = per_pub["targeted"] + extra if c else 0.0
    for res in results:
        if "nodes" not in res:
            add(f"| {res['run']} | {res['mode']} | FAILED: {res.get('error')} |")
            continue
        s = _summarise(res)
        chk = res["check"]
        subs = " ".join(f"{n['sub']}/{n['psub']}" for n in res["nodes"])
        mb = " ".join(f"{n['pubsub_bytes'] / 1e6:.2f}" for n in res["nodes"])
        bpp = per_pub[res["mode"]]
        pubs = " ".join(f"{n['pubsub_bytes'] / bpp:,.0f}" if bpp else "-" for n in res["nodes"])
        lat = res["latency_ms"]
        add(
            f"| {res['run']} | {res['mode']} | {res['sent']:,} | {subs} | {s['cpu_sum']:.2f} "
            f"| {s['cpu_max']:.2f} | {s['redis_cpu']:.2f} | {res['redis_commands']:,} "
            f"| {res['redis_net_out'] / 1e6:.2f} | {mb} | {pubs} | {chk['lost']} "
            f"| {chk['seq_gaps']} | {lat['p50']:.0f}/{lat['p99']:.0f} |"
        )
    add("")
    add(
        f"Bytes per publication on a pub/sub connection (measured): targeted "
        f"{per_pub['targeted']:.1f} B per message (pub/sub bytes ÷ publications needed, targeted "
        f"runs); a pattern pmessage is {extra} B longer (RESP2: 'pmessage' and the pattern), "
        f"{per_pub['pattern']:.1f} B. Publications received = pub/sub bytes ÷ that size."
    )
    # ratios pattern / targeted over the mean of each mode's runs
    add("")
    ok = [r for r in results if "nodes" in r]
    means: dict[str, dict[str, float]] = {}
    for mode in ("targeted", "pattern"):
        rs = [_summarise(r) | {"net_out": r["redis_net_out"]} for r in ok if r["mode"] == mode]
        if rs:
            means[mode] = {key: sum(x[key] for x in rs) / len(rs) for key in rs[0] if rs[0][key]}
    if len(means) == 2:
        add("| mean over runs | targeted | pattern | pattern ÷ targeted |")
        add("|---|---|---|---|")
        labels = {
            "cpu_sum": "process CPU s, sum of all",
            "cpu_max": "process CPU s, busiest",
            "redis_cpu": "Redis CPU s",
            "net_out": "Redis net out MB",
            "pubsub_bytes_sum": "pub/sub MB received, all processes",
        }
        for key, label in labels.items():
            t, p = means["targeted"].get(key), means["pattern"].get(key)
            if t is None or p is None:
                continue
            scale = 1e6 if "MB" in label else 1.0
            add(f"| {label} | {t / scale:.2f} | {p / scale:.2f} | {p / t:.2f} |")
    add("")
    for res in ok:
        logs = res.get("logs", [])
        issues = sum(x["warnings_errors"] for x in logs), sum(x["tracebacks"] for x in logs)
        add(
            f"- run {res['run']} {res['mode']}: window {res['window_s']:.1f} s, sender max lag "
            f"{res['sender']['max_lag_s'] * 1000:.0f} ms, statuses {res['sender']['statuses']}, "
            f"check {res['check']}, exits {res['exit_codes']}, "
            f"log warnings/errors {issues[0]}, tracebacks {issues[1]}, "
            f"Redis keys deleted {res['redis_keys_deleted']}"
        )
        for x in logs:
            for ln in x["sample"][:2]:
                add(f"  - `{ln}`")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/cluster_fanout.py",
        description="Redis fan-out across processes: targeted subscriptions vs a pattern.",
    )
    p.add_argument("--processes", type=int, default=4, help="server processes (K)")
    p.add_argument("--users", type=int, default=40, help="bench users")
    p.add_argument("--tabs", type=int, default=5, help="WebSocket clients per user")
    p.add_argument("--rate", type=float, default=1000.0, help="position updates per second")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load")
    p.add_argument("--repeat", type=int, default=2, help="runs per mode (alternating)")
    p.add_argument("--batch-window-ms", type=int, default=0, help="BATCH_WINDOW_MS")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="shared Redis")
    p.add_argument(
        "--own-redis",
        action="store_true",
        help="start a private redis-server on a free port (its CPU is then the bench's alone)",
    )
    p.add_argument("--pattern-ref", default=PATTERN_REF, help="commit with the pattern code")
    p.add_argument("--idle", type=float, default=2.0, help="seconds idle before the load")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait at the end")
    p.add_argument("--log-level", default="WARNING", help="server LOG_LEVEL")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    args = p.parse_args(argv)
    if min(args.processes, args.users, args.tabs, args.repeat) < 1 or args.rate <= 0:
        p.error("--processes, --users, --tabs, --repeat and --rate must be positive")
    return args


def _start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private, non-persistent ``redis-server`` on a free port; return it and its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("the private redis-server did not start")


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return f"{os.cpu_count()} CPU ({cpu}), load average at start {load[0]:.1f}"


async def _main(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    names = [f"cbench{n:03d}" for n in range(args.users)]
    secret_key = secrets.token_urlsafe(32)
    print(f"creating {len(names)} users …", file=sys.stderr)
    template = _make_template_db(work, names, secret_key)
    pattern_tree = work / "pattern-tree"
    pattern_tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", args.pattern_ref], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(pattern_tree)], input=archive, check=True)
    trees = {"targeted": REPO, "pattern": pattern_tree}
    results = []
    run_no = 0
    for _ in range(args.repeat):
        for mode in ("targeted", "pattern"):
            run_no += 1
            print(f"run {run_no}: {mode} …", file=sys.stderr)
            try:
                res = await _run_once(
                    args, mode, trees[mode], template, names, secret_key, work, run_no
                )
            except Exception as exc:  # noqa: BLE001 - reported in the table
                res = {"mode": mode, "run": run_no, "error": repr(exc)[:300]}
                print(f"run {run_no} failed: {exc}", file=sys.stderr)
            results.append(res)
            if "check" in res:
                print(
                    f"  cpu {_summarise(res)['cpu_sum']:.2f} s, redis {res['redis_cpu_s']:.2f} s, "
                    f"check {res['check']}",
                    file=sys.stderr,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_sender"]:
        return _sender_entry()
    args = _parse_args(argv)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    machine = _machine()
    work = Path(tempfile.mkdtemp(prefix="folio-cluster-bench-"))
    own_redis: subprocess.Popen[bytes] | None = None
    try:
        if args.own_redis:
            own_redis, args.redis_url = _start_redis(work)
        results = asyncio.run(_main(args, work))
    finally:
        if own_redis is not None:
            own_redis.terminate()
            try:
                own_redis.wait(10)
            except subprocess.TimeoutExpired:
                own_redis.kill()
                own_redis.wait()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = _report(args, results, machine)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    ok = all(
        "check" in r
        and r["check"]["lost"] == 0
        and r["check"]["seq_gaps"] == 0
        and r["check"]["out_of_order"] == 0
        and r["check"]["unexpected"] == 0
        and r["sent"] == r["sender"]["planned"]
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
