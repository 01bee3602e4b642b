"""/metrics at parity with the admin stats: names, types, values, no _created, bounded labels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from streaming.metrics import Metrics, close_code_label
from streaming.opstats import NOT_EXPORTED
from tests.conftest import TOKEN, Running, recv_type, subscribe
from tests.handlers.test_ws import ORDER

REPO = Path(__file__).resolve().parents[2]

#: Stats field → the series that carries it (the rest is in opstats.NOT_EXPORTED).
EXPORTED = {
    "activeConnections": "folio_ws_connections",
    "activeUsers": "folio_ws_users",
    "averageConnectionSeconds": "folio_ws_connection_age_average_seconds",
    "eventsDelivered": "folio_ws_frames_delivered_total",
    "batching.windowMs": "folio_batch_window_seconds",
    "batching.updatesCoalesced": "folio_batch_updates_coalesced_total",
    "batching.batchesSent": "folio_batches_sent_total",
    "broker.stale": "folio_broker_stale",
    "broker.traders": "folio_broker_traders",
    "broker.rejectedUpdates": "folio_broker_rejected_updates_total",
    "bridge.marketData": "folio_bridge_market_data_up",
    "bridge.syncs": "folio_bridge_syncs_total",
    "bridge.syncErrors": "folio_bridge_sync_errors_total",
    "bridge.demo": "folio_demo_mode",
    "redis.fanout": "folio_redis_fanout_up",
    "redis.accountsOwned": "folio_accounts_owned",
    "redis.ingestAccepted": "folio_redis_ingest_accepted_total",
    "redis.ingestRejected": "folio_redis_ingest_rejected_total",
    "maxRssMb": "folio_process_max_resident_memory_bytes",
    "storage.ok": "folio_storage_up",
    "outbox.events": "folio_outbox_events",
    "outbox.dropped": "folio_outbox_dropped_total",
    "outbox.engineDown": "folio_engine_down",
}


def documented_series() -> set[str]:
    """The series names in docs/operations.md's "Prometheus series" table."""
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("### Prometheus series", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(folio_[a-z_]+)`", section, re.M))


def samples(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def flat_fields(stats: dict[str, Any]) -> set[str]:
    fields = set()
    for key, value in stats.items():
        if key in ("broker", "bridge", "redis", "batching", "storage", "outbox"):
            fields |= {f"{key}.{sub}" for sub in value}
        else:
            fields.add(key)
    return fields


@pytest.mark.gen_test(timeout=30)
async def test_metrics_match_the_stats_and_the_docs(folio: Running) -> None:
    """Every stats field is a series (or documented as derived); values agree; docs exact."""
    trader = await folio.login("alice")
    conn = await folio.connect(trader)
    await subscribe(conn, ["orders"])
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    await recv_type(conn, "order_update")
    with pytest.raises(HTTPClientError):  # a refused upgrade is counted
        await folio.connect(None)
    admin = await folio.login("admin", "admin")
    _, stats = await folio.get_json("/api/admin/websocket-stats", admin)
    resp = await folio.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.code == 200
    got = samples(resp.body)

    assert not [name for name in got if name.endswith("_created")]
    for default in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
        assert default in got, default

    for field in flat_fields(stats):
        assert field in EXPORTED or field in NOT_EXPORTED or field.split(".")[0] in NOT_EXPORTED, (
            f"stats field {field} has no series and no reason in opstats.NOT_EXPORTED"
        )
    for field, series in EXPORTED.items():
        if field == "redis.fanout":  # no Redis here: the gauge is absent, not 0
            assert series not in got
            continue
        assert series in got, series
    value = lambda name: next(iter(got[name].values()))  # noqa: E731
    assert value("folio_ws_connections") == stats["activeConnections"] == 1
    assert value("folio_ws_users") == stats["activeUsers"] == 1
    assert value("folio_accounts_owned") == 2 and value("folio_demo_mode") == 1
    assert value("folio_ws_frames_delivered_total") >= 1
    assert got["folio_bridge_trading_streams"][(("state", "alive"),)] == 2
    assert got["folio_ws_rejects_total"][(("reason", "unauthorized"),)] == 1
    assert got["folio_ws_rejects_total"][(("reason", "max_connections"),)] == 0
    assert value("folio_storage_up") == 1
    assert got["folio_login_attempts_total"][(("result", "ok"),)] == 2  # alice and admin
    assert got["folio_http_refused_total"][(("reason", "per_address"),)] == 0
    assert value("folio_broker_last_message_timestamp_seconds") >= 0

    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in text_string_to_metric_families(resp.body.decode())
        if f.name.startswith("folio_")
    }
    families.add("folio_redis_fanout_up")  # present only with REDIS_URL
    assert families == documented_series(), "docs/operations.md's series table is not exact"
    conn.close()


def test_close_code_labels_are_bounded() -> None:
    """A client-chosen close code cannot mint a new series."""
    m = Metrics()
    for code in (1000, 4001, 4999, 3000, None, 1015, 65535):
        m.observe_disconnect(code)
    labels = {s.labels["code"] for s in m.disconnects.collect()[0].samples}
    assert labels == {"1000", "4001", "other", "none", "1015"}
    assert close_code_label(4002) == "4002"
