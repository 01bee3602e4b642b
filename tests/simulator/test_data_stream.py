import asyncio
import logging
from decimal import Decimal

import msgpack
import pytest
import websockets
from alpaca.data.models import Quote, Trade

from tests.simulator.helpers import KEY, SECRET, call, run, started, wait_until


def test_trades_arrive_with_replayed_prices_and_unsubscribe_stops_them() -> None:
    async def body() -> None:
        async with started(tick_s=0.03, month_s=0.3) as h:
            sim = h.sim
            stream, items = h.data_stream(["AAPL", "MSFT"])
            await wait_until(
                lambda: {t.symbol for t in items} == {"AAPL", "MSFT"}, what="trades for both"
            )
            trades = list(items)
            assert all(isinstance(t, Trade) for t in trades)
            assert {t.symbol for t in items} <= {"AAPL", "MSFT"}
            assert all(t.timestamp.tzinfo is not None for t in trades)
            for t in trades:
                replayed = {
                    float(sim.replay.price_at(t.symbol, k * sim.tick_s))
                    for k in range(sim.tick + 1)
                }
                assert t.price in replayed
            ids = [t.id for t in trades]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)

            sim.set_price("AAPL", Decimal("321.09"))
            await wait_until(lambda: any(t.price == 321.09 for t in items), what="set_price")

            await call(stream.unsubscribe_trades, "AAPL")  # from another thread than the stream's
            await wait_until(
                lambda: all("AAPL" not in s["trades"] for s in sim.data_subscriptions()),
                what="server-side unsubscribe",
            )
            assert any("MSFT" in s["trades"] for s in sim.data_subscriptions())
            sim.resume_replay()
            n_aapl = sum(t.symbol == "AAPL" for t in items)
            n_msft = sum(t.symbol == "MSFT" for t in items)
            await wait_until(lambda: sum(t.symbol == "MSFT" for t in items) > n_msft + 3)
            assert sum(t.symbol == "AAPL" for t in items) == n_aapl

            await call(stream.subscribe_trades, items_handler(items), "IBM")
            await wait_until(lambda: any(t.symbol == "IBM" for t in items), what="IBM added")

    run(body)


def items_handler(items: list) -> object:
    async def on_item(item: object) -> None:
        items.append(item)

    return on_item


def test_quotes_when_subscribed() -> None:
    async def body() -> None:
        async with started() as h:
            _, items = h.data_stream(["IBM"], quotes=True)
            await wait_until(lambda: any(isinstance(i, Quote) for i in items), what="quote")
            q = next(i for i in items if isinstance(i, Quote))
            assert q.symbol == "IBM"
            assert q.bid_price < q.ask_price

    run(body)


def test_pause_and_drop_data_stream() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            _, items = h.data_stream(["GOOG"])
            await wait_until(lambda: len(items) > 2)
            sim.pause_streams(True)
            await asyncio.sleep(0.1)
            n = len(items)
            await asyncio.sleep(0.3)
            assert len(items) == n
            sim.pause_streams(False)
            await wait_until(lambda: len(items) > n + 2, what="resume")
            await sim.drop_stream_connections()
            assert sim.data_subscriptions() == []
            await wait_until(lambda: len(sim.data_subscriptions()) == 1, what="reconnect")
            n = len(items)
            await wait_until(lambda: len(items) > n + 2, what="data after reconnect")

    run(body)


def test_wrong_key_fails_auth_with_alpaca_client(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with started() as h:
            _, items = h.data_stream(["AAPL"], secret="wrong")
            await wait_until(
                lambda: any("auth failed" in r.getMessage() for r in caplog.records),
                what="auth failure logged by alpaca-py",
            )
            assert items == []
            assert h.sim.data_subscriptions() == []

    with caplog.at_level(logging.ERROR, logger="alpaca.data.live.websocket"):
        run(body)


async def _recv(ws: websockets.ClientConnection) -> list:
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, bytes)
    return msgpack.unpackb(frame)


def test_raw_msgpack_protocol() -> None:
    async def body() -> None:
        async with started() as h:
            hdrs = {"Content-Type": "application/msgpack"}
            url = h.sim.data_stream_url.replace("/v2/iex", "/v2/sip")
            async with websockets.connect(url, additional_headers=hdrs) as ws:
                assert await _recv(ws) == [{"T": "success", "msg": "connected"}]
                await ws.send(msgpack.packb({"action": "subscribe", "trades": ["AAPL"]}))
                assert await _recv(ws) == [{"T": "error", "code": 401, "msg": "not authenticated"}]
                await ws.send(b"\xc1garbage")
                assert (await _recv(ws))[0]["code"] == 400
                await ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
                assert await _recv(ws) == [{"T": "success", "msg": "authenticated"}]
                await ws.send(
                    msgpack.packb({"action": "subscribe", "trades": ["aapl"], "quotes": ["IBM"]})
                )
                sub = (await _recv(ws))[0]
                assert sub["T"] == "subscription"
                assert sub["trades"] == ["AAPL"] and sub["quotes"] == ["IBM"] and sub["bars"] == []
                await ws.send(msgpack.packb({"action": "subscribe", "trades": "AAPL"}))
                assert (await _recv(ws))[0] == {"T": "error", "code": 400, "msg": "invalid syntax"}
                seen: set[str] = set()
                while seen != {"t", "q"}:
                    for m in await _recv(ws):
                        if m["T"] in ("t", "q"):
                            seen.add(m["T"])
                            assert isinstance(m["t"], msgpack.Timestamp)
                            assert m["S"] == ("AAPL" if m["T"] == "t" else "IBM")
                        if m["T"] == "t":
                            assert isinstance(m["p"], float)
                            assert set(m) >= {"i", "x", "p", "s", "c", "z", "t"}

            async with websockets.connect(url, additional_headers=hdrs) as ws:
                await _recv(ws)
                await ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": "nope"}))
                assert await _recv(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
                await asyncio.wait_for(ws.wait_closed(), 5)

    run(body)


def test_json_mode_without_msgpack_content_type() -> None:
    import json

    async def body() -> None:
        async with started() as h:
            async with websockets.connect(h.sim.data_stream_url) as ws:

                async def recv() -> list:
                    frame = await asyncio.wait_for(ws.recv(), 5)
                    assert isinstance(frame, str)
                    return json.loads(frame)

                assert await recv() == [{"T": "success", "msg": "connected"}]
                await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
                assert await recv() == [{"T": "success", "msg": "authenticated"}]
                await ws.send(json.dumps({"action": "subscribe", "trades": ["*"]}))
                assert (await recv())[0]["trades"] == ["*"]
                symbols: set[str] = set()
                while len(symbols) < 5:
                    for m in await recv():
                        assert m["T"] == "t"
                        assert m["t"].endswith("Z")
                        symbols.add(m["S"])

    run(body)
