"""Table and plots of a ladder run: ``python bench/plot.py bench/results/ladder-<time>.json``.

Writes next to the JSON (or into ``--out``): ``ladder.md`` (one row per point), ``latency.png``
(effective p99 latency against connections) and ``memory.png`` (server KiB per idle connection
against connections), one line per server variant and deflate setting (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _label(r: dict[str, Any]) -> str:
    return f"{r['server']} ({'deflate' if r['deflate'] else 'plain'})"


def table(doc: dict[str, Any]) -> str:
    """The markdown results table of ``doc`` (a ladder JSON)."""
    head = (
        "| server | deflate | conns | KiB/idle conn | deliveries/s | effective p50/p95/p99 ms"
        " | loop lag p99 ms | server CPU | client CPU (+sender) | others' CPU | sent / planned"
        " | lost | gaps |"
        "\n| --- | --- |" + " ---: |" * 11
    )
    rows = [head]
    for r in doc["points"]:
        if "failed" in r:
            rows.append(
                f"| {r['server']} | {'on' if r['deflate'] else 'off'} | {r['connections']:,} |"
                f" failed: {r['failed'][:120].replace('|', '/')} | | | | | | | | | |"
            )
            continue
        a = r["analysis"]
        e = a["latency_effective_ms"]
        lag = r.get("loop_lag") or {}
        lag_p99 = "–" if not lag else f"≤ {lag['p99_le_ms']:g}"
        s = r["sender"]
        # the drain gave up while frames were still arriving: the missing ones may only be late
        end = r.get("drain_end") or (
            "timeout" if (r.get("drain_s") or 0) >= doc["args"]["drain_timeout"] - 0.5 else ""
        )
        late = " (still arriving)" if a["lost"] and end == "timeout" else ""
        rows.append(
            f"| {r['server']} | {'on' if r['deflate'] else 'off'} | {r['connections']:,} "
            f"| {_f(r.get('kib_per_idle_conn'), 1)} | {_f(r.get('deliveries_per_s'))} "
            f"| {_f(e['p50'])} / {_f(e['p95'])} / {_f(e['p99'])} | {lag_p99} "
            f"| {_f(r['server_cpu_pct'])} % | {_f(r['client_cpu_pct'])} % "
            f"(+{_f(r['sender_cpu_pct'])} %) | {_f(r.get('others_cpu_pct'))} % "
            f"| {s['sent_count']:,} / {s['planned']:,} "
            f"| {a['lost']:,}{late} | {a['seq_gaps']:,} |"
        )
    return "\n".join(rows) + "\n"


def capacity(doc: dict[str, Any], p99_ms: float = 300.0) -> str:
    """Per server and deflate setting: the most deliveries/s reached at effective p99 ≤ ``p99_ms``
    with nothing lost, no seq gap and every event sent on schedule; and its ratio to the peers.
    """
    best: dict[tuple[str, bool], dict[str, Any]] = {}
    for r in doc["points"]:
        if "failed" in r or not r.get("ok") or not r.get("kept_up", True):
            continue
        p99 = r["analysis"]["latency_effective_ms"]["p99"]
        if p99 is None or p99 > p99_ms:
            continue
        key = (r["server"], r["deflate"])
        if key not in best or (r["deliveries_per_s"] or 0) > (best[key]["deliveries_per_s"] or 0):
            best[key] = r
    servers = sorted({(r["server"], r["deflate"]) for r in doc["points"]})
    rows = [
        f"| server | deflate | most deliveries/s at p99 ≤ {p99_ms:g} ms | at connections "
        "| × sio (same deflate) | × ws (same deflate) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for server, deflate in servers:
        r = best.get((server, deflate))
        rate = r["deliveries_per_s"] if r else None
        ratios = []
        for peer in ("sio", "ws"):
            p = best.get((peer, deflate))
            peer_rate = p["deliveries_per_s"] if p else None
            ratios.append("–" if not rate or not peer_rate else f"{rate / peer_rate:.2f}")
        rows.append(
            f"| {server} | {'on' if deflate else 'off'} | {_f(rate)} "
            f"| {_f(r['connections']) if r else 'none'} | {ratios[0]} | {ratios[1]} |"
        )
    return "\n".join(rows) + "\n"


def merge(paths: list[Path]) -> dict[str, Any]:
    """Several ladder runs as one: per (server, deflate, connections) the run least disturbed.

    "Least disturbed" is the lowest ``others_cpu_pct`` (CPU other processes on the machine used
    during the point); the others are kept under ``runs`` of the chosen point.
    """
    docs = [json.loads(Path(p).read_text()) for p in paths]
    if len(docs) == 1:
        return docs[0]
    chosen: dict[tuple[str, bool, int], list[dict[str, Any]]] = defaultdict(list)
    order: list[tuple[str, bool, int]] = []
    for d in docs:
        for r in d["points"]:
            key = (r["server"], r["deflate"], r["connections"])
            if key not in chosen:
                order.append(key)
            chosen[key].append(r)
    points = []
    for key in order:
        runs = chosen[key]
        done = [r for r in runs if "failed" not in r]
        best = dict(min(done, key=lambda r: r.get("others_cpu_pct", 0.0)) if done else runs[-1])
        best["runs"] = [
            {k: v for k, v in r.items() if k not in ("server_stats", "runs")} for r in runs
        ]
        points.append(best)
    merged = dict(docs[0])
    merged["points"] = points
    merged["merged_from"] = [Path(p).name for p in paths]
    return merged


def ratios(doc: dict[str, Any]) -> str:
    """Deliveries/s of each folio variant ÷ each peer's, point by point (same deflate setting)."""
    by = {(r["server"], r["deflate"], r["connections"]): r for r in doc["points"]}
    folios = sorted({r["server"] for r in doc["points"] if r["server"].startswith("folio")})
    rows = [
        "| connections | deflate | "
        + " | ".join(f"{f} ÷ {p}" for f in folios for p in ("sio", "ws"))
        + " |",
        "| ---: | --- |" + " ---: |" * (2 * len(folios)),
    ]
    points = sorted({r["connections"] for r in doc["points"]})
    for conns in points:
        for deflate in (True, False):
            cells = []
            for f in folios:
                mine = by.get((f, deflate, conns), {}).get("deliveries_per_s")
                for peer in ("sio", "ws"):
                    theirs = by.get((peer, deflate, conns), {}).get("deliveries_per_s")
                    cells.append(f"{mine / theirs:.2f}" if mine and theirs else "–")
            if any(c != "–" for c in cells):
                rows.append(
                    f"| {conns:,} | {'on' if deflate else 'off'} | " + " | ".join(cells) + " |"
                )
    return "\n".join(rows) + "\n"


