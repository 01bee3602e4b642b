"""The event-loop lag probe: a blocked loop shows up as lag, an idle one does not."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from streaming.looplag import LoopLagMonitor


def test_blocking_the_loop_is_measured_as_lag() -> None:
    registry = CollectorRegistry()
    hist = Histogram("lag_seconds", "lag", registry=registry)
    monitor = LoopLagMonitor(hist, interval_s=0.01)

    async def scenario() -> float:
        monitor.start()
        await asyncio.sleep(0.1)  # idle: lag near zero
        idle_max = monitor.lag_ms()["max"] or 0.0
        blocked_at = time.monotonic()
        time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop on purpose
        await asyncio.sleep(0.05)
        monitor.stop()
        assert monitor.longest_stall_since(blocked_at) >= 0.15
        return idle_max

    idle_max = asyncio.run(scenario())
    lag = monitor.lag_ms()
    assert lag["max"] is not None and lag["max"] >= 150.0
    assert idle_max < 150.0
    assert registry.get_sample_value("lag_seconds_count") == len(monitor._samples)
    assert (registry.get_sample_value("lag_seconds_sum") or 0.0) >= 0.15


def test_longest_stall_since_only_counts_later_probes() -> None:
    now = [100.0]
    monitor = LoopLagMonitor(None, interval_s=1.0, clock=lambda: now[0])
    monitor.record(5.0, at=10.0)
    monitor.record(0.1, at=20.0)
    monitor.record(0.3, at=30.0)
    assert monitor.longest_stall_since(15.0) == 0.3
    assert monitor.longest_stall_since(5.0) == 5.0
    assert monitor.longest_stall_since(31.0) == 0.0
    assert monitor.last_tick == 30.0


def test_empty_monitor_reports_nulls() -> None:
    assert LoopLagMonitor(None).lag_ms() == {"p50": None, "p95": None, "p99": None, "max": None}
