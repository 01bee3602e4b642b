"""Put on ``PYTHONPATH`` of ``server.py`` by the ladder: records GC pauses, and can set thresholds.

Python imports ``sitecustomize`` at start-up from ``sys.path``; the ladder puts this folder on
the ``PYTHONPATH`` of every folio-stream variant, which is the only way to see the collector
from outside without changing ``server.py``:

- ``FOLIO_BENCH_GC_LOG=1``: every generation 1 and 2 collection is recorded (wall time, generation,
  CPU seconds) and written to stderr at exit as one line ``FOLIO_BENCH_GC {json}``, with the
  number of generation 0 collections; the ladder keeps those that fell in the load + drain.
  With 10,000 connections the heap holds millions of objects, and a full (generation 2)
  collection walks all of them: a stall of the event loop.
- ``FOLIO_BENCH_GC_THRESHOLD="gen0,gen1,gen2"`` (the ``folio-gc`` variant):
  :func:`gc.set_threshold`, to measure a proposed ``server.py`` change without making it.
"""

import atexit
import gc
import json
import os
import sys
import time

_threshold = os.environ.get("FOLIO_BENCH_GC_THRESHOLD", "")
if _threshold:
    gc.set_threshold(*(int(x) for x in _threshold.split(",")))

if os.environ.get("FOLIO_BENCH_GC_LOG"):
    _started: dict[int, float] = {}
    _young = [0]
    _pauses: list[tuple[float, int, float]] = []

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            _started[generation] = time.process_time()
        elif generation == 0:
            _young[0] += 1
        else:
            spent = time.process_time() - _started.get(generation, time.process_time())
            _pauses.append((time.time(), generation, spent))

    def _report() -> None:
        doc = {"gen0": _young[0], "threshold": gc.get_threshold(), "pauses": _pauses}
        print(f"FOLIO_BENCH_GC {json.dumps(doc)}", file=sys.stderr, flush=True)

    gc.callbacks.append(_on_gc)
    atexit.register(_report)

if os.environ.get("FOLIO_BENCH_SLOW_MS"):
    # Every event-loop iteration whose callbacks took longer than FOLIO_BENCH_SLOW_MS (wall, from
    # the end of its epoll wait to the end of the iteration), with its CPU time and how many
    # callbacks it ran: wall >> CPU means the process was off the CPU (the machine was busy);
    # wall ≈ CPU with one callback means a long callback, with many a crowded iteration.
    # One line ``FOLIO_BENCH_SLOW {json}`` at exit.
    import asyncio.base_events
    import selectors

    _limit = float(os.environ["FOLIO_BENCH_SLOW_MS"]) / 1000.0
    _slow: list[tuple[float, float, float, int, int]] = []
    _woke = [0.0, 0.0, 0]
    _select = selectors.EpollSelector.select
    _run_once = asyncio.base_events.BaseEventLoop._run_once

    def _timed_select(self: selectors.EpollSelector, timeout: float | None = None) -> list:
        events = _select(self, timeout)
        _woke[0], _woke[1], _woke[2] = time.perf_counter(), time.thread_time(), len(events)
        return events

    def _timed_run_once(self: asyncio.base_events.BaseEventLoop) -> None:
        ready = len(self._ready)  # type: ignore[attr-defined]
        _run_once(self)
        wall = time.perf_counter() - _woke[0]
        if wall >= _limit and len(_slow) < 10_000:
            cpu = time.thread_time() - _woke[1]
            _slow.append(
                (time.time(), round(wall * 1000, 2), round(cpu * 1000, 2), _woke[2], ready)
            )

    selectors.EpollSelector.select = _timed_select  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = _timed_run_once  # type: ignore[method-assign]

    def _report_slow() -> None:
        print(f"FOLIO_BENCH_SLOW {json.dumps(_slow)}", file=sys.stderr, flush=True)

    atexit.register(_report_slow)
