"""``GET /v2/account/activities[/{type}]``: FILL activities as Alpaca sends them, paging, filters.

Shapes and semantics: https://docs.alpaca.markets/reference/getaccountactivities and
https://docs.alpaca.markets/docs/account-activities (see streaming/simulator/activities.py).
alpaca-py 0.44's TradingClient has no method for this endpoint (alpaca-py issues #232/#595),
so "through alpaca-py" means its REST session: ``TradingClient.get(path, params)``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from streaming.simulator import Simulator
from tests.simulator.helpers import (
    KEY,
    SECRET,
    call,
    run,
    started,
    trading_stream_ready,
    wait_until,
)

HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
ID_RE = re.compile(r"^(\d{17})::([0-9a-f-]{36})$")
NEW_YORK = ZoneInfo("America/New_York")


def get(sim: Simulator, path: str, params: dict[str, Any] | None = None) -> requests.Response:
    return requests.get(f"{sim.trading_url}{path}", headers=HEADERS, params=params, timeout=5)


async def fills(sim: Simulator, qtys: list[int], symbol: str = "AAPL") -> list[dict[str, Any]]:
    """Submit market buys one after the other, each fully filled before the next."""
    orders = []
    acct = sim.account(KEY)
    for qty in qtys:
        order = sim.submit_order(KEY, symbol=symbol, qty=Decimal(qty), side="buy")
        orders.append(order)
        await wait_until(lambda o=order: acct.get_order(o["id"]).status == "filled", 10)
    return orders


async def listing(sim: Simulator, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    r = await call(get, sim, path, params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    return body


def test_fill_activities_have_alpacas_shape_and_the_streams_execution_ids() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("100.25"))
            _, updates = h.trading_stream()
            await trading_stream_ready(sim)
            [big, small] = await fills(sim, [12, 3])
            await wait_until(lambda: sum(u.event in ("fill", "partial_fill") for u in updates) == 3)
            rows = await listing(sim, "/v2/account/activities/FILL", {"direction": "asc"})
            assert [r["order_id"] for r in rows] == [big["id"], big["id"], small["id"]]
            stream_ids = [str(u.execution_id) for u in updates if u.event != "new"]
            assert [ID_RE.match(r["id"]).group(2) for r in rows] == stream_ids  # type: ignore[union-attr]
            first = rows[0]
            assert set(first) == {
                "id",
                "activity_type",
                "transaction_time",
                "type",
                "price",
                "qty",
                "side",
                "symbol",
                "leaves_qty",
                "order_id",
                "cum_qty",
                "order_status",
            }
            expected = [
                ("partial_fill", "6", "6", "6", "partially_filled"),
                ("fill", "6", "12", "0", "filled"),
                ("fill", "3", "3", "0", "filled"),
            ]
            got = [
                (r["type"], r["qty"], r["cum_qty"], r["leaves_qty"], r["order_status"])
                for r in rows
            ]
            assert got == expected
            for r in rows:
                assert r["activity_type"] == "FILL"
                assert (r["price"], r["side"], r["symbol"]) == ("100.25", "buy", "AAPL")
                # the id's prefix is the transaction time in New York, to the millisecond
                when = datetime.fromisoformat(r["transaction_time"].replace("Z", "+00:00"))
                assert r["transaction_time"].endswith("Z")
                et = when.astimezone(NEW_YORK)
                prefix = ID_RE.match(r["id"]).group(1)  # type: ignore[union-attr]
                assert prefix == f"{et:%Y%m%d%H%M%S}{et.microsecond // 1000:03d}"
            # the list form answers the same; default direction is desc
            assert await listing(sim, "/v2/account/activities", {}) == rows[::-1]
            assert await listing(sim, "/v2/account/activities/FILL", {}) == rows[::-1]

    run(body)


def test_paging_with_page_token_in_both_directions() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            sim.set_price("IBM", Decimal("50"))
            await fills(sim, [1, 2, 10, 3, 4], symbol="IBM")  # 6 executions
            every = await listing(sim, "/v2/account/activities/FILL", {"direction": "asc"})
            assert len(every) == 6
            for direction, expected in (("asc", every), ("desc", every[::-1])):
                pages: list[list[dict[str, Any]]] = []
                params: dict[str, Any] = {"direction": direction, "page_size": 4}
                while True:
                    page = await listing(sim, "/v2/account/activities/FILL", params)
                    if not page:
                        break
                    pages.append(page)
                    params["page_token"] = page[-1]["id"]
                assert [len(p) for p in pages] == [4, 2], direction
                assert [r for p in pages for r in p] == expected, direction
            # a token in the middle: asc continues after it, desc with the older ones
            mid = every[2]["id"]
            asc = await listing(
                sim, "/v2/account/activities", {"direction": "asc", "page_token": mid}
            )
            assert asc == every[3:]
            desc = await listing(sim, "/v2/account/activities", {"page_token": mid})
            assert desc == every[:2][::-1]
            # page_size defaults to 100 and caps there; with date it may be larger
            assert len(await listing(sim, "/v2/account/activities", {"page_size": 100})) == 6
            today = every[0]["transaction_time"]
            day = datetime.fromisoformat(today.replace("Z", "+00:00")).astimezone(NEW_YORK)
            rows = await listing(
                sim, "/v2/account/activities", {"date": day.date().isoformat(), "page_size": 500}
            )
            assert len(rows) == 6

    run(body)


def test_filters_after_until_date_types_and_category() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            sim.set_price("MSFT", Decimal("30"))
            await fills(sim, [1, 1, 1, 1], symbol="MSFT")
            rows = await listing(sim, "/v2/account/activities/FILL", {"direction": "asc"})
            times = [r["transaction_time"] for r in rows]
            # after and until are exclusive bounds on transaction_time
            got = await listing(
                sim,
                "/v2/account/activities/FILL",
                {"direction": "asc", "after": times[0], "until": times[3]},
            )
            assert got == rows[1:3]
            got = await listing(sim, "/v2/account/activities", {"after": times[3]})
            assert got == []
            # a date alone is midnight New York; RFC 3339 with any zone works
            when = datetime.fromisoformat(times[0].replace("Z", "+00:00"))
            today = when.astimezone(NEW_YORK).date()
            tomorrow = (today + timedelta(days=1)).isoformat()
            assert await listing(sim, "/v2/account/activities", {"until": tomorrow}) == rows[::-1]
            assert await listing(sim, "/v2/account/activities", {"after": tomorrow}) == []
            offset = (when - timedelta(seconds=1)).astimezone(NEW_YORK).isoformat()
            assert len(await listing(sim, "/v2/account/activities", {"after": offset})) == 4
            assert (
                len(await listing(sim, "/v2/account/activities", {"date": today.isoformat()})) == 4
            )
            yesterday = (today - timedelta(days=1)).isoformat()
            assert await listing(sim, "/v2/account/activities", {"date": yesterday}) == []
            # types: FILL is the only kind the simulator has; other documented types are empty
            assert (
                len(await listing(sim, "/v2/account/activities", {"activity_types": "FILL,DIV"}))
                == 4
            )
            assert await listing(sim, "/v2/account/activities", {"activity_types": "DIV"}) == []
            assert await listing(sim, "/v2/account/activities/DIV", {}) == []
            assert (
                await listing(sim, "/v2/account/activities", {"category": "non_trade_activity"})
                == []
            )
            got = await listing(sim, "/v2/account/activities", {"category": "trade_activity"})
            assert len(got) == 4

    run(body)


def test_every_bad_parameter_gets_alpacas_422_and_the_server_keeps_serving() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("20"))
            await fills(sim, [1])
            # Alpaca's recorded answer for an unknown type in the path (alpaca_elixir cassette)
            r = await call(get, sim, "/v2/account/activities/FFFFF")
            assert r.status_code == 422
            assert r.json() == {"code": 40010001, "message": "invalid activity type: FFFFF"}
            unknown = "20240101093000000::00000000-0000-0000-0000-000000000000"
            cases: list[tuple[str, dict[str, str], str]] = [
                ("/v2/account/activities", {"activity_types": "FILL,NOPE"}, "NOPE"),
                ("/v2/account/activities", {"activity_types": ","}, "activity_types"),
                ("/v2/account/activities", {"category": "trades"}, "category"),
                (
                    "/v2/account/activities",
                    {"category": "trade_activity", "activity_types": "FILL"},
                    "category",
                ),
                ("/v2/account/activities/FILL", {"category": "trade_activity"}, "category"),
                ("/v2/account/activities", {"date": "yesterday"}, "date"),
                ("/v2/account/activities", {"date": "2024-01-02T25:00:00Z"}, "date"),
                ("/v2/account/activities", {"date": "2024-01-02", "after": "2024-01-01"}, "date"),
                ("/v2/account/activities", {"date": "2024-01-02", "until": "2024-01-03"}, "date"),
                ("/v2/account/activities", {"after": "soon"}, "after"),
                ("/v2/account/activities", {"after": "2024-01-02T10:00:00"}, "after"),
                ("/v2/account/activities", {"until": "2024-13-01"}, "until"),
                ("/v2/account/activities", {"direction": "up"}, "direction"),
                ("/v2/account/activities", {"page_size": "ten"}, "page_size"),
                ("/v2/account/activities", {"page_size": "0"}, "page_size"),
                ("/v2/account/activities", {"page_size": "101"}, "page_size"),
                ("/v2/account/activities", {"page_token": "not-an-id"}, "page_token"),
                ("/v2/account/activities", {"page_token": unknown}, "page_token"),
            ]
            for path, params, named in cases:
                r = await call(get, sim, path, params)
                assert r.status_code == 422, (path, params, r.text)
                body = r.json()
                assert body["code"] == 40010001, params
                assert named in body["message"], (params, body)
            r = await call(
                lambda: requests.get(f"{sim.trading_url}/v2/account/activities", timeout=5)
            )
            assert r.status_code == 401
            assert r.json()["code"] == 40110000
            # nothing broke: the fill is still served
            assert len(await listing(sim, "/v2/account/activities", {})) == 1

    run(body)


def test_through_alpaca_py_rest_session() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            assert not hasattr(TradingClient, "get_account_activities")  # alpaca-py 0.44
            client = TradingClient(KEY, SECRET, raw_data=True, url_override=sim.trading_url)
            sim.set_price("GOOG", Decimal("300"))
            [order] = await fills(sim, [10], symbol="GOOG")
            since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            rows = await call(
                client.get,
                "/account/activities/FILL",
                {"after": since, "direction": "asc", "page_size": 1},
            )
            assert [(r["type"], r["cum_qty"], r["order_id"]) for r in rows] == [
                ("partial_fill", "5", order["id"])
            ]
            more = await call(
                client.get,
                "/account/activities/FILL",
                {"after": since, "direction": "asc", "page_size": 1, "page_token": rows[0]["id"]},
            )
            assert [(r["type"], r["cum_qty"]) for r in more] == [("fill", "10")]
            try:
                await call(client.get, "/account/activities/NOPE")
            except APIError as err:
                assert err.status_code == 422
                assert err.code == 40010001
            else:
                raise AssertionError("an unknown activity type was accepted")

    run(body)
