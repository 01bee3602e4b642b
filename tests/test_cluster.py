"""folio-stream as a cluster of real processes (issue 9, "How it is checked").

One module-wide cluster, started as an operator would (docs/deployment.md):

* a private ``redis-server`` on a free port (part e stops it; never the shared one);
* a fresh PostgreSQL schema of ``TEST_DATABASE_URL``, seeded by ``ops/cluster/seed.sh`` (run twice:
  it must be idempotent) after ``ops/cluster/check.sh``;
* ``python -m streaming.simulator`` (its auto-trader on), two ``server.py bridge`` processes
  (``LEASE_S=2``) and ``server.py web --processes 2`` (two web processes on one port), with a
  short heartbeat (0.5 s, timeout 2 s).

Clients are the ``websockets`` library (offering permessage-deflate) on the web port. Which web
process holds a socket is read from ``ss`` (the server side of the TCP connection). Every part
ends by checking that each client saw every ``seq`` of its user exactly once, from its first
snapshot to its last message (a reconnect resumes with ``lastSeq`` + ``epoch``).

The parts run in file order but each starts by healing the cluster (a killed bridge is started
again; ``fork_processes`` restarts a killed web process by itself), so ``-k`` runs any one alone.
No assertion depends on wall-clock speed; the figures measured (takeover time, slot freed after,
RSS) are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import REQUIRE_SERVICES, postgres_schema_url, wait
from tests.handlers.test_ws import ORDER
from tests.test_redis_outage import PrivateRedis, _free_port

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
TOKEN = "cluster-test-token"
SECRET_KEY = "cluster-test-secret-key-0123456789"
LEASE_S = 2.0
HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_TIMEOUT_S = 2.0
MAX_PER_USER = 5
ACCOUNTS = {"alice": ("DEMO-ALICE", "demo-alice-secret"), "bob": ("DEMO-BOB", "demo-bob-secret")}
DATA_KEY = ("DEMO-MARKET-DATA", "demo-market-data-secret")
CHANNELS = ["positions", "orders", "account", "trades"]
# the caller's settings that would change what the processes do
_STRIP_ENV = ("ALPACA_", "DATABASE_", "REDIS_", "SIMULATOR_", "SECRET_KEY", "PORT", "HOST")


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------
def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None


def _until(predicate: Any, what: str, seconds: float) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fails after ``seconds``)."""
    start = time.monotonic()
    end = start + wait(seconds)
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except OSError:
            pass
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


