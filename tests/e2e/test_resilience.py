"""Connection loss in a real browser: status dot, reconnect with backoff, REST fallback polling."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, login, screenshot

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402


@pytest.fixture
def page(chromium: Any) -> Any:
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    yield page
    context.close()


def restart(server: ServerProcess, **env: str) -> None:
    server.stop()
    server.start(**env)


def test_status_dot_red_when_server_stops_and_green_when_it_restarts(
    page: Any, spa_server: ServerProcess
) -> None:
    login(page, spa_server.base_url)
    dot = page.get_by_test_id("status-dot")
    label = page.get_by_test_id("status-label")
    expect(dot).to_have_attribute("data-tone", "green", timeout=10_000)
    page.evaluate("window.__noReload = 1")

    spa_server.stop()
    expect(dot).to_have_attribute("data-tone", "red", timeout=10_000)
    expect(label).to_have_text(re.compile("Disconnected|Connection failed"))
    screenshot(page, "disconnected.png")

    spa_server.start()  # same port, same database
    # backoff 1, 2, 4, 8 s …: back within a few attempts, without a reload
    expect(dot).to_have_attribute("data-tone", "green", timeout=45_000)
    expect(label).to_have_text("Live")
    assert page.evaluate("window.__noReload") == 1
    # and the stream flows again: the account figures keep arriving
    expect(page.get_by_test_id("equity")).to_contain_text("$")


def test_backup_connection_when_socket_refused_and_back_to_live(
    page: Any, spa_server: ServerProcess
) -> None:
    login(page, spa_server.base_url)
    dot = page.get_by_test_id("status-dot")
    label = page.get_by_test_id("status-label")
    expect(dot).to_have_attribute("data-tone", "green", timeout=10_000)

    # Server comes back with the feature flag off: /ws/portfolio answers 404, /api/health says
    # realtime false → the client polls the REST endpoints every 5 s.
    restart(spa_server, ENABLE_REALTIME_PORTFOLIO="false")
    assert spa_server.health()["realtime"] is False
    expect(label).to_have_text("Using backup connection", timeout=30_000)
    expect(dot).to_have_attribute("data-tone", "yellow")
    expect(page.get_by_test_id("backup-banner")).to_be_visible()

    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "/api/" in r.url else None)
    page.wait_for_timeout(11_000)
    for path in ("/api/positions", "/api/orders", "/api/account"):
        hits = [u for u in polled if u.endswith(path)]
        assert len(hits) >= 2, (path, polled)
    screenshot(page, "backup-connection.png")

    # A fresh page with the flag off polls from the start and never opens a socket.
    sockets: list[str] = []
    fresh = page.context.new_page()
    fresh.on("websocket", lambda ws: sockets.append(ws.url))
    fresh.goto(spa_server.base_url + "/")
    expect(fresh.get_by_test_id("status-label")).to_have_text(
        "Using backup connection", timeout=10_000
    )
    fresh.wait_for_timeout(1000)
    assert sockets == []
    fresh.close()

    # Flag back on: the client keeps probing (~30 s) and returns to the socket.
    restart(spa_server)
    expect(label).to_have_text("Live", timeout=60_000)
    expect(dot).to_have_attribute("data-tone", "green")
    expect(page.get_by_test_id("backup-banner")).to_have_count(0)
