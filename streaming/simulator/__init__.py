"""A local Alpaca simulator: REST, trading stream and market data, driven by recorded prices.

The real alpaca-py clients (``TradingClient``, ``TradingStream``, ``StockDataStream``) work
against it unchanged through ``url_override``. It is the demo mode's embedded data source and
the end-to-end tests' broker. See ``docs/simulator.md``.

Example::

    sim = Simulator(month_s=20)
    sim.add_account("KEY", "SECRET")
    await sim.start(port=0)
    client = TradingClient("KEY", "SECRET", url_override=sim.trading_url)
"""

from streaming.simulator.book import SimAccount, SimAPIError, SimOrder, SimPosition
from streaming.simulator.prices import MonthlyClose, PriceReplay, load_series
from streaming.simulator.server import Simulator

__all__ = [
    "MonthlyClose",
    "PriceReplay",
    "SimAPIError",
    "SimAccount",
    "SimOrder",
    "SimPosition",
    "Simulator",
    "load_series",
]
