"""The trader's dashboard in a real browser against the real server and its simulator."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, login, screenshot

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

# Samples, for `ms` milliseconds on every animation frame, the P&L cells: how many flashes were
# seen, the largest scale applied, and whether a flash colour was painted.
SAMPLE_FLASHES = """async (ms) => {
  const out = { flashes: 0, maxScale: 1, colour: false, reducedAttr: new Set() };
  const end = performance.now() + ms;
  const seen = new WeakSet();
  while (performance.now() < end) {
    await new Promise((r) => requestAnimationFrame(r));
    for (const el of document.querySelectorAll('.pnl')) {
      const cs = getComputedStyle(el);
      if (el.dataset.flash) {
        if (!seen.has(el)) { out.flashes += 1; seen.add(el); }
        out.reducedAttr.add(el.dataset.motion);
      } else {
        seen.delete(el);
      }
      const m = /matrix\\(([^,]+),/.exec(cs.transform);
      if (m) out.maxScale = Math.max(out.maxScale, parseFloat(m[1]));
      const bg = cs.backgroundColor;
      if (bg && bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') out.colour = true;
    }
  }
  out.reducedAttr = [...out.reducedAttr];
  return out;
}"""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_for_positions(page: Any, timeout_ms: int = 30_000) -> None:
    # The demo auto-trader buys within a few seconds of start.
    page.locator("[data-testid=positions-table] tbody tr").first.wait_for(timeout=timeout_ms)


def test_login_page_rejects_wrong_password(page: Any, spa_server: ServerProcess) -> None:
    page.goto(spa_server.base_url + "/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    screenshot(page, "login.png")


def test_login_shows_live_dashboard_with_positions(page: Any, spa_server: ServerProcess) -> None:
    login(page, spa_server.base_url)
    expect(page.get_by_test_id("username")).to_have_text("alice")
    dot = page.get_by_test_id("status-dot")
    expect(dot).to_have_attribute("data-tone", "green", timeout=10_000)
    expect(page.get_by_test_id("status-label")).to_have_text("Live")
    expect(page.get_by_test_id("equity")).to_contain_text("$")
    wait_for_positions(page)
    row = page.locator("[data-testid=positions-table] tbody tr").first
    expect(row.get_by_test_id("last-updated")).to_contain_text("Last updated")
    # P&L carries a sign/arrow besides its colour
    pnl = row.get_by_test_id("unrealized-pnl")
    expect(pnl).to_have_text(re.compile(r"^(▲ \+|▼ -)?\$[\d,]+\.\d\d$"))
    # let a few fills and price moves happen, then take the README screenshot
    page.locator("[data-testid=execution]").first.wait_for(timeout=30_000)
    page.wait_for_timeout(2000)
    screenshot(page, "dashboard.png")


def test_order_fill_appears_without_reload(page: Any, spa_server: ServerProcess) -> None:
    login(page, spa_server.base_url)
    expect(page.get_by_test_id("status-dot")).to_have_attribute(
        "data-tone", "green", timeout=10_000
    )
    page.evaluate("window.__noReload = 'still here'")
    me = page.evaluate("fetch('/api/me').then((r) => r.json())")

    # 1. a fill pushed through the internal hook shows up in orders and executions
    order_id = f"e2e-{uuid.uuid4()}"
    ts = now_iso()
    order = {
        "orderId": order_id,
        "brokerOrderId": f"b-{order_id}",
        "symbol": "ZZZZ",
        "side": "buy",
        "type": "market",
        "status": "filled",
        "qty": "3",
        "filledQty": "3",
        "filledAvgPrice": "12.34",
        "submittedAt": ts,
        "filledAt": ts,
        "updatedAt": ts,
    }
    trade = {
        "executionId": f"x-{order_id}",
        "orderId": order_id,
        "brokerOrderId": f"b-{order_id}",
        "symbol": "ZZZZ",
        "side": "buy",
        "qty": "3",
        "price": "12.34",
        "positionQty": "3",
        "partial": False,
        "timestamp": ts,
    }
    assert spa_server.push_event(me["userId"], "order_update", order) == 202
    assert spa_server.push_event(me["userId"], "trade_executed", trade) == 202
    execution = page.locator(f"[data-testid=execution][data-execution-id='x-{order_id}']")
    expect(execution).to_contain_text("Bought 3 ZZZZ at $12.34", timeout=5_000)
    order_row = page.locator(f"[data-testid=order-row][data-order-id='{order_id}']")
    expect(order_row).to_contain_text("Filled")
    expect(page.get_by_test_id("announcer")).to_contain_text("ZZZZ")

    # 2. the simulator's auto-trader fills orders too: a new execution arrives by itself
    before = set(
        page.eval_on_selector_all(
            "[data-testid=execution]", "els => els.map(e => e.dataset.executionId)"
        )
    )
    page.wait_for_function(
        "(before) => [...document.querySelectorAll('[data-testid=execution]')]"
        ".some((e) => !before.includes(e.dataset.executionId))",
        arg=list(before),
        timeout=45_000,
    )
    assert page.evaluate("window.__noReload") == "still here"


def test_pnl_flashes_scale_with_full_motion(page: Any, spa_server: ServerProcess) -> None:
    login(page, spa_server.base_url)
    wait_for_positions(page)
    stats = page.evaluate(SAMPLE_FLASHES, 6000)
    assert stats["flashes"] > 0, stats
    assert stats["colour"], stats
    assert stats["reducedAttr"] == ["full"], stats
    assert stats["maxScale"] > 1.005, stats


def test_reduced_motion_changes_colour_only(chromium: Any, spa_server: ServerProcess) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, reduced_motion="reduce")
    try:
        page = context.new_page()
        login(page, spa_server.base_url)
        assert page.evaluate("matchMedia('(prefers-reduced-motion: reduce)').matches")
        wait_for_positions(page)
        stats = page.evaluate(SAMPLE_FLASHES, 6000)
        assert stats["flashes"] > 0, stats
        assert stats["colour"], stats
        assert stats["reducedAttr"] == ["reduced"], stats
        assert stats["maxScale"] == 1, stats
    finally:
        context.close()


def test_logout_returns_to_login(page: Any, spa_server: ServerProcess) -> None:
    login(page, spa_server.base_url)
    page.get_by_test_id("logout").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_signing_out_elsewhere_closes_the_stream_with_4001(
    page: Any, spa_server: ServerProcess
) -> None:
    login(page, spa_server.base_url)
    expect(page.get_by_test_id("status-dot")).to_have_attribute(
        "data-tone", "green", timeout=10_000
    )
    # Same browser session in another tab signs out: the server revokes the session and closes
    # the first tab's socket with 4001, which must land on the login page without retrying.
    other = page.context.new_page()
    other.goto(spa_server.base_url + "/")
    other.get_by_test_id("logout").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("status").filter(has_text="session ended")).to_be_visible()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.wait_for_timeout(3000)
    assert sockets == []
    other.close()
