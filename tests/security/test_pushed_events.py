"""Hook and ingest inputs (issue 7, item 3): non-canonical ids and odd numbers.

Every odd body gets a 400 naming every failing field (never a 500, never a 202 delivered to
nobody); the Redis ingest acknowledges every entry, copies each failing one to ``:rejected``
with its error and handles the rest of the batch; another trader's stream loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest
import ujson

from streaming.redis_ingest import RedisIngest
from tests.conftest import TOKEN, Running, require_service
from tests.handlers.test_ws import ORDER
from tests.security.helpers import Bystander, until

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

ODD_USER_IDS: list[Any] = [
    "01",
    "\u0661",
    "\uff11",
    "\u00b9",
    "1" * 20,
    "1" * 5000,
    "9223372036854775808",
    0,
    -1,
    True,
    1.5,
    None,
]
ODD_DATA: list[dict[str, Any]] = [
    {"filledAvgPrice": "1" * 400},
    {"filledAvgPrice": "1e400"},
    {"qty": "\u0661\u0662"},
    {"qty": 10**30},
    {"symbol": "\uff21APL"},
    {"symbol": "A" * 5000},
    {"orderId": "x" * 100_000},
    {"orderId": "\x00"},
    {"submittedAt": "9" * 5000},
    {"side": ["buy"]},
]


@pytest.mark.gen_test(timeout=60)
async def test_hook_rejects_odd_input_with_400_naming_every_field(folio: Running) -> None:
    bob = await Bystander(folio).start()
    statuses = []
    for user_id in ODD_USER_IDS:
        resp = await folio.push(user_id, "order_update", ORDER)
        statuses.append(resp.code)
        if resp.code == 400:
            assert ujson.loads(resp.body)["error"]["message"].startswith("userId: ")
    for data in ODD_DATA:
        resp = await folio.push(bob.user_id, "order_update", {**ORDER, **data})
        statuses.append(resp.code)
        message = ujson.loads(resp.body)["error"]["message"]
        assert f"data.{next(iter(data))}: " in message, message
        assert len(message) < 1000  # huge values are cut short in messages
    assert set(statuses) == {400}, statuses
    # every failing field named at once
    resp = await folio.push("01", "order_update", {**ORDER, "symbol": "$", "qty": "1e3"})
    message = ujson.loads(resp.body)["error"]["message"]
    assert [part.split(":")[0] for part in message.split("; ")] == [
        "userId",
        "data.symbol",
        "data.qty",
    ]
    # raw bodies that are not even the right shape
    for body in (b"[" * 100_000, b'{"userId": 1e999}', b"\xff\xfe", b'{"userId": "1", "type": 5}'):
        resp = await folio.request(
            "POST", "/internal/events", body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.code == 400, (body[:20], resp.code)
    await bob.expect_events(5)
    bob.assert_open()


def test_ingest_acks_every_entry_rejects_each_bad_one_and_handles_the_rest() -> None:
    """One read batch mixing good entries with odd ones (invalid UTF-8, huge numbers,
    non-canonical ids, a user check that raises): every good one emitted in order, every bad
    one in :rejected with its error, nothing left pending."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", exc)
    prefix = "t" + secrets.token_hex(4)

    async def main() -> None:
        emitted: list[str] = []

        async def emit(user_id: str, type_: str, data: dict[str, Any]) -> None:
            emitted.append(data["orderId"])

        async def user_exists(user_id: str) -> bool:
            if user_id == "666":
                raise RuntimeError("the user store failed")
            return user_id == "1"

        ingest = RedisIngest(REDIS_URL, emit, user_exists, prefix=prefix)
        good = [
            ujson.dumps(
                {"userId": "1", "type": "order_update", "data": {**ORDER, "orderId": f"g{n}"}}
            )
            for n in range(3)
        ]
        bad: list[bytes | str] = [
            b'{"userId": "1", "type": "order_update", "data": {"orderId": "\xff\xfe"}}',
            ujson.dumps({"userId": "01", "type": "order_update", "data": ORDER}),
            ujson.dumps({"userId": "\u0661", "type": "order_update", "data": ORDER}),
            ujson.dumps(
                {"userId": "1", "type": "order_update", "data": {**ORDER, "qty": "1" * 400}}
            ),
            ujson.dumps({"userId": "666", "type": "order_update", "data": ORDER}),
            "[" * 50_000,
        ]
        entries = [good[0], *bad[:3], good[1], *bad[3:], good[2]]
        # written before the reader starts, so they arrive in one XREADGROUP batch
        client.xgroup_create(f"{prefix}:ingest", f"{prefix}-servers", id="0", mkstream=True)
        for entry in entries:
            client.xadd(f"{prefix}:ingest", {"event": entry})
        await ingest.start()
        await until(lambda: ingest.accepted + ingest.rejected == len(entries), "ingest")
        assert emitted == ["g0", "g1", "g2"]
        assert ingest.rejected == len(bad)
        rejected = client.xrange(f"{prefix}:ingest:rejected")
        errors = [fields[b"error"].decode() for _, fields in rejected]
        assert len(errors) == len(bad)
        assert errors[1].startswith("userId: ") and errors[2].startswith("userId: ")
        assert "data.qty" in errors[3]
        assert "could not be handled" in errors[4]
        assert errors[5] == "event: not valid JSON"
        pending = client.xpending(f"{prefix}:ingest", f"{prefix}-servers")
        assert pending["pending"] == 0
        await ingest.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