def render(json_path: Path | list[Path], out: Path) -> None:
    """Write ``ladder.md``, ``latency.png`` and ``memory.png`` for the run(s) in ``json_path``."""
    paths = json_path if isinstance(json_path, list) else [json_path]
    doc = merge(paths)
    m = doc["machine"]
    a = doc["args"]
    names = ", ".join(f"`{Path(p).name}`" for p in paths)
    runs = "Run" if len(paths) == 1 else "Runs (per point the least disturbed)"
    intro = (
        f"{runs} {names} on `{doc.get('commit', '?')}`: {m['nproc']} CPU "
        f"({m['cpu']}), Python {m['python']}; {a['rate']:g} position updates/s over "
        f"{a['users']} users × {a['symbols']} symbols for {a['duration']:g} s per point, "
        f"{a['client_procs']} load-client processes, niceness {a.get('nice', 0)}, "
        f"{a.get('repeat', 1)} run(s) per point per ladder (the least disturbed reported). "
        "*others' CPU* is what other processes on the machine used meanwhile (% of one core).\n\n"
    )
    (out / "ladder.md").write_text(intro + table(doc) + "\n" + capacity(doc) + "\n" + ratios(doc))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install -e '.[bench]')", file=sys.stderr)
        return
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in doc["points"]:
        if "failed" not in r:
            series[_label(r)].append(r)
    for name, ylabel, title, get in (
        (
            "latency.png",
            "effective latency p99 (ms)",
            "Effective p99 latency (update sent → on screen)",
            lambda r: r["analysis"]["latency_effective_ms"]["p99"],
        ),
        (
            "memory.png",
            "server RSS per idle connection (KiB)",
            "What an idle connection costs the server",
            lambda r: r.get("kib_per_idle_conn"),
        ),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
        colors = {
            "folio": "C0",
            "folio-nobatch": "C2",
            "folio-uvloop": "C9",
            "folio-gc": "C4",
            "sio": "C3",
            "ws": "C1",
        }
        for label, rows in sorted(series.items()):
            rows = sorted(rows, key=lambda r: r["connections"])
            xs = [r["connections"] for r in rows]
            ys = [get(r) for r in rows]
            deflate = rows[0]["deflate"]
            ax.plot(
                xs,
                ys,
                "-" if deflate else "--",
                marker="o" if deflate else "s",
                color=colors.get(rows[0]["server"]),
                label=label,
            )
        if name == "latency.png":
            ax.axhline(300, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate("300 ms target", (xs[0], 300), fontsize=7, color="grey")
            ax.set_yscale("log")
        else:
            ax.axhline(24, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate("24 KiB target", (xs[0], 24), fontsize=7, color="grey")
        ax.set_xscale("log")
        points = sorted({r["connections"] for rows in series.values() for r in rows})
        ax.set_xticks(points, [f"{p:,}" for p in points])
        ax.set_xlabel("connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json_path", type=Path, nargs="+", help="one or more ladder runs")
    p.add_argument("--out", type=Path, default=None)
    ns = p.parse_args()
    render(ns.json_path, ns.out or ns.json_path[0].parent)
