"""Connection and delivery metrics (REQ-14, REQ-15), kept in a per-server Prometheus registry.

prometheus-client provides the counters, gauges and histograms and the text exposition format
(saves hand-written code); p50/p95/p99 delivery latency for the JSON stats come from a bounded
window of recent samples, because Prometheus histograms only give bucket estimates.
Latency is measured from the moment an update enters the server (broker event or hook call) to
the moment its frame is handed to the socket, in milliseconds.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "percentile", "close_code_label"]

#: Close codes counted under their own label: RFC 6455 §7.4.1 and ours (streaming.closecodes).
_KNOWN_CLOSE_CODES = frozenset(range(1000, 1016)) | {4000, 4001, 4002}


def close_code_label(code: int | None) -> str:
    """Return the metrics label of a close code: the code, ``"none"`` or ``"other"``."""
    if not code:
        return "none"
    return str(code) if code in _KNOWN_CLOSE_CODES else "other"


def percentile(samples: list[float], pct: float) -> float | None:
    """Return the ``pct``-th percentile (nearest-rank method) of ``samples``, or None if empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


class Metrics:
    """All server metrics. One instance per server (its own registry, so tests do not clash).

    Args:
        window: how many recent latency samples feed the percentiles.
    """

    def __init__(self, window: int = 10_000) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("folio_ws_connections", "Open WebSocket connections", registry=r)
        self.connects = Counter("folio_ws_connects", "WebSocket connections accepted", registry=r)
        self.rejects = Counter(
            "folio_ws_rejects", "WebSocket connections refused", ["reason"], registry=r
        )
        self.disconnects = Counter(
            "folio_ws_disconnects", "WebSocket connections closed", ["code"], registry=r
        )
        self.duration = Histogram(
            "folio_ws_connection_seconds",
            "Connection duration in seconds",
            buckets=(1, 10, 60, 300, 1800, 3600, 14400, 86400),
            registry=r,
        )
        self.published = Counter(
            "folio_events_published", "Stream events published", ["type"], registry=r
        )
        self.latency = Histogram(
            "folio_delivery_latency_seconds",
            "Time from an update entering the server to its frame being sent",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.client_errors = Counter(
            "folio_ws_client_errors", "Rejected client messages", ["code"], registry=r
        )
        self.broker_last_message = Gauge(
            "folio_broker_last_message_timestamp",
            "Unix time of the last broker message",
            registry=r,
        )
        self.loop_lag = Histogram(
            "folio_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (streaming.looplag)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.logins = Counter(
            "folio_login_attempts",
            "POST /api/login outcomes (ok, invalid, throttled, busy, storage_error)",
            ["result"],
            registry=r,
        )
        self.http_refused = Counter(
            "folio_http_refused",
            "Connections or requests refused by a server limit "
            "(per_address, accept_error, upgrade_rate)",
            ["reason"],
            registry=r,
        )
        self.storage_errors = Counter(
            "folio_storage_errors", "Requests that failed because storage failed", registry=r
        )
        self.outbox = Gauge(
            "folio_outbox_events",
            "Events waiting to be published (grows only while the engine is unreachable)",
            registry=r,
        )
        self.outbox_dropped = Counter(
            "folio_outbox_dropped",
            "Events dropped because the outbox was full (their users are re-announced)",
            registry=r,
        )
        self._samples: deque[float] = deque(maxlen=window)
        self._disconnect_times: deque[float] = deque(maxlen=10_000)

    def observe_latency(self, seconds: float) -> None:
        """Record one delivery latency sample (seconds)."""
        self.latency.observe(seconds)
        self._samples.append(seconds * 1000.0)

    def observe_disconnect(self, code: int | None) -> None:
        """Record a closed connection with its close code (None when unknown).

        The label is the code for codes RFC 6455 §7.4 defines (1000–1015) and our own
        (4000–4002); anything a client chose outside those is counted as ``other``, so a client
        cannot create unbounded label series.
        """
        self.disconnects.labels(code=close_code_label(code)).inc()
        self._disconnect_times.append(time.monotonic())

    def latency_ms(self) -> dict[str, float | None]:
        """Return ``{"p50", "p95", "p99", "count"}`` of recent delivery latency in milliseconds."""
        samples = list(self._samples)
        return {
            "p50": percentile(samples, 50),
            "p95": percentile(samples, 95),
            "p99": percentile(samples, 99),
            "count": float(len(samples)),
        }

    def disconnects_last_minute(self) -> int:
        """Return how many connections closed in the last 60 seconds (alert above 10, REQ-14)."""
        cutoff = time.monotonic() - 60.0
        return sum(1 for t in self._disconnect_times if t >= cutoff)

    def exposition(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """Return counters as plain numbers for the JSON stats."""
        return {
            "connectsTotal": int(self.connects._value.get()),
            "disconnectsLastMinute": self.disconnects_last_minute(),
            "latencyMs": self.latency_ms(),
        }
