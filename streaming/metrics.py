"""Connection and delivery metrics (REQ-14, REQ-15), kept in a per-server Prometheus registry.

prometheus-client provides the counters, gauges and histograms, the default process and platform
collectors (``process_*``, ``python_*``) and the text exposition format (saves hand-written
code); p50/p95/p99 delivery latency for the JSON stats come from a bounded window of recent
samples, because Prometheus histograms only give bucket estimates.
Latency is measured from the moment an update enters the server (broker event or hook call) to
the moment its frame is handed to the socket, in milliseconds.

Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/): counters
end in ``_total``, units are base units named last (``_seconds``, ``_bytes``). No ``_created``
series (:func:`prometheus_client.disable_created_metrics`): they double the series count and no
rule here uses them. Every label has a bounded set of values: close codes outside the ones the
server knows are counted as ``other``, so a client cannot mint new series.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from streaming.closecodes import CloseCode

__all__ = ["Metrics", "percentile", "REJECT_REASONS", "close_code_label"]

disable_created_metrics()

#: Why an upgrade to ``/ws/portfolio`` was refused (the ``reason`` label).
REJECT_REASONS = ("unauthorized", "bad_origin", "max_connections")
#: ``folio_login_attempts_total`` results, and ``folio_http_refused_total`` reasons.
LOGIN_RESULTS = ("ok", "invalid", "throttled", "busy", "storage_error")
HTTP_REFUSED_REASONS = ("per_address", "accept_error", "upgrade_rate")

#: Close codes counted under their own label value; anything else is ``other``.
_KNOWN_CODES = frozenset({*(int(c) for c in CloseCode), *range(1000, 1016)})


def close_code_label(code: int | None) -> str:
    """Return the bounded ``code`` label for a close code: the number, ``none`` or ``other``."""
    if code is None or code == 0:
        return "none"
    return str(code) if code in _KNOWN_CODES else "other"


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
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.connections = Gauge("folio_ws_connections", "Open WebSocket connections", registry=r)
        self.connects = Counter(
            "folio_ws_connects_total", "WebSocket connections accepted", registry=r
        )
        self.rejects = Counter(
            "folio_ws_rejects_total",
            "WebSocket upgrades refused, by reason",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejects.labels(reason=reason)
        self.disconnects = Counter(
            "folio_ws_disconnects_total",
            "WebSocket connections closed, by close code",
            ["code"],
            registry=r,
        )
        self.duration = Histogram(
            "folio_ws_connection_duration_seconds",
            "How long closed WebSocket connections lasted",
            buckets=(1, 10, 60, 300, 1800, 3600, 14400, 86400),
            registry=r,
        )
        self.published = Counter(
            "folio_events_published_total", "Stream events published, by type", ["type"], registry=r
        )
        self.latency = Histogram(
            "folio_delivery_latency_seconds",
            "Time from an update entering the server to its frame being sent",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.client_errors = Counter(
            "folio_ws_client_errors_total",
            "Rejected client messages, by code",
            ["code"],
            registry=r,
        )
        self.broker_last_message = Gauge(
            "folio_broker_last_message_timestamp_seconds",
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
            "folio_login_attempts_total",
            "POST /api/login outcomes (ok, invalid, throttled, busy, storage_error)",
            ["result"],
            registry=r,
        )
        for result in LOGIN_RESULTS:
            self.logins.labels(result=result)
        self.http_refused = Counter(
            "folio_http_refused_total",
            "Connections or requests refused by a server limit "
            "(per_address, accept_error, upgrade_rate)",
            ["reason"],
            registry=r,
        )
        for reason in HTTP_REFUSED_REASONS:
            self.http_refused.labels(reason=reason)
        self.storage_errors = Counter(
            "folio_storage_errors_total", "Requests that failed because storage failed", registry=r
        )
        self.outbox = Gauge(
            "folio_outbox_events",
            "Events waiting to be published (grows only while the engine is unreachable)",
            registry=r,
        )
        self.outbox_dropped = Counter(
            "folio_outbox_dropped_total",
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

    def reject(self, reason: str) -> None:
        """Count a refused upgrade; ``reason`` is one of :data:`REJECT_REASONS`."""
        self.rejects.labels(reason=reason if reason in REJECT_REASONS else "other").inc()

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
        by_code = {
            sample.labels["code"]: int(sample.value)
            for metric in self.disconnects.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }
        return {
            "connectsTotal": int(self.connects._value.get()),
            "disconnectsByCode": by_code,
            "disconnectsLastMinute": self.disconnects_last_minute(),
            "latencyMs": self.latency_ms(),
        }
