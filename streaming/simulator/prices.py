"""Recorded monthly closes and their time-compressed replay.

The series in ``data/stocks.csv`` are real monthly closes (2000–2010) of AAPL, AMZN, GOOG,
IBM and MSFT (see ``data/SOURCE.md``). :class:`PriceReplay` turns them into a tick stream:
every month lasts ``month_s`` seconds, prices are linearly interpolated between consecutive
closes, a tiny deterministic jitter (zero exactly at each monthly close) makes the ticks look
alive, and each series loops by interpolating from its last close back to its first over one
month. Each symbol replays its own series from its own first month (GOOG starts in Aug 2004).
"""

from __future__ import annotations

import csv
import math
import zlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from streaming.simulator.fmt import to_cents

DATA_FILE = Path(__file__).with_name("data") / "stocks.csv"


@dataclass(frozen=True)
class MonthlyClose:
    """One recorded monthly close.

    Attributes:
        month: The first day of the month the close belongs to.
        price: The close in USD per share.
    """

    month: date
    price: Decimal


def load_series(path: Path = DATA_FILE) -> dict[str, list[MonthlyClose]]:
    """Load the monthly closes from a ``symbol,date,price`` CSV file.

    Args:
        path: The CSV file; defaults to the bundled ``data/stocks.csv``.

    Returns:
        The closes per symbol, oldest first.

    Raises:
        ValueError: If the file has no rows or a row is malformed.
    """
    series: dict[str, list[MonthlyClose]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                symbol = row["symbol"].strip().upper()
                close = MonthlyClose(date.fromisoformat(row["date"]), Decimal(row["price"]))
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"malformed price row {row!r}") from exc
            series.setdefault(symbol, []).append(close)
    if not series:
        raise ValueError(f"no prices in {path}")
    for closes in series.values():
        closes.sort(key=lambda c: c.month)
    return series


class PriceReplay:
    """Deterministic, time-compressed replay of monthly closes.

    The replay is a pure function of elapsed replay time, so it is easy to test: use
    :meth:`price_at` with ``elapsed_s = tick_number * tick_s``.
    """

    def __init__(
        self,
        series: dict[str, list[MonthlyClose]] | None = None,
        *,
        month_s: float = 20.0,
        jitter_bps: float = 5.0,
        seed: int = 7,
    ) -> None:
        """Create a replay.

        Args:
            series: Monthly closes per symbol; defaults to the bundled CSV.
            month_s: How many seconds of replay one recorded month lasts (> 0).
            jitter_bps: Maximum jitter in basis points of the price (0 disables it). The
                jitter is zero at every monthly close.
            seed: Seed of the deterministic jitter.

        Raises:
            ValueError: If ``month_s`` is not positive or a series is empty.
        """
        if month_s <= 0:
            raise ValueError("month_s must be > 0")
        self.series = series if series is not None else load_series()
        for symbol, closes in self.series.items():
            if not closes:
                raise ValueError(f"empty price series for {symbol}")
        self.month_s = month_s
        self.jitter_bps = jitter_bps
        self.seed = seed

    @property
    def symbols(self) -> list[str]:
        """The replayed symbols, sorted.

        Returns:
            The symbol list.
        """
        return sorted(self.series)

    def month_at(self, symbol: str, elapsed_s: float) -> tuple[MonthlyClose, MonthlyClose, float]:
        """Locate the replay position of a symbol.

        Args:
            symbol: The ticker.
            elapsed_s: Seconds of replay time since the start.

        Returns:
            The close the interval starts at, the close it goes to, and the fraction
            (0 ≤ f < 1) of the interval elapsed.

        Raises:
            KeyError: If the symbol is not replayed.
        """
        closes = self.series[symbol]
        months = elapsed_s / self.month_s
        whole = math.floor(months)
        frac = months - whole
        idx = whole % len(closes)
        return closes[idx], closes[(idx + 1) % len(closes)], frac

    def price_at(self, symbol: str, elapsed_s: float) -> Decimal:
        """Return the replayed price of a symbol at a replay time, rounded to cents.

        Args:
            symbol: The ticker.
            elapsed_s: Seconds of replay time since the start (``tick * tick_s``).

        Returns:
            The price in USD per share (≥ 0.01).

        Raises:
            KeyError: If the symbol is not replayed.
        """
        start, end, frac = self.month_at(symbol, elapsed_s)
        frac_d = Decimal(repr(round(frac, 9)))
        price = start.price + (end.price - start.price) * frac_d
        if self.jitter_bps and frac > 0:
            price *= 1 + Decimal(repr(round(self._jitter(symbol, elapsed_s, frac), 9)))
        return max(to_cents(price), Decimal("0.01"))

    def _jitter(self, symbol: str, elapsed_s: float, frac: float) -> float:
        """Return a deterministic relative jitter, zero at monthly closes."""
        key = f"{self.seed}:{symbol}:{round(elapsed_s * 1000)}".encode()
        unit = (zlib.crc32(key) / 0xFFFFFFFF) * 2.0 - 1.0
        return unit * math.sin(math.pi * frac) * self.jitter_bps / 10_000.0
