"""Benchmark ladder: folio-stream and two peers, same clients, same event stream, one run.

For every point (connections) and every server variant it starts the server, opens the
connections with the picows load client (:mod:`loadclient`, several processes, permessage-deflate
offered or not), lets them idle, pushes ``position_update`` events through the hook at ``--rate``
for ``--duration`` seconds (the sender of :mod:`latency`), waits until every connection has the
last snapshot of each of its symbols, and reports per point: server RSS per idle connection,
deliveries/s, p50/p95/p99 effective latency, the server's event-loop lag (folio-stream only, from
``/api/admin/websocket-stats``), server and client CPU, lost and seq gaps.

Servers (``--servers``, each combined with ``--deflate on,off``):

- ``folio``: ``python server.py`` (demo mode, memory engine) with ``BATCH_WINDOW_MS=250``;
- ``folio-nobatch``: the same with ``BATCH_WINDOW_MS=0``;
- ``folio-uvloop``: ``folio`` with the uvloop switch (``--uvloop-env``) set;
- ``folio-gc``: ``folio`` with CPython's GC thresholds set to ``--gc-threshold`` (through
  ``bench/gcsite/sitecustomize.py``): the measured case for tuning the GC in ``server.py``;
- ``sio``: ``bench/peers/sio_peer.py`` (python-socketio on aiohttp, room per user, ``emit``);
- ``ws``: ``bench/peers/ws_peer.py`` (``websockets`` with ``broadcast()``).

Results: ``--out`` (default ``bench/results``) gets ``ladder-<UTC time>.json`` (everything) and,
via :mod:`plot`, ``ladder.md`` (the table) and the PNG plots. Not part of the test suite:
``make bench`` or ``.venv/bin/python bench/ladder.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

import latency  # noqa: E402
from common import user_token  # noqa: E402
from latency import REPO, TOKEN, ServerProcess, _free_port, _http_json, _login, _rss_mb  # noqa: E402
from loadclient import CLK_TCK, ClientPool, cpu_seconds, cpu_split  # noqa: E402

SERVERS = ("folio", "folio-nobatch", "folio-uvloop", "folio-gc", "sio", "ws")
PASSWORD = "bench-pw"


# --------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------
class PeerProcess:
    """A peer (``bench/peers/*.py``) as a subprocess; same interface as :class:`ServerProcess`."""

    def __init__(self, kind: str, data_dir: Path, users: list[str], secret: str) -> None:
        self.kind = kind
        self.port = _free_port()
        self.hook_port = self.port if kind == "sio" else _free_port()
        self.log_path = data_dir / f"{kind}.log"
        self.env = dict(os.environ)
        self.env.update(
            {
                "BENCH_PEER_SECRET": secret,
                "BENCH_PEER_USERS": ",".join(users),
                "BENCH_PEER_HOOK_TOKEN": TOKEN,
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def start(self) -> None:
        script = BENCH / "peers" / f"{self.kind}_peer.py"
        cmd = [sys.executable, str(script), "--port", str(self.port)]
        if self.kind == "ws":
            cmd += ["--hook-port", str(self.hook_port)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} peer exited: {self.log_tail()}")
            try:
                for port in {self.port, self.hook_port}:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} peer never listened: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.exit_code is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.exit_code = self.proc.wait()
        else:
            self.exit_code = self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, Any]:
        text = self.log_tail(100000)
        return {
            "tracebacks": text.count("Traceback"),
            "errors": sum(1 for ln in text.splitlines() if "ERROR" in ln),
            "sample": [ln[:300] for ln in text.splitlines() if "Error" in ln or "ERROR" in ln][:5],
        }


def _create_users(data_dir: Path, secret_key: str, names: list[str]) -> None:
    """Create the bench traders in the SQLite of ``data_dir`` with the project's store."""
    code = (
        "import asyncio, sys\n"
        "from storage.db import open_store\n"
        "async def main():\n"
        "    store = await open_store(sys.argv[1], sys.argv[2])\n"
        "    for name in sys.argv[4:]:\n"
        "        try:\n"
        "            await store.create_user(name, sys.argv[3])\n"
        "        except Exception as exc:\n"
        "            if 'exists' not in str(exc): raise\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"sqlite:///{data_dir}/folio.db",
            secret_key,
            PASSWORD,
            *names,
        ],
        cwd=REPO,
        check=True,
    )


# --------------------------------------------------------------------------------------------
# one point
# --------------------------------------------------------------------------------------------
class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid) or 0.0)
            self.stopped.wait(0.2)


def _run_sender(cfg: dict[str, Any]) -> dict[str, Any]:
    nice = int(cfg.pop("nice", 0))
    cpus = set(cfg.pop("cpus", None) or ())

    def prepare() -> None:
        if nice:
            os.nice(nice)
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = subprocess.run(
        [sys.executable, str(BENCH / "latency.py"), "_sender"],
        input=json.dumps(cfg).encode(),
        capture_output=True,
        cwd=REPO,
        timeout=cfg["duration"] * 3 + 60,
        preexec_fn=prepare if nice or cpus else None,  # noqa: PLW1509 - nice and affinity only
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sender failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class Ladder:
    """State shared by every point: the data dir with its users, the client pool, the cookies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(tempfile.mkdtemp(prefix="folio-ladder-"))
        self.usernames = [f"bench{n:03d}" for n in range(1, args.users + 1)]
        self.symbols = [f"BN{n:02d}" for n in range(args.symbols)]
        self.secret_key = secrets.token_urlsafe(32)
        self.peer_secret = secrets.token_hex(16)
        self.folio_auth: list[tuple[str, str]] | None = None  # (userId, cookie) per user
        self.peer_user_ids: list[str] = []
        self.pool = ClientPool(args.client_procs, args.client_nice, _client_cpus(args))
        self.current: ServerProcess | PeerProcess | None = None

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
        self.pool.stop()
        if not self.args.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _folio(self, variant: str) -> ServerProcess:
        window = 0 if variant == "folio-nobatch" else self.args.window_ms
        server = ServerProcess(self.data_dir, _free_port(), window, "WARNING")
        server.env["SECRET_KEY"] = self.secret_key
        # GC pauses recorded for every folio variant (bench/gcsite/sitecustomize.py)
        site = str(BENCH / "gcsite")
        path = server.env.get("PYTHONPATH")
        server.env["PYTHONPATH"] = f"{site}{os.pathsep}{path}" if path else site
        server.env["FOLIO_BENCH_GC_LOG"] = "1"
        if variant == "folio-gc":
            server.env["FOLIO_BENCH_GC_THRESHOLD"] = self.args.gc_threshold
        if variant == "folio-uvloop":
            name, _, value = self.args.uvloop_env.partition("=")
            server.env[name] = value
        if self.args.slow_ms:
            server.env["FOLIO_BENCH_SLOW_MS"] = str(self.args.slow_ms)
        if self.args.hook == "internal":
            # Producers post to the internal listener (INTERNAL_PORT), as the ws peer's hook has
            # its own port; --hook main posts to the main port's Tornado handler instead.
            server.hook_port = _free_port()  # type: ignore[attr-defined]
            server.env["INTERNAL_PORT"] = str(server.hook_port)  # type: ignore[attr-defined]
        for setting in self.args.folio_env:
            name, _, value = setting.partition("=")
            server.env[name] = value
        return server

    def point(self, variant: str, conns: int, deflate: bool) -> dict[str, Any]:
        """Run one point; return its measurements (raises on a harness failure)."""
        args = self.args
        n_users = min(args.users, conns)
        r: dict[str, Any] = {
            "server": variant,
            "deflate": deflate,
            "connections": conns,
            "users": n_users,
            "rate": args.rate,
            "duration_s": args.duration,
            "batch_window_ms": (
                (0 if variant == "folio-nobatch" else args.window_ms)
                if variant.startswith("folio")
                else None
            ),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "loadavg_before": os.getloadavg(),
        }
        kind = "folio" if variant.startswith("folio") else variant
        server: ServerProcess | PeerProcess
        if kind == "folio":
            server = self._folio(variant)
        else:
            server = PeerProcess(kind, self.data_dir, self.peer_user_ids, self.peer_secret)
        self.current = server
        try:
            server.start()
            time.sleep(1.0)
            pid = server.pid
            if args.pin:
                _pin(pid, {0})
            r["rss_start_mb"] = _rss_mb(pid)
            if kind == "folio":
                if self.folio_auth is None:
                    self.folio_auth = [_login(server.base, u, PASSWORD) for u in self.usernames]
                auth = self.folio_auth[:n_users]
            else:
                auth = [(u, user_token(self.peer_secret, u)) for u in self.peer_user_ids[:n_users]]
            user_ids = [u for u, _ in auth]
            plan = [(i, auth[i % n_users][0], auth[i % n_users][1]) for i in range(conns)]
            opened = self.pool.open(kind, server.port, plan, deflate)
            r["open"] = opened
            if opened["opened"] != conns:
                raise RuntimeError(f"opened {opened['opened']} of {conns}: {opened['errors']}")
            time.sleep(args.idle)
            r["rss_idle_mb"] = _rss_mb(pid)
            r["kib_per_idle_conn"] = (
                (r["rss_idle_mb"] - r["rss_start_mb"]) * 1024 / conns
                if r["rss_idle_mb"] and r["rss_start_mb"]
                else None
            )
            lag0 = _lag_buckets(server) if kind == "folio" else None
            sampler = _RssSampler(pid)
            sampler.start()
            profiler = _start_profiler(args.profile, pid, variant, conns, deflate)
            cpu0, client0, busy0 = cpu_seconds(pid), self.pool.cpu_s(), _machine_busy_s()
            split0 = cpu_split(pid)
            t0 = time.monotonic()
            r["load_started_wall"] = time.time()
            send = _run_sender(
                {
                    "port": server.port,
                    "hook_port": getattr(server, "hook_port", server.port),
                    "users": user_ids,
                    "symbols": self.symbols,
                    "rate": args.rate,
                    "duration": args.duration,
                    "senders": n_users,
                    "max_seconds": args.duration * 2,
                    "nice": args.client_nice,
                    "cpus": sorted(_client_cpus(args) or ()),
                }
            )
            sent = [tuple(row) for row in send.pop("sent")]
            last: dict[tuple[str, str], int] = {}
            for i, user, symbol, _ in sent:
                last[(user, symbol)] = max(i, last.get((user, symbol), -1))
            wanted: dict[str, list[str]] = {u: [] for u in user_ids}
            for (user, _), i in last.items():
                wanted[user].append(f"{latency.BENCH_PREFIX}{i}:")
            t_drain = time.monotonic()
            last_sent_ns = {i: ns for i, _, _, ns in sent}
            since_ns = min((last_sent_ns[i] for i in last.values()), default=0)
            r["drain_pending"], r["drain_end"] = self.pool.drain(
                wanted, args.drain_timeout, since_ns=since_ns
            )
            r["drain_s"] = time.monotonic() - t_drain
            elapsed = time.monotonic() - t0
            r["load_ended_wall"] = time.time()
            cpu1, client1, busy1 = cpu_seconds(pid), self.pool.cpu_s(), _machine_busy_s()
            split1 = cpu_split(pid)
            # user vs kernel time: the kernel's share is mostly the socket writes (and, with
            # the clients on this machine, their loopback receive path)
            r["server_user_s"] = split1[0] - split0[0]
            r["server_sys_s"] = split1[1] - split0[1]
            _stop_profiler(profiler)
            sampler.stopped.set()
            r["server_cpu_s"] = cpu1 - cpu0
            r["rss_peak_mb"] = max(sampler.peak, _rss_mb(pid) or 0.0)
            r["elapsed_s"] = elapsed
            r["server_cpu_pct"] = 100 * (cpu1 - cpu0) / elapsed
            r["client_cpu_pct"] = 100 * (client1 - client0) / elapsed
            r["sender_cpu_pct"] = 100 * send["cpu_s"] / elapsed
            # what everything else on the machine used meanwhile (other people's tests): noise
            r["machine_busy_pct"] = 100 * (busy1 - busy0) / elapsed
            r["others_cpu_pct"] = max(
                0.0,
                r["machine_busy_pct"]
                - r["server_cpu_pct"]
                - r["client_cpu_pct"]
                - r["sender_cpu_pct"],
            )
            r["loadavg_after"] = os.getloadavg()
            send["sent_count"] = len(sent)
            r["sender"] = send
            if kind == "folio":
                assert isinstance(server, ServerProcess)
                _, admin = _login(server.base, "admin", "admin")
                status, stats, _ = _http_json(
                    "GET", f"{server.base}/api/admin/websocket-stats", headers={"Cookie": admin}
                )
                r["server_stats"] = stats if status == 200 else {"http_status": status}
                r["loop_lag_stats_ms"] = r["server_stats"].get("loopLagMs")
                r["loop_lag"] = _lag_during(lag0, _lag_buckets(server))
            raw = self.pool.close_and_analyse(sent)
            first_send = min((row[3] for row in sent), default=0)
            satisfied = raw["delivered"] + raw["superseded"]
            span = (raw["last_effective_ns"] - first_send) / 1e9 if sent else 0
            r["deliveries_per_s"] = satisfied / span if span > 0 else None
            r["frames_per_s"] = raw["frames_received"] / max(elapsed, 1e-9)
            r["wire_bytes"] = raw["wire_bytes"]
            r["compressed_msgs"] = raw["compressed_msgs"]
            r["frames_received"] = raw["frames_received"]
            # CPU per frame written (all of the server's CPU over load + drain, events included)
            r["server_us_per_frame"] = (
                1e6 * r["server_cpu_s"] / raw["frames_received"] if raw["frames_received"] else None
            )
            r["unexpected_closes"] = raw.pop("unexpected_closes")[:10]
            r["client_errors"] = raw.pop("client_errors")
            r["analysis"] = latency.summarise(raw, r["batch_window_ms"] or 0)
        finally:
            server.stop()
            self.current = None
            r["server_exit_code"] = server.exit_code
            r["server_log"] = server.log_problems()
            if kind == "folio":
                r["gc"] = _gc_during(server, r.get("load_started_wall"), r.get("load_ended_wall"))
                if args.slow_ms:
                    r["slow_callbacks"] = _slow_during(
                        server, r.get("load_started_wall"), r.get("load_ended_wall")
                    )
        a = r["analysis"]
        r["ok"] = bool(
            a["lost"] == 0
            and a["seq_gaps"] == 0
            and a["out_of_order"] == 0
            and a["unexpected"] == 0
            and not r["unexpected_closes"]
            and not r["client_errors"]
        )
        # the sender is closed-loop: a server that cannot keep up is sent fewer events in time
        r["kept_up"] = r["sender"]["sent_count"] == r["sender"]["planned"]
        return r

    def prepare(self) -> None:
        """Create the bench users once (folio's SQLite) and learn their userIds."""
        _create_users(self.data_dir, self.secret_key, self.usernames)
        server = self._folio("folio")
        try:
            server.start()
            self.folio_auth = [_login(server.base, u, PASSWORD) for u in self.usernames]
        finally:
            server.stop()
        # the peers use the same userIds, so the sender's events are byte-identical
        self.peer_user_ids = [u for u, _ in self.folio_auth]


def _gc_during(server: Any, start: float | None, end: float | None) -> dict[str, Any] | None:
    """The server's generation 1/2 collections during load + drain (``FOLIO_BENCH_GC`` line).

    Returns ``{"threshold", "gen1", "gen2", "gen2_s" (CPU seconds in them), "gen2_max_s"}``, or
    None when the server wrote no such line (it did not exit through ``atexit``).
    """
    doc = _exit_report(server, "FOLIO_BENCH_GC")
    if doc is None or start is None or end is None:
        return None
    during = [(g, s) for t, g, s in doc["pauses"] if start <= t <= end]
    full = [s for g, s in during if g == 2]
    return {
        "threshold": doc["threshold"],
        "gen1": sum(1 for g, _ in during if g == 1),
        "gen2": len(full),
        "gen2_s": round(sum(full), 3),
        "gen2_max_s": round(max(full, default=0.0), 3),
    }


def _client_cpus(args: argparse.Namespace) -> set[int] | None:
    """``--pin``: the load clients and the sender run on every CPU but the server's (CPU 0)."""
    if not args.pin:
        return None
    others = set(os.sched_getaffinity(0)) - {0}
    return others or None


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (``sched_setaffinity`` is per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # the thread ended meanwhile
            pass


def _slow_during(server: Any, start: float | None, end: float | None) -> list[Any] | None:
    """Loop iterations over ``--slow-ms`` during load + drain (``FOLIO_BENCH_SLOW`` line).

    Returns ``[[unix time, wall ms, CPU ms, I/O events, callbacks ready before], …]``, or None
    without such a line.
    """
    rows = _exit_report(server, "FOLIO_BENCH_SLOW")
    if rows is None or start is None or end is None:
        return None
    return [row for row in rows if start <= row[0] <= end]


def _exit_report(server: Any, marker: str) -> Any:
    """The JSON of the last ``<marker> {json}`` line in the server's log (``bench/gcsite``'s
    reports, written at exit), or None."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = [ln for ln in lines if ln.startswith(marker + " ")]
    return json.loads(found[-1].split(" ", 1)[1]) if found else None


def _start_profiler(
    out: str | None, pid: int, variant: str, conns: int, deflate: bool
) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` the server over load + drain (``--profile DIR``); None when not asked.

    Writes ``DIR/<variant>-<conns>-deflate-<on|off>.txt`` in py-spy's collapsed-stack format
    (``--nonblocking``: the server is sampled without being stopped, 100 samples/s).
    """
    if not out or not variant.startswith("folio"):
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    Path(out).mkdir(parents=True, exist_ok=True)
    dest = Path(out) / f"{variant}-{conns}-deflate-{'on' if deflate else 'off'}.txt"
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    cmd += ["--nonblocking", "--output", str(dest)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop ``py-spy record`` (SIGINT makes it write its output)."""
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _machine_busy_s() -> float:
    """CPU seconds all CPUs spent not idle since boot (``/proc/stat``, all processes)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def _lag_buckets(server: Any) -> dict[float, float] | None:
    """Cumulative ``folio_event_loop_lag_seconds`` buckets from ``/metrics`` (le → count)."""
    req = urllib.request.Request(
        f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("folio_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets or None


def _lag_during(
    before: dict[float, float] | None, after: dict[float, float] | None
) -> dict[str, Any] | None:
    """Loop lag of the samples taken between two scrapes (the load and the drain).

    Returns ``{"samples", "p50_le_ms", "p99_le_ms", "share_le_20ms"}``: the bucket upper bounds
    holding the 50th/99th percentile (so "p99 ≤ 20 ms" reads ``p99_le_ms <= 20``) and the share
    of samples at most 20 ms late. None when the server has no such histogram.
    """
    if not before or not after:
        return None
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1]
    if total <= 0:
        return None

    def le_ms(q: float) -> float:
        for le, count in delta:
            if count >= q * total:
                return le * 1000
        return float("inf")

    within = dict(delta).get(0.02)
    return {
        "samples": int(total),
        "p50_le_ms": le_ms(0.50),
        "p99_le_ms": le_ms(0.99),
        "share_le_20ms": None if within is None else within / total,
    }


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/ladder.py", description=__doc__.splitlines()[0])
    p.add_argument("--points", default="1000,2000,5000,10000", help="connections per point")
    p.add_argument(
        "--servers",
        default="folio,folio-nobatch,folio-uvloop,sio,ws",
        help=f"comma-separated, of {', '.join(SERVERS)}",
    )
    p.add_argument("--deflate", default="on,off", help="on, off or on,off")
    p.add_argument("--users", type=int, default=100, help="users (connections spread evenly)")
    p.add_argument("--symbols", type=int, default=10, help="symbols per user")
    p.add_argument("--rate", type=float, default=1000.0, help="position updates per second")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of load per point")
    p.add_argument("--window-ms", type=int, default=250, help="BATCH_WINDOW_MS of folio")
    p.add_argument("--idle", type=float, default=3.0, help="seconds idle before measuring RSS")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=45.0,
        help="most seconds to wait at the end for the last snapshots (it stops earlier once "
        "nothing arrived for 5 s)",
    )
    p.add_argument("--client-procs", type=int, default=3, help="load-client processes")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per point; the one least disturbed by other processes is reported",
    )
    p.add_argument(
        "--uvloop-env", default="EVENT_LOOP=uvloop", help="NAME=VALUE that turns uvloop on"
    )
    p.add_argument(
        "--hook",
        choices=("internal", "main"),
        default="internal",
        help="where the sender posts folio's events: the internal listener (INTERNAL_PORT, the "
        "default) or the main port",
    )
    p.add_argument(
        "--slow-ms",
        type=float,
        default=0.0,
        help="record every folio loop callback longer than this (wall ms, with its CPU ms)",
    )
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="server under test on CPU 0, load clients and sender on the other CPUs (the "
        "default; the same for every server): the server is not preempted by the processes that "
        "stand for browsers on other machines; --no-pin lets the scheduler place everything",
    )
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="niceness added to the load clients and the sender (e.g. 5): the server under test "
        "is then not queued behind the processes that stand for browsers on other machines",
    )
    p.add_argument(
        "--folio-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every folio variant (repeatable), e.g. HEARTBEAT_INTERVAL_S=1",
    )
    p.add_argument(
        "--gc-threshold",
        default="50000,20,100",
        help="gen0,gen1,gen2 of gc.set_threshold for the folio-gc variant (CPython: 700,10,10)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for the bench and everything it starts (negative needs root): on a "
        "machine shared with other work, e.g. -5 keeps the servers under test from being starved",
    )
    p.add_argument("--out", default=str(BENCH / "results"), help="results directory")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir (server logs)")
    p.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="py-spy record each folio server over load + drain into DIR (collapsed stacks; "
        "needs `pip install py-spy`)",
    )
    args = p.parse_args(argv)
    args.points = [int(x) for x in args.points.split(",") if x]
    args.servers = [s for s in args.servers.split(",") if s]
    bad = [s for s in args.servers if s not in SERVERS]
    if bad:
        p.error(f"unknown server(s) {bad}: choose from {', '.join(SERVERS)}")
    args.deflate = [d.strip() == "on" for d in args.deflate.split(",") if d.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by servers, clients, sender
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"ladder-{stamp}.json"
    doc: dict[str, Any] = {
        "machine": latency._machine(),
        "commit": subprocess.run(
            ["git", "log", "-1", "--format=%h %s"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "args": {k: v for k, v in vars(args).items()},
        "points": [],
    }
    ladder = Ladder(args)
    status = 0
    try:
        ladder.prepare()
        for conns in args.points:
            for variant in args.servers:
                for deflate in args.deflate:
                    label = f"{variant} deflate={'on' if deflate else 'off'} {conns} conns"
                    print(f"[{datetime.now(UTC):%H:%M:%S}] {label} …", file=sys.stderr)
                    runs = []
                    for _ in range(max(1, args.repeat)):
                        try:
                            runs.append(ladder.point(variant, conns, deflate))
                        except Exception as exc:  # noqa: BLE001 - recorded, the ladder goes on
                            runs.append(
                                {
                                    "server": variant,
                                    "deflate": deflate,
                                    "connections": conns,
                                    "failed": repr(exc)[:1000],
                                    "ok": False,
                                }
                            )
                        if len(runs) > 1:
                            print(_one_line(runs[-1]), file=sys.stderr)
                    r = _least_disturbed(runs)
                    if "failed" in r:
                        status = 1
                    if not r.get("ok"):
                        status = 1
                    doc["points"].append(r)
                    path.write_text(json.dumps(doc, indent=1, default=str))
                    print(_one_line(r), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: stopping servers and clients", file=sys.stderr)
        status = 130
    finally:
        ladder.close()
        path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"results: {path}", file=sys.stderr)
    if doc["points"]:
        import plot

        plot.render(path, out)
    return status


def _least_disturbed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run during which other processes used the least CPU (the others kept in ``runs``)."""
    done = [r for r in runs if "failed" not in r]
    if not done:
        return runs[-1]
    best = dict(min(done, key=lambda r: r.get("others_cpu_pct", 0.0)))
    if len(runs) > 1:
        best["runs"] = [
            {k: v for k, v in r.items() if k not in ("server_stats", "runs")} for r in runs
        ]
    return best


def _one_line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"   FAILED: {r['failed']}"
    a = r["analysis"]
    e = a["latency_effective_ms"]
    lag = (r.get("loop_lag") or {}).get("p99_le_ms")
    return (
        f"   {r['kib_per_idle_conn'] or 0:.1f} KiB/conn, {r['deliveries_per_s'] or 0:,.0f} del/s, "
        f"p50/p95/p99 {e['p50'] or 0:.0f}/{e['p95'] or 0:.0f}/{e['p99'] or 0:.0f} ms, "
        f"lag p99 ≤{lag} ms, server {r['server_cpu_pct']:.0f}% client {r['client_cpu_pct']:.0f}% "
        f"sender {r['sender_cpu_pct']:.0f}% others {r['others_cpu_pct']:.0f}%, "
        f"sent {r['sender']['sent_count']}/{r['sender']['planned']}, "
        f"{r.get('server_us_per_frame') or 0:.1f} µs CPU/frame, gc {r.get('gc')}, "
        f"lost {a['lost']}, gaps {a['seq_gaps']}, ok={r['ok']}, "
        f"connect {r['open']['connect_s']:.1f} s, {r['elapsed_s']:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
