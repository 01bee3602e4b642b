"""Test helpers: run a Simulator on an asyncio loop and alpaca-py streams in threads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

from alpaca.data.live import StockDataStream
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream

from streaming.simulator import Simulator

KEY = "PKTESTKEY"
SECRET = "test-secret"


def run(fn: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    """Run an async test body on a fresh loop with an overall timeout."""

    async def main() -> None:
        await asyncio.wait_for(fn(), timeout)

    asyncio.run(main())


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (alpaca-py REST, subscribe_*) in the default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``pred`` without blocking the loop; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def buy(sim: Simulator, symbol: str, qty: int) -> dict[str, Any]:
    """A market buy of ``qty`` ``symbol`` for the test account ``KEY``; the order's REST shape."""
    return sim.submit_order(KEY, symbol=symbol, qty=Decimal(qty), side="buy")


async def all_filled(sim: Simulator, orders: list[dict[str, Any]], timeout: float = 20.0) -> None:
    """Wait until every one of ``orders`` is filled at the simulator."""
    acct = sim.account(KEY)
    await wait_until(
        lambda: all(acct.get_order(o["id"]).status == "filled" for o in orders),
        timeout,
        "orders filled at the broker",
    )


class StreamThread:
    """An alpaca-py stream running ``run()`` in its own thread."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.thread = threading.Thread(target=stream.run, daemon=True)

    def start(self) -> StreamThread:
        self.thread.start()
        return self

    async def stop(self) -> None:
        """Ask the stream to stop (from this thread, never the stream's loop)."""
        if not self.thread.is_alive():
            return
        await wait_until(lambda: self.stream._loop is not None, 5, "stream loop")
        fut = asyncio.run_coroutine_threadsafe(self.stream.stop_ws(), self.stream._loop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(fut), 5)

    async def join(self, timeout: float = 10.0) -> None:
        await call(self.thread.join, timeout)
        assert not self.thread.is_alive(), "stream thread did not stop"


class Harness:
    """A started simulator plus the clients and stream threads a test created."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.streams: list[StreamThread] = []

    def client(self, key: str = KEY, secret: str = SECRET) -> TradingClient:
        return TradingClient(key, secret, url_override=self.sim.trading_url)

    def trading_stream(
        self, key: str = KEY, secret: str = SECRET
    ) -> tuple[TradingStream, list[Any]]:
        """Start a TradingStream whose handler appends every TradeUpdate to a list."""
        events: list[Any] = []
        stream = TradingStream(key, secret, url_override=self.sim.trading_stream_url)
        stream._reconnect_min_backoff = 0.05  # fast reconnects in tests

        async def on_update(update: Any) -> None:
            events.append(update)

        stream.subscribe_trade_updates(on_update)
        self.streams.append(StreamThread(stream).start())
        return stream, events

    def data_stream(
        self, symbols: list[str], key: str = KEY, secret: str = SECRET, quotes: bool = False
    ) -> tuple[StockDataStream, list[Any]]:
        """Start a StockDataStream (trades, optionally quotes) collecting into a list."""
        items: list[Any] = []
        stream = StockDataStream(key, secret, url_override=self.sim.data_stream_url)
        stream._reconnect_min_backoff = 0.05

        async def on_item(item: Any) -> None:
            items.append(item)

        stream.subscribe_trades(on_item, *symbols)
        if quotes:
            stream.subscribe_quotes(on_item, *symbols)
        self.streams.append(StreamThread(stream).start())
        return stream, items


@contextlib.asynccontextmanager
async def started(cash: Decimal = Decimal("100000"), **kwargs: Any) -> AsyncIterator[Harness]:
    """Start a simulator (no auto trading by default) with account KEY/SECRET."""
    params: dict[str, Any] = {
        "tick_s": 0.05,
        "month_s": 1.0,
        "fill_delay_s": 0.05,
        "auto_trade": False,
        "jitter_bps": 0.0,
    }
    params.update(kwargs)
    sim = Simulator(**params)
    sim.add_account(KEY, SECRET, cash)
    await sim.start()
    harness = Harness(sim)
    try:
        yield harness
    finally:
        for st in harness.streams:
            await st.stop()
        await sim.stop()
        for st in harness.streams:
            await st.join()


async def trading_stream_ready(sim: Simulator, n: int = 1) -> None:
    """Wait until ``n`` trading-stream connections listen to trade_updates."""
    await wait_until(
        lambda: sim.trading_listeners() >= n,
        10,
        "trading stream listening",
    )
