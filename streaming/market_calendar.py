"""The exchange's trading calendar (NYSE sessions, holidays and early closes included).

A thin wrapper over the well-kept ``exchange_calendars`` package (calendar ``XNYS``), imported
lazily: it pulls in pandas and takes about half a second to load, so the bridge builds a
:class:`MarketCalendar` in an executor thread, never on the IOLoop. Alpaca's ``last_equity`` is
the equity at the previous session's close (16:00 ET, 13:00 ET on early-close days), so the
close and the next open are when a broker account's trading day changes.
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["MarketCalendar"]


class MarketCalendar:
    """Session boundaries of one exchange.

    Args:
        code: an ``exchange_calendars`` code; ``"XNYS"`` (NYSE) is what US equities at Alpaca
            follow.

    Raises:
        ImportError: ``exchange_calendars`` is not installed.
        exchange_calendars.errors.InvalidCalendarName: unknown ``code``.
    """

    def __init__(self, code: str = "XNYS") -> None:
        # exchange_calendars 4.x still reads tz-aware ``.values``, which pandas 3.1 deprecates
        # with a warning on every calendar built; it changes nothing for us.
        warnings.filterwarnings(
            "ignore", message=r".*values returning an ndarray that drops timezone", module="pandas"
        )
        import exchange_calendars

        self.code = code
        self._calendar: Any = exchange_calendars.get_calendar(code)

    @staticmethod
    def _minute(moment: datetime) -> Any:
        import pandas

        if moment.tzinfo is None:
            raise ValueError(f"moment has no UTC offset: {moment!r}")
        return pandas.Timestamp(moment.astimezone(UTC)).floor("min")

    def next_close(self, after: datetime) -> datetime:
        """Return the first session close strictly after ``after`` (aware UTC datetime)."""
        return self._calendar.next_close(self._minute(after)).to_pydatetime()

    def next_open(self, after: datetime) -> datetime:
        """Return the first session open strictly after ``after`` (aware UTC datetime)."""
        return self._calendar.next_open(self._minute(after)).to_pydatetime()

    def session_after(self, day: date) -> date:
        """Return the trading session date following ``day`` (skips weekends and holidays)."""
        import pandas

        label = pandas.Timestamp(day)
        if self._calendar.is_session(label):
            return self._calendar.next_session(label).date()
        return self._calendar.date_to_session(label, direction="next").date()