class Proc:
    """One process of the cluster, its stderr in ``<dir>/<name>.log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], directory: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.args],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s (idempotent)."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


class Cluster:
    """The simulator, two bridges and ``web --processes 2`` on one port (see the module doc)."""

    def __init__(self, directory: Path, redis: PrivateRedis, database_url: str) -> None:
        self.dir = directory
        self.redis = redis
        self.sim_port = _free_port()
        self.web_port = _free_port()
        self.bridge_ports = [_free_port(), _free_port()]
        sim = f"127.0.0.1:{self.sim_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_ENV)}
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis.url,
                "REDIS_PREFIX": f"cluster-{secrets.token_hex(3)}",
                "SECRET_KEY": SECRET_KEY,
                "INTERNAL_TOKEN": TOKEN,
                "ALPACA_API_KEY": DATA_KEY[0],
                "ALPACA_SECRET_KEY": DATA_KEY[1],
                "ALPACA_TRADING_URL": f"http://{sim}",
                "ALPACA_STREAM_URL": f"ws://{sim}/stream",
                "ALPACA_DATA_URL": f"ws://{sim}/v2/iex",
                "DATA_DIR": str(directory),
                "LEASE_S": str(LEASE_S),
                "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
                "HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
                "MAX_CONNECTIONS_PER_USER": str(MAX_PER_USER),
                "BATCH_WINDOW_MS": "0",
                "WS_UPGRADE_RATE": "1000",
                "WS_UPGRADE_BURST": "1000",
                "MAX_CONNECTIONS_PER_ADDRESS": "0",
                "LOG_LEVEL": "INFO",
                "PY": sys.executable,
            }
        )
        self.env = env
        accounts = [f"--account={k}:{s}" for k, s in (*ACCOUNTS.values(), DATA_KEY)]
        self.simulator = Proc(
            "simulator",
            [
                "-m",
                "streaming.simulator",
                f"--port={self.sim_port}",
                *accounts,
                "--auto-trade-every-s=1",
                "--fill-delay-s=0.2",
            ],
            env,
            directory,
        )
        self.bridges = [
            Proc(f"bridge{i + 1}", ["server.py", "bridge"], {**env, "PORT": str(port)}, directory)
            for i, port in enumerate(self.bridge_ports)
        ]
        self.internal_port = _free_port()
        self.web = Proc(
            "web",
            ["server.py", "web", "--processes", "2"],
            {**env, "PORT": str(self.web_port), "INTERNAL_PORT": str(self.internal_port)},
            directory,
        )
        self.user_ids: dict[str, str] = {}

    @property
    def procs(self) -> list[Proc]:
        return [self.simulator, *self.bridges, self.web]

    # -- start and heal ---------------------------------------------------------------------------
    def seed(self) -> None:
        env_file = self.dir / "cluster.env"
        env_file.write_text(
            "".join(f"{k}={self.env[k]}\n" for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"))
        )
        for script in ("check.sh", "seed.sh", "seed.sh"):  # seeding twice: idempotent
            result = subprocess.run(
                ["sh", f"ops/cluster/{script}", str(env_file)],
                cwd=REPO,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=wait(60),
            )
            assert result.returncode == 0, f"{script}: {result.stdout}{result.stderr}"
        assert "alice exists" in result.stdout and "admin exists" in result.stdout, result.stdout

    def start(self) -> None:
        self.simulator.start()
        _until(lambda: _port_open(self.sim_port), "the simulator", 30)
        for proc in (*self.bridges, self.web):
            proc.start()
        self.heal()

    def heal(self) -> None:
        """Start a stopped bridge again; wait for two web processes and both accounts owned."""
        for bridge in self.bridges:
            if not bridge.alive:
                bridge.start()
        for proc in self.procs:
            assert proc.alive, proc.tail()
        try:
            for port in self.bridge_ports:
                _until(
                    lambda p=port: _get_json(f"http://127.0.0.1:{p}/livez")[0] == 200,
                    "a bridge",
                    40,
                )
            _until(lambda: len(self.web_pids()) == 2, "two web processes", 40)
            _until(
                lambda: _get_json(f"http://127.0.0.1:{self.web_port}/readyz")[0] == 200,
                "the web port",
                40,
            )
            if self.user_ids:
                _until(self._spread, "one account per bridge", 40)
        except AssertionError:
            raise AssertionError("\n".join(p.tail() for p in self.procs)) from None

    def stop(self) -> None:
        for proc in (self.web, *self.bridges, self.simulator):  # the broker last
            proc.stop()

    # -- looking at it ----------------------------------------------------------------------------
    def owned(self) -> dict[int, set[str]]:
        """Bridge port → the userIds whose account it streams (``/readyz`` ``accountsOwned``)."""
        result = {}
        for port, bridge in zip(self.bridge_ports, self.bridges, strict=True):
            if not bridge.alive:
                continue
            code, body = _get_json(f"http://127.0.0.1:{port}/readyz")
            if code == 200:
                result[port] = set(body["checks"]["role"].get("accountsOwned", []))
        return result

    def _spread(self) -> bool:
        """True when each bridge streams one account and together all of them (fair shares)."""
        owned = list(self.owned().values())
        return (
            len(owned) == len(self.bridges)
            and all(len(users) == 1 for users in owned)
            and set().union(*owned) == set(self.user_ids.values())
        )

    def web_pids(self) -> list[int]:
        """The forked web processes (children of the ``web --processes 2`` parent)."""
        path = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def holders(self) -> dict[int, int]:
        """Client port → pid of the web process holding that TCP connection (from ``ss``)."""
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{self.web_port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = {}
        for line in out.splitlines():
            parts = line.split()
            m_pid = re.search(r"pid=(\d+),", line)
            if m_pid and len(parts) >= 4:
                result[int(parts[3].rsplit(":", 1)[1])] = int(m_pid.group(1))
        return result

    def login(self, name: str, password: str = "demo") -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/api/login",
            data=json.dumps({"username": name, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=wait(10)) as resp:
            return str(resp.headers["Set-Cookie"].split(";", 1)[0])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for tool in ("redis-server", "ss"):
        if shutil.which(tool) is None:
            if REQUIRE_SERVICES:
                pytest.fail(f"{tool} is not installed")
            pytest.skip(f"{tool} is not installed")
    directory = tmp_path_factory.mktemp("cluster")
    redis = PrivateRedis(directory)
    redis.start()
    with postgres_schema_url() as database_url:
        running = Cluster(directory, redis, database_url)
        try:
            running.seed()
            running.start()
            for name in ACCOUNTS:
                cookie = running.login(name)
                req = urllib.request.Request(
                    f"http://127.0.0.1:{running.web_port}/api/me", headers={"Cookie": cookie}
                )
                with urllib.request.urlopen(req, timeout=wait(10)) as resp:
                    running.user_ids[name] = str(json.loads(resp.read())["userId"])
            running.heal()
            yield running
        finally:
            running.stop()
            redis.kill()
            logs = "\n".join(p.tail(400) for p in running.procs)
    assert "Traceback" not in logs, logs


# ------------------------------------------------------------------------------------------------
# clients
# ------------------------------------------------------------------------------------------------
class Client:
    """One trader's tab: subscribes to every channel, reconnects with ``lastSeq`` + ``epoch``.

    Records every stream event (``seq``, type, data) of every connection, the closes seen and
    whether each resumption was recovered.
    """

    def __init__(self, cluster: Cluster, name: str, cookie: str) -> None:
        self.cluster, self.name, self.cookie = cluster, name, cookie
        self.url = f"ws://127.0.0.1:{cluster.web_port}/ws/portfolio"
        self.base: int | None = None  # seq of the first snapshot
        self.notices: list[str] = []  # engine notices received, in order
        self.epoch: str | None = None
        self.last_seq: int | None = None
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.closes: list[int | None] = []
        self.resumed: list[bool] = []
        #: (last seq held, seq received) of every jump seen on a live connection
        self.gaps: list[tuple[int, int]] = []
        self.connections = 0
        self.local_port = 0
        self.ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self.ws is not None:
            await self.ws.close()
        assert self._task is not None
        await asyncio.wait_for(self._task, wait(10))

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with connect(
                    self.url, additional_headers={"Cookie": self.cookie}, open_timeout=wait(10)
                ) as ws:
                    self.ws = ws
                    self.local_port = ws.local_address[1]
                    await self._subscribe(ws)
                    self.connected.set()
                    async for raw in ws:
                        if not self._take(json.loads(raw)):
                            break  # a seq gap: resume from the last seq held, as the SPA does
            except ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else None)
            except (OSError, InvalidStatus, TimeoutError):
                pass  # refused while the port has no process accepting: try again
            self.connected.clear()
            if not self._stop.is_set():
                await asyncio.sleep(0.1)

    async def _subscribe(self, ws: ClientConnection) -> None:
        msg: dict[str, Any] = {"type": "subscribe", "channels": CHANNELS}
        if self.last_seq is not None:
            msg.update(lastSeq=self.last_seq, epoch=self.epoch)
        await ws.send(json.dumps(msg))
        while True:
            ack = json.loads(await asyncio.wait_for(ws.recv(), wait(10)))
            if ack["type"] == "subscribed":
                break
            if ack["type"] == "notice":  # told first: the engine is down (docs/protocol.md)
                self.notices.append(ack["data"]["code"])
                continue
            assert ack["type"] == "error", ack
        self.connections += 1
        if self.last_seq is not None:
            self.resumed.append(bool(ack["data"]["recovered"]))
            if ack["data"]["recovered"]:
                return
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), wait(10)))
        while snapshot["type"] == "notice":
            self.notices.append(snapshot["data"]["code"])
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), wait(10)))
        assert snapshot["type"] == "snapshot", snapshot
        if self.base is None:
            self.base = snapshot["seq"]
        self.epoch, self.last_seq = snapshot["epoch"], snapshot["seq"]

    def _take(self, msg: dict[str, Any]) -> bool:
        """Record a stream event; False on a gap in ``seq`` (the event is not kept)."""
        if msg["type"] == "notice":  # engine_down/engine_ok: per connection, never numbered
            self.notices.append(msg["data"]["code"])
            return True
        if msg["type"] in ("subscribed", "snapshot", "pong", "error"):
            return True
        if self.last_seq is not None and msg["seq"] > self.last_seq + 1:
            self.gaps.append((self.last_seq, msg["seq"]))
            return False
        self.events.append((msg["seq"], msg["type"], msg["data"]))  # a repeat is kept: checked
        self.last_seq, self.epoch = max(self.last_seq or 0, msg["seq"]), msg["epoch"]
        return True

    def __repr__(self) -> str:
        return (
            f"<{self.name}: connections {self.connections}, closes {self.closes}, resumed "
            f"{self.resumed}, base {self.base}, events {len(self.events)}, last seq "
            f"{self.last_seq}, last {self.events[-3:] if self.events else None}>"
        )

    def order_ids(self) -> list[str]:
        return [d["orderId"] for _, t, d in self.events if t == "order_update"]

    def execution_ids(self) -> list[str]:
        return [d["executionId"] for _, t, d in self.events if t == "trade_executed"]

    def check_every_seq_once(self, gaps_allowed: bool = False) -> None:
        """Every seq from the first snapshot to the last event exactly once, in order.

        ``gaps_allowed``: a live connection may have skipped events (then the client resumed
        from its last seq by replay); otherwise a skip fails even though the replay filled it.
        """
        assert self.base is not None, f"{self.name}: never subscribed"
        assert gaps_allowed or not self.gaps, f"{self.name}: live delivery skipped {self.gaps}"
        assert all(self.resumed), f"{self.name}: a resumption was not recovered: {self.resumed}"
        seqs = [s for s, _, _ in self.events]
        assert seqs, f"{self.name}: no event at all"
        assert seqs == list(range(self.base + 1, seqs[-1] + 1)), (
            f"{self.name}: seqs from {self.base + 1}: missing "
            f"{sorted(set(range(self.base + 1, seqs[-1] + 1)) - set(seqs))[:20]}, "
            f"repeated {sorted(s for s in set(seqs) if seqs.count(s) > 1)[:20]}"
        )


class HookSender:
    """Pushes ``order_update`` events through ``POST /internal/events`` from a thread.

    Keeps one keep-alive HTTP connection that lands on ``pid`` (a web process), so a kill -9 of
    another web process cannot take an accepted event with it. Records every orderId answered 202.
    """

    def __init__(self, cluster: Cluster, pid: int, user_ids: dict[str, str]) -> None:
        self.cluster, self.user_ids = cluster, user_ids
        self.accepted: dict[str, list[str]] = {name: [] for name in user_ids}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self.conn = self._connection_to(pid)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _connection_to(self, pid: int) -> http.client.HTTPConnection:
        for _ in range(100):
            conn = http.client.HTTPConnection("127.0.0.1", self.cluster.web_port, timeout=10)
            conn.connect()
            port = conn.sock.getsockname()[1]
            try:
                holder = _poll_holder(self.cluster, port)
            except AssertionError:
                holder = None
            if holder == pid:
                return conn
            conn.close()
        raise AssertionError(f"no HTTP connection landed on web process {pid}")

    def push(self, name: str, order_id: str) -> bool:
        body = json.dumps(
            {
                "userId": self.user_ids[name],
                "type": "order_update",
                "data": {**ORDER, "orderId": order_id},
            }
        )
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.conn.request("POST", "/internal/events", body, headers)
        resp = self.conn.getresponse()
        answer = resp.read()
        if resp.status == 202:
            self.accepted[name].append(order_id)
            return True
        self.failures.append(f"{order_id}: {resp.status} {answer!r}")
        return False

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set() and not self.failures:
            for name in self.user_ids:
                self.push(name, f"hook-{name}-{i}")
            i += 1
            time.sleep(0.05)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(wait(10))


def _poll_holder(cluster: Cluster, port: int) -> int:
    """The pid of the web process holding the connection from client ``port``."""
    end = time.monotonic() + wait(5)
    while (pid := cluster.holders().get(port, 0)) == 0:  # accepted, not yet listed
        assert time.monotonic() < end, f"no web process holds the connection from port {port}"
        time.sleep(0.05)
    return pid


async def _until_async(predicate: Any, what: str, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        assert loop.time() - start < wait(seconds), f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return loop.time() - start


async def _clients(cluster: Cluster, names: list[str]) -> list[Client]:
    cookies = {name: cluster.login(name) for name in set(names)}
    clients = [Client(cluster, name, cookies[name]) for name in names]
    for client in clients:
        client.start()
    for client in clients:
        await asyncio.wait_for(client.connected.wait(), wait(20))
    return clients


async def _finish(clients: list[Client], sender: HookSender) -> None:
    """Push one last event per user and wait for every client to have it, then stop them."""
    for name in sender.user_ids:
        assert await asyncio.to_thread(sender.push, name, f"last-{name}"), sender.failures
    for client in clients:
        await _until_async(
            lambda c=client: f"last-{c.name}" in c.order_ids(), f"the last event: {client!r}", 30
        )
    for client in clients:
        await client.stop()


# ------------------------------------------------------------------------------------------------
# d. web processes: RSS, and alpaca-py's imports absent
# ------------------------------------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def _mapped(pid: int, *names: str) -> set[str]:
    """Mapped file paths of ``pid`` that contain ``/<name>/`` (shared objects of a package)."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if any(f"/{name}/" in path or f"/{name}." in path for name in names):
            found.add(path)
    return found


