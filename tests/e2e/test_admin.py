"""The admin page in Chromium: live numbers, charts that grow, and disconnecting a trader sends
that trader's tab back to the login page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, login, screenshot

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402


def test_admin_page_live_numbers_chart_and_disconnect(
    chromium: Any, spa_server: ServerProcess
) -> None:
    trader_ctx = chromium.new_context(viewport={"width": 1280, "height": 860})
    admin_ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        trader = trader_ctx.new_page()
        login(trader, spa_server.base_url, "bob", "demo")
        expect(trader.get_by_test_id("status-label")).to_have_text("Live", timeout=10_000)

        admin = admin_ctx.new_page()
        login(admin, spa_server.base_url, "admin", "admin")
        assert admin.url.endswith("/admin")  # the admin gets the admin page, not a dashboard
        expect(admin.get_by_test_id("stat-connections")).to_have_text("1", timeout=10_000)
        expect(admin.get_by_test_id("stat-users")).to_have_text("1")
        expect(admin.get_by_test_id("connected-bob")).to_contain_text("bob")
        expect(admin.get_by_test_id("alert-latencyP95High")).to_contain_text("above 1000 ms")
        expect(admin.get_by_test_id("processes")).to_contain_text("local (answering)")
        # a chart that grows: one point per 2 s poll, drawn by uPlot on a canvas
        chart = admin.get_by_test_id("chart-connections")
        expect(chart.locator("canvas")).to_have_count(1)
        first = int(chart.get_attribute("data-points") or 0)
        admin.wait_for_function(
            "n => Number(document.querySelector('[data-testid=chart-connections]')"
            ".dataset.points) >= n + 2",
            arg=first,
            timeout=15_000,
        )
        screenshot(admin, "admin.png")

        admin.get_by_role("button", name="Disconnect bob's sessions").click()
        expect(admin.get_by_test_id("admin-notice")).to_contain_text(
            "bob disconnected: 1 session(s) revoked"
        )
        # bob's tab is told its session ended (4001) and shows the login page
        expect(trader.get_by_role("button", name="Sign in")).to_be_visible(timeout=10_000)
        expect(trader.get_by_text("Your session ended")).to_be_visible()
        expect(admin.get_by_test_id("stat-connections")).to_have_text("0", timeout=10_000)
        expect(admin.get_by_test_id("audit")).to_contain_text("disconnect", timeout=10_000)
        expect(admin.get_by_test_id("audit")).to_contain_text("bob")
    finally:
        trader_ctx.close()
        admin_ctx.close()
