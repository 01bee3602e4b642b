"""Effective latency over the load, by when each update was sent: where a point's tail comes from.

``python bench/timeline.py LABEL=ladder.json [LABEL=ladder.json …] --out timeline.png
[--server folio] [--conns 10000]``

Each ladder JSON holds, per point, ``analysis.timeline``: for every load-client process, rows of
``[t s, updates, p50, p99, max ms]`` per half second of send time
(:func:`latency.effective_timeline`).
A tail spread evenly over the load is queueing; a tail in a few slices is a stall or a burst
there (a wave of heartbeat pings, a shared batch tick, a client process scanning its frames).
This draws p99 per half second (the worst load-client process in each slice), one line per
file, and prints the same as text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def series(doc: dict[str, Any], server: str, conns: int) -> list[tuple[float, float]]:
    """``[(t s, p99 ms)]`` of the point ``server`` × ``conns`` in ``doc`` (worst client process)."""
    for r in doc["points"]:
        if r.get("server") == server and r.get("connections") == conns and "analysis" in r:
            by_t: dict[float, float] = {}
            for rows in r["analysis"].get("timeline") or []:
                for t, _n, _p50, p99, _max in rows:
                    by_t[t] = max(by_t.get(t, 0.0), p99)
            return sorted(by_t.items())
    raise SystemExit(f"no {server} point at {conns} connections with a timeline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/timeline.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=path/to/ladder.json")
    p.add_argument("--server", default="folio")
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in a.runs:
        label, _, path = run.partition("=")
        points = series(json.loads(Path(path).read_text()), a.server, a.conns)
        ax.plot([t for t, _ in points], [v for _, v in points], marker=".", label=label)
        print(label, " ".join(f"{t:g}:{v:.0f}" for t, v in points))
    ax.axhline(300, color="grey", linestyle="--", linewidth=1, label="target p99 (300 ms)")
    ax.set_xlabel("send time (s into the load)")
    ax.set_ylabel("effective p99 per half second (ms)")
    ax.set_title(f"{a.server}, {a.conns:,} connections: where the tail comes from")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