def test_web_processes_do_not_load_alpaca_py(cluster: Cluster) -> None:
    """Web processes map no pandas/numpy (alpaca-py imports them); bridges do. RSS reported."""
    cluster.heal()
    web = cluster.web_pids()
    assert len(web) == 2
    for pid in web:
        assert _mapped(pid, "pandas", "numpy", "alpaca") == set(), f"web process {pid}"
    # The same check finds them in a bridge (alpaca-py's data client imports pandas).
    assert _mapped(cluster.bridges[0].pid, "pandas"), "the check cannot see pandas"
    rss = {f"web {pid}": _rss_kib(pid) for pid in web}
    rss.update({b.name: _rss_kib(b.pid) for b in cluster.bridges})
    rss["web parent"] = _rss_kib(cluster.web.pid)
    print("\nRSS (KiB):", rss)
    assert max(rss[f"web {pid}"] for pid in web) < min(_rss_kib(b.pid) for b in cluster.bridges)


# ------------------------------------------------------------------------------------------------
# c. REQ-3 across web processes
# ------------------------------------------------------------------------------------------------
async def _open(cluster: Cluster, cookie: str) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a socket and read its first message (``error`` when refused, else the socket is up)."""
    ws = await connect(
        f"ws://127.0.0.1:{cluster.web_port}/ws/portfolio",
        additional_headers={"Cookie": cookie},
        open_timeout=wait(10),
    )
    with contextlib.suppress(ConnectionClosed):  # refused: the error is still to be read
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account"]}))
    first = json.loads(await asyncio.wait_for(ws.recv(), wait(10)))
    return ws, first


async def _refused(ws: ClientConnection, first: dict[str, Any]) -> bool:
    if first["type"] != "error":
        return False
    assert first["data"]["code"] == "max_connections", first
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), wait(10))
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    return True


async def _drain(ws: ClientConnection) -> int | None:
    """Read and drop messages until the socket closes; return the close code received.

    A held socket must be read: websockets stops reading a socket whose queue is full, and then
    no longer answers the server's pings (4000 after ``HEARTBEAT_TIMEOUT_S``).
    """
    try:
        async for _ in ws:
            pass
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    return ws.close_code


def test_internal_port_is_served_by_the_web_processes(cluster: Cluster) -> None:
    """INTERNAL_PORT, bound before the fork: events posted there on several keep-alive
    connections (which land on either web process) all reach the trader, each connection's in
    the order sent (across connections, and so across processes, no order is promised:
    docs/protocol.md, "Internal hook")."""
    cluster.heal()

    async def scenario() -> None:
        ws, first = await _open(cluster, cluster.login("alice"))
        await ws.send(json.dumps({"type": "subscribe", "channels": ["orders"]}))
        while json.loads(await asyncio.wait_for(ws.recv(), wait(10)))["type"] != "snapshot":
            pass
        alice = cluster.user_ids["alice"]
        conns = [
            http.client.HTTPConnection("127.0.0.1", cluster.internal_port, timeout=10)
            for _ in range(4)
        ]
        for n in range(5):
            for c, conn in enumerate(conns):
                data = {**ORDER, "orderId": f"i{c}-{n}"}
                body = {"userId": alice, "type": "order_update", "data": data}
                headers = {"Authorization": f"Bearer {TOKEN}"}
                conn.request("POST", "/internal/events", json.dumps(body), headers)
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (202, b'{"accepted":true}')
        for conn in conns:
            conn.close()
        got: list[str] = []
        while len(got) < 20:
            msg = json.loads(await asyncio.wait_for(ws.recv(), wait(10)))
            if msg["type"] == "order_update" and msg["data"]["orderId"].startswith("i"):
                got.append(msg["data"]["orderId"])
        for c in range(4):
            assert [g for g in got if g.startswith(f"i{c}-")] == [f"i{c}-{n}" for n in range(5)]
        await ws.close()

    asyncio.run(scenario())


def test_sixth_connection_refused_across_processes_and_freed_after_kill(cluster: Cluster) -> None:
    """5 of bob's sockets spread over both web processes: the 6th is refused (1008) wherever it
    lands; kill -9 one process → its slots are free again within about a heartbeat timeout."""
    cluster.heal()

    async def scenario() -> dict[str, float]:
        cookie = cluster.login("bob")
        held: dict[asyncio.Task[int | None], int] = {}  # drain task → web process pid
        pids = set(cluster.web_pids())
        for _ in range(60):  # keep at most 3 per process, so both hold some
            if len(held) == MAX_PER_USER:
                break
            ws, first = await _open(cluster, cookie)
            assert first["type"] == "subscribed", first
            pid = _poll_holder(cluster, ws.local_address[1])
            if sum(1 for p in held.values() if p == pid) >= 3:
                await ws.close()
                continue
            held[asyncio.ensure_future(_drain(ws))] = pid
        assert len(held) == MAX_PER_USER and set(held.values()) == pids, held
        for _ in range(4):  # wherever they land, the 6th is refused
            ws, first = await _open(cluster, cookie)
            assert await _refused(ws, first), f"a 6th connection was accepted: {first}"
        assert not any(task.done() for task in held)

        victim = min(pids, key=lambda p: (sum(1 for q in held.values() if q == p), p))
        lost = [task for task, pid in held.items() if pid == victim]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # No close frame from a killed process: the TCP connection just ends (1006).
        assert await asyncio.wait_for(asyncio.gather(*lost), wait(10)) == [None] * len(lost)
        # New sockets are refused until the dead process's slots expire, then as many fit.
        refused_after_kill = 0
        opened: list[asyncio.Task[int | None]] = []
        while len(opened) < len(lost):
            assert time.monotonic() - killed_at < wait(HEARTBEAT_TIMEOUT_S * 4 + 10)
            ws, first = await _open(cluster, cookie)
            if await _refused(ws, first):
                refused_after_kill += 1
                await asyncio.sleep(0.1)
                continue
            opened.append(asyncio.ensure_future(_drain(ws)))
        freed_after = time.monotonic() - killed_at
        ws, first = await _open(cluster, cookie)  # the survivors' slots were never freed
        assert await _refused(ws, first)
        survivors = [task for task, pid in held.items() if pid != victim]
        assert not any(task.done() for task in [*survivors, *opened])
        for task in [*survivors, *opened]:
            task.cancel()
        return {"slotsFreedAfterS": round(freed_after, 2), "refusedMeanwhile": refused_after_kill}

    figures = asyncio.run(scenario())
    print("\nREQ-3 after kill -9:", figures)
    cluster.heal()


# ------------------------------------------------------------------------------------------------
# a. kill -9 a web process while events flow
# ------------------------------------------------------------------------------------------------
def test_web_process_killed_clients_resume_with_every_seq_once(cluster: Cluster) -> None:
    """Clients of a kill -9'd web process reconnect to the port with lastSeq+epoch: every seq of
    their user exactly once, every hook event accepted exactly once, the simulator trading."""
    cluster.heal()

    async def scenario() -> None:
        clients = await _clients(cluster, ["alice", "alice", "alice", "bob", "bob", "bob"])
        holder = {c: _poll_holder(cluster, c.local_port) for c in clients}
        pids = cluster.web_pids()
        victim = max(pids, key=lambda p: sum(1 for h in holder.values() if h == p))
        survivor = next(p for p in pids if p != victim)
        on_victim = [c for c in clients if holder[c] == victim]
        sender = await asyncio.to_thread(HookSender, cluster, survivor, cluster.user_ids)
        sender.start()
        try:
            await asyncio.sleep(1.5)
            os.kill(victim, signal.SIGKILL)
            for client in on_victim:
                await _until_async(lambda c=client: c.connections >= 2, "a reconnect", 30)
            await asyncio.sleep(1.5)
        finally:
            sender.stop()
        await _finish(clients, sender)
        assert not sender.failures, sender.failures
        for client in clients:
            client.check_every_seq_once()
            seen = client.order_ids()
            for order_id in sender.accepted[client.name]:
                assert seen.count(order_id) == 1, (
                    f"{client.name}: {order_id} x{seen.count(order_id)}"
                )
        for client in on_victim:
            assert client.resumed and all(client.resumed), client.resumed
        assert sum(len(v) for v in sender.accepted.values()) > 20

    asyncio.run(scenario())
    cluster.heal()


# ------------------------------------------------------------------------------------------------
# b. kill -9 the bridge that owns alice while her orders fill
# ------------------------------------------------------------------------------------------------
class OrderSender:
    """Submits alice's market orders to the simulator's REST API from a thread."""

    def __init__(self, cluster: Cluster) -> None:
        self.base = f"http://127.0.0.1:{cluster.sim_port}"
        key, secret = ACCOUNTS["alice"]
        self.headers = {
            "APCA-API-KEY-ID": key,
            "APCA-API-SECRET-KEY": secret,
            "Content-Type": "application/json",
        }
        self.order_ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data, self.headers, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            order = {
                "symbol": "AAPL",
                "qty": "1",
                "side": "buy" if i % 3 else "sell",
                "type": "market",
                "time_in_force": "day",
            }
            self.order_ids.append(self._request("POST", "/v2/orders", order)["id"])
            i += 1
            time.sleep(0.2)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(wait(10))

    def executions(self) -> list[str]:
        """Execution ids of the fills of these orders, oldest first (``FILL`` activities)."""
        activities = self._request("GET", "/v2/account/activities/FILL?direction=asc&page_size=100")
        mine = set(self.order_ids)
        return [a["id"].partition("::")[2] for a in activities if a["order_id"] in mine]

    def all_filled(self) -> bool:
        return all(
            self._request("GET", f"/v2/orders/{o}")["status"] == "filled" for o in self.order_ids
        )


def test_bridge_killed_alice_taken_over_every_fill_once(cluster: Cluster) -> None:
    """kill -9 the bridge streaming alice while her orders fill: the other bridge takes her over
    within a few seconds, and every fill reaches her socket exactly once, in order."""
    cluster.heal()
    alice = cluster.user_ids["alice"]

    async def scenario() -> dict[str, float]:
        (client,) = await _clients(cluster, ["alice"])
        owner = next(port for port, users in cluster.owned().items() if alice in users)
        victim = cluster.bridges[cluster.bridge_ports.index(owner)]
        other = next(p for p in cluster.bridge_ports if p != owner)
        orders = OrderSender(cluster)
        orders.start()
        try:
            await asyncio.sleep(1.5)
            victim.kill9()
            takeover = await asyncio.to_thread(
                _until,
                lambda: alice in cluster.owned().get(other, set()),
                "the other bridge to take alice over",
                LEASE_S * 5 + 20,
            )
            await asyncio.sleep(1.5)
        finally:
            orders.stop()
        await asyncio.to_thread(_until, orders.all_filled, "alice's orders to fill", 30)
        expected = await asyncio.to_thread(orders.executions)
        assert len(expected) >= len(orders.order_ids) > 10
        with contextlib.suppress(AssertionError):  # the assertion below names what is missing
            await _until_async(
                lambda: set(expected) <= set(client.execution_ids()), "every fill", 30
            )
        await client.stop()
        seen = [e for e in client.execution_ids() if e in set(expected)]
        assert seen == expected, (
            f"takeover after {takeover:.1f} s, {len(expected)} fills: "
            f"missing {[e for e in expected if e not in seen]}, "
            f"repeated {[e for e in set(seen) if seen.count(e) > 1]}"
        )
        assert len(set(client.execution_ids())) == len(client.execution_ids())
        client.check_every_seq_once()
        return {"takeoverS": round(takeover, 2), "fills": len(expected)}

    try:
        figures = asyncio.run(scenario())
        print("\nbridge kill -9:", figures)
    finally:
        cluster.heal()


# ------------------------------------------------------------------------------------------------
# e. Redis stopped for 5 s and started again
# ------------------------------------------------------------------------------------------------
def test_redis_restart_loses_nothing(cluster: Cluster) -> None:
    """Redis shut down (saving) for 5 s while the simulator trades: clients end with every seq
    exactly once, resuming by replay, and the hook's events accepted meanwhile arrive."""
    cluster.heal()

    async def scenario() -> dict[str, Any]:
        clients = await _clients(cluster, ["alice", "bob"])
        sender = await asyncio.to_thread(
            HookSender, cluster, cluster.web_pids()[0], cluster.user_ids
        )
        await asyncio.sleep(1.0)
        await asyncio.to_thread(cluster.redis.stop_saving)
        for i in range(3):  # accepted while Redis is away: they wait in the outbox
            for name in cluster.user_ids:
                await asyncio.to_thread(sender.push, name, f"outage-{name}-{i}")
        await asyncio.sleep(5.0)
        await asyncio.to_thread(cluster.redis.start)
        for client in clients:  # told within a heartbeat tick of the fan-out coming back
            await _until_async(
                lambda c=client: c.notices[-1:] == ["engine_ok"], f"engine_ok: {client!r}", 20
            )
        await _finish(clients, sender)
        for client in clients:
            # While the fan-out subscription is down, live delivery pauses and the client is
            # told (notice engine_down, then engine_ok); once it is back the fan-out passes on
            # what was published meanwhile (streaming/redis_broker.py), so no seq is skipped.
            state = (client.notices, client.closes, client.resumed, client.gaps)
            assert "engine_down" in client.notices, state
            assert client.notices[-1] == "engine_ok", state
            client.check_every_seq_once()
            seen = client.order_ids()
            for order_id in sender.accepted[client.name]:
                assert seen.count(order_id) == 1, (
                    f"{client.name}: {order_id} x{seen.count(order_id)}"
                )
        return {
            c.name: {"gaps": c.gaps, "resumed": c.resumed, "notices": c.notices} for c in clients
        }

    print("\nRedis restart:", asyncio.run(scenario()))
    cluster.heal()
