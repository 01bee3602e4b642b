"""Log lines an operator relies on: one per 4xx (with its error code), one per WebSocket close
(code, reason, user, connection id, duration); JSON lines carry the same fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from config.logs import configure_logging
from tests.conftest import Running, subscribe, wait


@pytest.mark.gen_test(timeout=30)
async def test_a_4xx_is_logged_once_with_its_code(
    folio: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    await folio.get_json("/api/nope-xyz")
    lines = [r for r in caplog.records if "/api/nope-xyz" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING
    assert "404" in lines[0].getMessage() and "not_found" in lines[0].getMessage()
    assert lines[0].errorCode == "not_found"  # type: ignore[attr-defined]


@pytest.mark.gen_test(timeout=30)
async def test_websocket_close_is_logged_once_with_code_reason_user_duration(
    folio: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handlers.ws")
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn, ["account"])
    conn.close(4100, "tab closed")
    alice = await folio.user_id("alice")
    deadline = asyncio.get_running_loop().time() + wait(5)
    while asyncio.get_running_loop().time() < deadline:
        closes = [
            r for r in caplog.records if r.name == "handlers.ws" and "closed by" in r.getMessage()
        ]
        if closes:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    closes = [
        r for r in caplog.records if r.name == "handlers.ws" and "closed by" in r.getMessage()
    ]
    assert len(closes) == 1, [r.getMessage() for r in closes]
    record = closes[0]
    assert (record.userId, record.code, record.reason) == (alice, 4100, "tab closed")  # type: ignore[attr-defined]
    assert record.connId.startswith("c") and record.durationS >= 0  # type: ignore[attr-defined]
    assert "closed by the client: 4100 tab closed" in record.getMessage()


def test_json_log_lines_carry_the_extras() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json", buffer)
        logging.getLogger("handlers.ws").info(
            "socket closed", extra={"userId": "7", "connId": "c9", "code": 4001, "durationS": 1.5}
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    record = json.loads(buffer.getvalue())
    assert record["message"] == "socket closed" and record["level"] == "INFO"
    assert (record["userId"], record["connId"], record["code"]) == ("7", "c9", 4001)
    assert record["time"].endswith("+00:00")
