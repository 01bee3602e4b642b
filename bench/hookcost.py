"""CPU per hook event: the server's cost of one ``POST /internal/events`` with no tab to write to.

The ladder's server CPU is events × (cost per event) + frames × (cost per frame). This tool
measures the first term alone: it starts ``server.py`` (demo mode, memory engine, batching on)
with the ladder's users, opens no WebSocket, pushes ``position_update`` events at ``--rate`` for
``--duration`` seconds with :mod:`latency`'s sender (one keep-alive connection per user, as in the
ladder) and reports the server's user and system CPU (``/proc/<pid>/stat``) per accepted event.
``--perf`` also runs ``perf record`` on the server (kernel symbols: where the system time goes),
``--profile`` ``py-spy record`` (Python stacks).

    .venv/bin/python bench/hookcost.py --duration 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

from ladder import Ladder, _parse_args, _run_sender  # noqa: E402
from loadclient import CLK_TCK  # noqa: E402


def _cpu(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def _tool(argv: list[str] | None, name: str, out: Path, pid: int) -> subprocess.Popen[bytes] | None:
    if not argv:
        return None
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    return subprocess.Popen(
        [exe, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/hookcost.py", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--perf", metavar="DIR", help="perf record -g the server into DIR/perf.data")
    p.add_argument("--profile", metavar="DIR", help="py-spy record the server into DIR")
    p.add_argument("--hook", choices=("internal", "main"), default="internal")
    a = p.parse_args()
    if a.nice:
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)
    args = _parse_args(
        ["--users", str(a.users), "--servers", "folio", "--client-procs", "1", "--hook", a.hook]
    )
    ladder = Ladder(args)
    results: list[dict[str, Any]] = []
    try:
        ladder.prepare()
        assert ladder.folio_auth is not None
        for run in range(a.repeat):
            server = ladder._folio("folio")
            server.start()
            try:
                time.sleep(1.0)
                tools = []
                for opt, name, cmd in (
                    (a.perf, "perf", ["record", "-g", "-p", str(server.pid), "-o", "perf.data"]),
                    (
                        a.profile,
                        "py-spy",
                        [
                            "record",
                            "--pid",
                            str(server.pid),
                            "--format",
                            "raw",
                            "--rate",
                            "100",
                            "--output",
                            f"hook-{run}.txt",
                        ],
                    ),
                ):
                    if opt:
                        Path(opt).mkdir(parents=True, exist_ok=True)
                        tools.append(_tool(cmd, name, Path(opt), server.pid))
                u0, s0 = _cpu(server.pid)
                t0 = time.monotonic()
                send = _run_sender(
                    {
                        "port": server.port,
                        "hook_port": getattr(server, "hook_port", server.port),
                        "users": [u for u, _ in ladder.folio_auth],
                        "symbols": ladder.symbols,
                        "rate": a.rate,
                        "duration": a.duration,
                        "senders": a.users,
                        "max_seconds": a.duration * 2,
                    }
                )
                time.sleep(0.5)  # the last batch window
                u1, s1 = _cpu(server.pid)
                elapsed = time.monotonic() - t0
                for tool in tools:
                    if tool is not None:
                        tool.send_signal(signal.SIGINT)
                        tool.wait(60)
                n = len(send["sent"])
                r = {
                    "events": n,
                    "planned": send["planned"],
                    "elapsed_s": round(elapsed, 2),
                    "user_us_per_event": round(1e6 * (u1 - u0) / n, 1),
                    "sys_us_per_event": round(1e6 * (s1 - s0) / n, 1),
                    "us_per_event": round(1e6 * (u1 - u0 + s1 - s0) / n, 1),
                    "sender_cpu_s": send["cpu_s"],
                }
                results.append(r)
                print(json.dumps(r), file=sys.stderr)
            finally:
                server.stop()
    finally:
        ladder.close()
    best = min(results, key=lambda r: r["us_per_event"])
    print(json.dumps({"best": best, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
