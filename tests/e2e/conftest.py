"""Browser end-to-end fixtures: the real server as a subprocess, Debian's chromium via Playwright.

Each test module gets its own server (demo mode: simulator, alice/bob ``demo``, auto-trading) on a
free port with its own SQLite file; tests can stop it and start it again on the same port.
Chromium is the system one (``/usr/bin/chromium``); ``playwright install`` is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
INTERNAL_TOKEN = "test-token"
# Screenshots go to a temporary folder; `E2E_SCREENSHOTS=1 make e2e` refreshes the committed
# ones under docs/screenshots/ (shown in the README) instead.
SCREENSHOTS = (
    REPO / "docs" / "screenshots"
    if os.environ.get("E2E_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "folio-e2e-screenshots"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``server.py`` in a subprocess; ``stop()`` and ``start(**env)`` keep the port and database."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "PYTEST_"))}
        env.update(
            DATABASE_URL=f"sqlite:///{self.workdir}/folio.db",
            SIMULATOR_MONTH_S="5",
            INTERNAL_TOKEN=INTERNAL_TOKEN,
            # fixed, so that sessions survive a restart of the server
            SECRET_KEY="e2e-secret-key-0123456789abcdef0123456789abcdef",
            ENABLE_REALTIME_PORTFOLIO="true",
            REDIS_URL="",
        )
        env.update(overrides)
        return env

    def start(self, timeout: float = 30.0, **env: str) -> None:
        assert self.proc is None, "already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "server.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=REPO,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/api/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /api/health in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/api/health", timeout=2) as r:
            return dict(json.loads(r.read()))

    def push_event(self, user_id: str, type_: str, data: dict[str, Any]) -> int:
        """``POST /internal/events`` with the bearer token; returns the HTTP status."""
        req = urllib.request.Request(
            self.base_url + "/internal/events",
            data=json.dumps({"userId": user_id, "type": type_, "data": data}).encode(),
            headers={
                "Authorization": f"Bearer {INTERNAL_TOKEN}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)


@pytest.fixture(scope="module")
def spa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A demo-mode server for the whole test module; its database lives in a temporary dir."""
    if not (REPO / "static" / "index.html").exists():
        pytest.fail("static/index.html is missing: run `make client`")
    workdir = tmp_path_factory.mktemp("e2e-server")
    server = ServerProcess(workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Any:
    """A fresh browser context and page (1280×860, en-US) for one test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    yield page
    context.close()


def login(page: Any, base_url: str, username: str = "alice", password: str = "demo") -> None:
    page.goto(base_url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("username").wait_for(timeout=10_000)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
