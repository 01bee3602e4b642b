"""The operator's view of one process: the admin stats document and its Prometheus twin.

:func:`build_stats` assembles the JSON answered by ``GET /api/admin/websocket-stats`` (and
polled by the admin page) from the stream manager, the portfolio service and the sections the
server adds (``bridge``, ``redis``). :class:`StatsCollector` exposes the same numbers on
``/metrics`` at scrape time, so the two cannot drift: every stats field is either a series here,
a series kept by :class:`streaming.metrics.Metrics`, or listed in :data:`NOT_EXPORTED` with the
reason (docs/operations.md has the table).

The alert thresholds are those of the spec (REQ-14) and of ``ops/prometheus/alerts.yml``.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ALERT_THRESHOLDS", "NOT_EXPORTED", "StatsCollector", "build_stats"]

#: Alert name → (stats field it watches, threshold, unit). Same numbers as alerts.yml.
ALERT_THRESHOLDS: dict[str, dict[str, Any]] = {
    "disconnectRateHigh": {"field": "disconnectsLastMinute", "above": 10, "unit": "per minute"},
    "latencyP95High": {"field": "latencyMs.p95", "above": 1000, "unit": "ms"},
    "loopLagP99High": {"field": "loopLagMs.p99", "above": 100, "unit": "ms"},
    "brokerStale": {"field": "broker.stale", "above": 0, "unit": "true/false"},
}

#: Stats fields with no series of their own on /metrics, and why.
NOT_EXPORTED: dict[str, str] = {
    "connectionsPerUser": "one series per user would be unbounded; see folio_ws_users",
    "disconnectsLastMinute": "rate(folio_ws_disconnects_total[1m]) * 60",
    "latencyMs": "histogram_quantile over folio_delivery_latency_seconds_bucket",
    "loopLagMs": "histogram_quantile over folio_event_loop_lag_seconds_bucket",
    "connectsTotal": "folio_ws_connects_total (kept by Metrics)",
    "disconnectsByCode": "folio_ws_disconnects_total{code} (kept by Metrics)",
    "broker.secondsSinceBrokerMessage": "time() - folio_broker_last_message_timestamp_seconds",
    "broker.symbolsWatched": "the list; its length is folio_broker_symbols_watched",
    "bridge.tradingStreams": "per user; counted by state in folio_bridge_trading_streams",
    "bridge.catchUp": "hand-over catch-up counts and the accounts held/pending (docs/catchup.md); "
    "stats only for now",
    "alerts": "evaluated by Prometheus from ops/prometheus/alerts.yml",
    "cluster": "other processes' figures: each process exports its own series",
    "alertThresholds": "constants (ops/prometheus/alerts.yml)",
    "storage.fault": "text; folio_storage_up is 0 while there is one",
    "redis.role": "text (all, web or bridge): set by how the process was started",
}


class _Manager(Protocol):
    def stats(self) -> dict[str, Any]: ...


class _Service(Protocol):
    def status(self) -> dict[str, Any]: ...


#: The ``broker`` section of a web process's stats: it streams no broker account (the bridges'
#: feeds are in the cluster view, ``brokerStale`` per process).
WEB_BROKER_STATUS: dict[str, Any] = {
    "stale": False,
    "secondsSinceBrokerMessage": None,
    "traders": 0,
    "symbolsWatched": [],
    "rejectedUpdates": 0,
}


def max_rss_bytes() -> int:
    """Return the process's peak resident set size in bytes (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_stats(
    manager: _Manager, service: _Service | None, sections: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the admin stats document of this process.

    Args:
        manager: the stream manager (connections, deliveries, latency, loop lag).
        service: the portfolio service (broker feed state, under ``broker``); None in a web
            process, whose ``broker`` section is :data:`WEB_BROKER_STATUS` (the bridges report
            their feed in the cluster view).
        sections: more top-level sections: values, or callables evaluated now.

    Returns:
        ``manager.stats()`` plus ``broker``, each section, ``maxRssMb``, ``alerts`` (name →
        bool) and ``alertThresholds`` (:data:`ALERT_THRESHOLDS`).
    """
    stats = manager.stats()
    stats["broker"] = service.status() if service is not None else dict(WEB_BROKER_STATUS)
    stats.update({k: v() if callable(v) else v for k, v in sections.items()})
    stats["maxRssMb"] = round(max_rss_bytes() / (1024 * 1024), 1)
    stats["alerts"] = {
        "disconnectRateHigh": stats["disconnectsLastMinute"] > 10,
        "latencyP95High": (stats["latencyMs"]["p95"] or 0) > 1000,
        "loopLagP99High": (stats["loopLagMs"]["p99"] or 0) > 100,
        "brokerStale": bool(stats["broker"].get("stale")),
    }
    stats["alertThresholds"] = ALERT_THRESHOLDS
    return stats


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class StatsCollector(Collector):
    """A Prometheus collector that reads :func:`build_stats` at scrape time.

    Args:
        source: returns the stats document (``lambda: build_stats(...)``).
    """

    def __init__(self, source: Callable[[], Mapping[str, Any]]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry then never calls :meth:`collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the stats as gauges and counters (names in docs/operations.md)."""
        s = self._source()
        yield _gauge("folio_ws_users", "Users with at least one open WebSocket", s["activeUsers"])
        yield _gauge(
            "folio_ws_connection_age_average_seconds",
            "Mean age of the open WebSocket connections",
            s["averageConnectionSeconds"],
        )
        yield _counter(
            "folio_ws_frames_delivered",
            "Frames written to WebSocket connections",
            s["eventsDelivered"],
        )
        batching = s["batching"]
        yield _gauge(
            "folio_batch_window_seconds",
            "Batching window (BATCH_WINDOW_MS)",
            batching["windowMs"] / 1000,
        )
        yield _counter(
            "folio_batch_updates_coalesced",
            "Position/account updates absorbed into a later one of the same batch",
            batching["updatesCoalesced"],
        )
        yield _counter("folio_batches_sent", "Batches released", batching["batchesSent"])
        broker = s["broker"]
        yield _gauge(
            "folio_broker_stale", "1 while clients are told data may be stale", broker["stale"]
        )
        yield _gauge(
            "folio_broker_traders", "Traders with a portfolio in this process", broker["traders"]
        )
        yield _gauge(
            "folio_broker_symbols_watched",
            "Symbols subscribed on the market-data stream",
            len(broker["symbolsWatched"]),
        )
        yield _counter(
            "folio_broker_rejected_updates",
            "Broker messages that failed validation",
            broker["rejectedUpdates"],
        )
        bridge = s.get("bridge")
        if bridge is not None:
            streams = GaugeMetricFamily(
                "folio_bridge_trading_streams",
                "Alpaca trading streams (one per linked account), by state",
                labels=["state"],
            )
            alive = sum(1 for up in bridge["tradingStreams"].values() if up)
            streams.add_metric(["alive"], alive)
            streams.add_metric(["down"], len(bridge["tradingStreams"]) - alive)
            yield streams
            yield _gauge(
                "folio_bridge_market_data_up",
                "1 while the market-data stream runs",
                bridge["marketData"],
            )
            yield _counter("folio_bridge_syncs", "REST reconciliations done", bridge["syncs"])
            yield _counter(
                "folio_bridge_sync_errors", "REST reconciliations failed", bridge["syncErrors"]
            )
            yield _gauge("folio_demo_mode", "1 in demo mode (bundled simulator)", bridge["demo"])
        redis = s.get("redis")
        if redis is not None:
            if redis["fanout"] is not None:
                yield _gauge(
                    "folio_redis_fanout_up",
                    "1 while the Redis fan-out subscription is up",
                    redis["fanout"],
                )
            yield _gauge(
                "folio_accounts_owned",
                "Broker accounts whose stream this process runs (its leases in a cluster)",
                redis["accountsOwned"],
            )
            yield _counter(
                "folio_redis_ingest_accepted",
                "Redis ingest entries accepted",
                redis["ingestAccepted"],
            )
            yield _counter(
                "folio_redis_ingest_rejected",
                "Redis ingest entries rejected",
                redis["ingestRejected"],
            )
        outbox = s.get("outbox")
        if outbox is not None:
            yield _gauge(
                "folio_engine_down",
                "1 while the engine (Redis) is unreachable and events wait in the outbox",
                outbox["engineDown"],
            )
        storage = s.get("storage")
        if storage is not None:
            yield _gauge("folio_storage_up", "1 while the database answers", storage["ok"])
        yield _gauge(
            "folio_process_max_resident_memory_bytes",
            "Peak resident memory of the process (getrusage)",
            max_rss_bytes(),
        )
