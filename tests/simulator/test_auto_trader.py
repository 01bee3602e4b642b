import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from alpaca.trading.client import TradingClient
from alpaca.trading.models import TradeAccount

from streaming.simulator import Simulator
from tests.simulator.helpers import KEY, call, run, started, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_auto_trader_opens_grows_and_reduces_positions() -> None:
    async def body() -> None:
        async with started(auto_trade_every_s=1000.0, fill_delay_s=0.0) as h:
            sim = h.sim
            acct = sim.account(KEY)
            sides = []
            for _ in range(40):
                order = sim.auto_trade_once(acct)
                if order is not None:
                    sides.append(order["side"])
                await wait_until(lambda: not any(o.is_open for o in acct.orders.values()))
            assert sides.count("buy") > sides.count("sell") > 0
            assert acct.positions, "auto trader should hold something"
            assert all(p.qty > 0 for p in acct.positions.values()), "never shorts"
            assert acct.cash > 0
            assert any(o.qty >= 10 for o in acct.orders.values())  # partial fills show up too

    run(body)


def test_auto_trader_is_deterministic() -> None:
    def decisions() -> list[tuple[str, str, str]]:
        sim = Simulator(auto_trade=False, fill_delay_s=0.0, jitter_bps=0.0, seed=3)
        acct = sim.add_account("A", "B")
        out = []

        async def go() -> None:
            for _ in range(10):
                o = sim.auto_trade_once(acct)
                if o:
                    out.append((o["symbol"], o["side"], o["qty"]))
                await asyncio.sleep(0.001)

        asyncio.run(go())
        return out

    assert decisions() == decisions()


def test_auto_trader_runs_on_its_timer_only_for_auto_accounts() -> None:
    async def body() -> None:
        async with started(auto_trade=True, auto_trade_every_s=0.05) as h:
            sim = h.sim
            quiet = sim.add_account("QUIET", "q", auto_trade=False)
            await wait_until(lambda: len(sim.account(KEY).orders) >= 3, what="auto orders")
            await wait_until(lambda: bool(sim.account(KEY).positions), what="auto fills")
            assert quiet.orders == {}

    run(body)


def test_cli_prints_urls_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streaming.simulator",
            "--port",
            "0",
            "--account",
            "CLIKEY:CLISECRET",
            "--no-auto-trade",
            "--month-s",
            "5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        rest_url = lines[0].split()[-1]
        assert rest_url.startswith("http://127.0.0.1:")
        assert lines[1].split()[-1] == rest_url.replace("http", "ws") + "/stream"
        assert lines[2].split()[-1] == rest_url.replace("http", "ws") + "/v2/iex"
        account = TradingClient("CLIKEY", "CLISECRET", url_override=rest_url).get_account()
        assert isinstance(account, TradeAccount)
        assert account.cash == "100000.00"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_set_price_validation() -> None:
    async def body() -> None:
        async with started() as h:
            import pytest

            with pytest.raises(KeyError):
                h.sim.set_price("NOPE", Decimal(1))
            with pytest.raises(ValueError):
                h.sim.set_price("AAPL", Decimal(0))
            assert (await call(h.client().get_account)).cash == "100000.00"

    run(body)
