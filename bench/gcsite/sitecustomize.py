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
