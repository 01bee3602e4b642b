from decimal import Decimal

from streaming.simulator import PriceReplay, Simulator, load_series
from tests.simulator.helpers import run, started


def test_csv_holds_the_real_series() -> None:
    series = load_series()
    assert sorted(series) == ["AAPL", "AMZN", "GOOG", "IBM", "MSFT"]
    assert len(series["AAPL"]) == 123
    assert series["AAPL"][0].month.isoformat() == "2000-01-01"
    assert series["AAPL"][0].price == Decimal("25.94")
    assert series["AAPL"][-1].price == Decimal("223.02")
    assert series["MSFT"][0].price == Decimal("39.81")
    assert series["GOOG"][0].month.isoformat() == "2004-08-01"
    assert series["GOOG"][0].price == Decimal("102.37")


def test_interpolation_between_monthly_closes() -> None:
    replay = PriceReplay(month_s=20.0, jitter_bps=0)
    assert replay.price_at("AAPL", 0) == Decimal("25.94")  # Jan 2000 close
    assert replay.price_at("AAPL", 20.0) == Decimal("28.66")  # Feb 2000 close
    assert replay.price_at("AAPL", 10.0) == Decimal("27.30")  # halfway
    assert replay.price_at("AAPL", 5.0) == Decimal("26.62")  # a quarter: 25.94 + 0.68
    assert replay.price_at("GOOG", 0) == Decimal("102.37")


def test_replay_loops_smoothly() -> None:
    replay = PriceReplay(month_s=1.0, jitter_bps=0)
    n = len(replay.series["AAPL"])
    assert replay.price_at("AAPL", n - 1) == Decimal("223.02")  # last close
    assert replay.price_at("AAPL", n - 0.5) == Decimal("124.48")  # halfway back to the start
    assert replay.price_at("AAPL", n) == Decimal("25.94")  # looped
    assert replay.price_at("AAPL", n + 1) == Decimal("28.66")


def test_jitter_is_small_deterministic_and_zero_at_closes() -> None:
    a = PriceReplay(month_s=20.0, jitter_bps=5, seed=1)
    b = PriceReplay(month_s=20.0, jitter_bps=5, seed=1)
    flat = PriceReplay(month_s=20.0, jitter_bps=0)
    assert a.price_at("IBM", 40.0) == flat.price_at("IBM", 40.0)
    for i in range(1, 40):
        t = i * 0.5
        assert a.price_at("IBM", t) == b.price_at("IBM", t)
        diff = abs(a.price_at("IBM", t) - flat.price_at("IBM", t))
        assert diff <= flat.price_at("IBM", t) * Decimal("0.0005") + Decimal("0.01")


def test_prices_are_cents() -> None:
    replay = PriceReplay(month_s=7.0)
    for i in range(200):
        for sym in replay.symbols:
            p = replay.price_at(sym, i * 0.37)
            assert p == p.quantize(Decimal("0.01"))


def test_simulator_first_tick_and_replay_advance() -> None:
    async def body() -> None:
        async with started(tick_s=0.02, month_s=0.2) as h:
            sim = h.sim
            assert sim.price("AAPL") == Decimal("25.94")
            assert sim.price("msft") == Decimal("39.81")
            await _ticks(sim, 3)
            n = sim.tick
            assert sim.price("AAPL") == sim.replay.price_at("AAPL", n * sim.tick_s)
            assert sim.price("AAPL") != Decimal("25.94")

    run(body)


def test_set_price_pauses_and_resume_replay() -> None:
    async def body() -> None:
        async with started(tick_s=0.02, month_s=0.2) as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("321.456"))
            assert sim.price("AAPL") == Decimal("321.46")
            await _ticks(sim, 3)
            assert sim.price("AAPL") == Decimal("321.46")
            sim.resume_replay("AAPL")
            await _ticks(sim, 2)
            assert sim.price("AAPL") == sim.replay.price_at("AAPL", sim.tick * sim.tick_s)

    run(body)


async def _ticks(sim: Simulator, n: int) -> None:
    from tests.simulator.helpers import wait_until

    target = sim.tick + n
    await wait_until(lambda: sim.tick >= target, 5, "ticks")
