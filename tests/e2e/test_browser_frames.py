"""Chromium reads the server's prepared frames: permessage-deflate negotiated without context
takeover, every message (compressed or not) decoded to the same JSON the server sent."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import ServerProcess, login
from tests.e2e.test_dashboard import now_iso

OPEN_AND_COLLECT = """async () => {
  const ws = new WebSocket(`ws://${location.host}/ws/portfolio`);
  window.__frames = [];
  ws.onmessage = (e) => window.__frames.push(JSON.parse(e.data));
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
  ws.send(JSON.stringify({type: "subscribe",
                          channels: ["positions", "orders", "account", "trades"]}));
  window.__ws = ws;
  return ws.extensions;
}"""


def test_chromium_decodes_prepared_frames(page: Any, spa_server: ServerProcess) -> None:
    login(page, spa_server.base_url)
    extensions = page.evaluate(OPEN_AND_COLLECT)
    assert extensions.startswith("permessage-deflate")
    assert "server_no_context_takeover" in extensions
    assert "client_no_context_takeover" in extensions
    page.wait_for_function(
        "() => window.__frames.some((m) => m.type === 'snapshot')", timeout=10_000
    )
    me = page.evaluate("fetch('/api/me').then((r) => r.json())")
    ts = now_iso()
    orders = []
    for i in range(3):  # several messages in a row: no state may carry between them
        order = {
            "orderId": f"frames-{i}",
            "brokerOrderId": f"b-frames-{i}",
            "symbol": "ZZZZ",
            "side": "buy",
            "type": "limit",
            "status": "new",
            "qty": "3",
            "submittedAt": ts,
        }
        orders.append(order)
        assert spa_server.push_event(me["userId"], "order_update", order) == 202
    page.wait_for_function(
        "() => window.__frames.filter((m) => m.type === 'order_update'"
        " && m.data.orderId.startsWith('frames-')).length === 3",
        timeout=10_000,
    )
    frames = page.evaluate("window.__frames")
    kinds = [m["type"] for m in frames]
    assert kinds[:2] == ["subscribed", "snapshot"]
    snapshot = frames[1]["data"]
    assert set(snapshot) == {"positions", "orders", "account", "trades"}
    got = [
        m
        for m in frames
        if m["type"] == "order_update" and m["data"]["orderId"].startswith("frames-")
    ]
    for sent, message in zip(orders, got, strict=True):
        assert {k: message["data"][k] for k in ("orderId", "symbol", "status", "qty")} == {
            k: sent[k] for k in ("orderId", "symbol", "status", "qty")
        }
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    page.evaluate("window.__ws.close()")
