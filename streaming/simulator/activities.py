"""Alpaca's account activities (``GET /v2/account/activities``): the simulator serves ``FILL``.

Every execution the book makes is kept as a :class:`FillActivity` and rendered exactly like
Alpaca's ``TradeActivity`` object (https://docs.alpaca.markets/docs/account-activities and the
Broker API sample at https://alpaca.markets/docs/api-references/broker-api/accounts/account-activities/)::

    {"id": "20210510100104650::88b5f678-fef5-447b-af15-f21e367e6d8c", "activity_type": "FILL",
     "transaction_time": "2021-05-10T14:01:04.650275Z", "type": "fill", "price": "128.33",
     "qty": "0.38962051", "side": "buy", "symbol": "AAPL", "leaves_qty": "0",
     "order_id": "fe060a1b-…", "cum_qty": "0.38962051", "order_status": "filled"}

The id is ``<transaction time in New York, YYYYMMDDHHMMSS + milliseconds>::<uuid>`` as in
Alpaca's samples (``20190524113406977`` for ``2019-05-24T15:34:06.977Z``); the simulator's uuid
is the ``execution_id`` its trading stream sent for that execution.

Query semantics (https://docs.alpaca.markets/reference/getaccountactivities and
``…/getaccountactivitiesbytype``): ``direction`` ``desc`` (default) or ``asc`` by transaction
time; ``page_size`` 1–100, default 100 (with ``date``: default all, no maximum); ``page_token``
an activity id: with ``asc`` the page begins with the activity immediately after it, with
``desc`` it ends before it (i.e. continues with the next older one). ``date`` cannot be combined
with ``after``/``until``.

Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from streaming.simulator.fmt import fmt_price, fmt_qty, iso

#: Alpaca's clock for activity ids and ``date``: US Eastern (the trading day).
NEW_YORK = ZoneInfo("America/New_York")

#: Every activity type Alpaca documents (Trading API account-activities page and alpaca-py's
#: ``ActivityType``). The simulator only ever has ``FILL``; the others answer ``[]``.
ACTIVITY_TYPES = frozenset(
    {
        "FILL",
        "TRANS",
        "MISC",
        "ACATC",
        "ACATS",
        "CFEE",
        "CIL",
        "CSD",
        "CSR",
        "CSW",
        "DIV",
        "DIVCGL",
        "DIVCGS",
        "DIVFEE",
        "DIVFT",
        "DIVNRA",
        "DIVROC",
        "DIVTW",
        "DIVTXEX",
        "DIVWH",
        "EXTRD",
        "FEE",
        "FXTRD",
        "INT",
        "INTNRA",
        "INTPNL",
        "INTTW",
        "JNL",
        "JNLC",
        "JNLS",
        "MA",
        "MEM",
        "NC",
        "OCT",
        "OPASN",
        "OPCSH",
        "OPEXC",
        "OPEXP",
        "OPTRD",
        "OPXRC",
        "PTC",
        "PTR",
        "REORG",
        "SC",
        "SPIN",
        "SPLIT",
        "SSO",
        "SSP",
        "SWP",
        "VOF",
        "WH",
    }
)
#: The ``category`` values; ``trade_activity`` is ``FILL``.
CATEGORIES = frozenset({"trade_activity", "non_trade_activity"})
#: Largest ``page_size`` without ``date`` (also the default).
MAX_PAGE_SIZE = 100

_ACTIVITY_ID = re.compile(r"^\d{17}::[0-9a-fA-F-]{1,64}$")


def activity_id(when: datetime, execution_id: str) -> str:
    """Return Alpaca's activity id for an execution.

    Args:
        when: The execution time (aware).
        execution_id: The execution's UUID string.

    Returns:
        ``"<YYYYMMDDHHMMSSmmm in New York>::<execution_id>"``.
    """
    et = when.astimezone(NEW_YORK)
    return f"{et:%Y%m%d%H%M%S}{et.microsecond // 1000:03d}::{execution_id}"


def is_activity_id(value: str) -> bool:
    """Tell whether a string has the shape of an activity id (``<17 digits>::<uuid>``).

    Args:
        value: The candidate, e.g. a ``page_token``.

    Returns:
        True for a well-formed id.
    """
    return bool(_ACTIVITY_ID.match(value))


@dataclass(frozen=True)
class FillActivity:
    """One execution as Alpaca's account activities report it (a ``TradeActivity``).

    Attributes:
        execution_id: The execution UUID (the trading stream's ``execution_id``).
        order_id: The order's id.
        symbol: The ticker.
        side: ``buy`` or ``sell``.
        qty: Shares of this execution (> 0).
        price: Execution price, USD per share.
        cum_qty: The order's filled shares after this execution.
        leaves_qty: The order's shares still to fill after it.
        order_status: The order's status right after it (``partially_filled``/``filled``).
        transaction_time: When it executed (aware, UTC).
    """

    execution_id: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    order_status: str
    transaction_time: datetime

    @cached_property
    def id(self) -> str:
        """Alpaca's activity id (see :func:`activity_id`), computed once.

        Returns:
            The id string.
        """
        return activity_id(self.transaction_time, self.execution_id)

    @property
    def type(self) -> str:
        """``fill`` when the order is complete after it, else ``partial_fill``.

        Returns:
            The trade activity type.
        """
        return "fill" if self.leaves_qty == 0 else "partial_fill"

    def to_json(self) -> dict[str, Any]:
        """Render the activity as Alpaca's JSON (decimal strings, RFC 3339 UTC time).

        Returns:
            The ``TradeActivity`` dict.
        """
        return {
            "id": self.id,
            "activity_type": "FILL",
            "transaction_time": iso(self.transaction_time),
            "type": self.type,
            "price": fmt_price(self.price),
            "qty": fmt_qty(self.qty),
            "side": self.side,
            "symbol": self.symbol,
            "leaves_qty": fmt_qty(self.leaves_qty),
            "order_id": self.order_id,
            "cum_qty": fmt_qty(self.cum_qty),
            "order_status": self.order_status,
        }


class ActivityQueryError(ValueError):
    """A query the endpoint answers with 422 (the message names the parameter)."""


@dataclass(frozen=True)
class ActivityQuery:
    """A validated activities query.

    Attributes:
        fills: Whether ``FILL`` activities are asked for (by path, ``activity_types`` or
            ``category``); False answers ``[]``.
        on_date: Only activities whose New York date is this one.
        after: Only activities strictly after this time.
        until: Only activities strictly before this time.
        direction: ``asc`` or ``desc`` by transaction time.
        page_size: At most this many; None = all (only allowed with ``on_date``).
        page_token: Continue after this activity id (see the module docstring).
    """

    fills: bool = True
    on_date: date | None = None
    after: datetime | None = None
    until: datetime | None = None
    direction: str = "desc"
    page_size: int | None = MAX_PAGE_SIZE
    page_token: str | None = None


def select_activities(
    activities: Sequence[FillActivity], query: ActivityQuery
) -> list[FillActivity]:
    """Answer a query over an account's activities (kept in execution order).

    Args:
        activities: The account's fill activities, oldest first.
        query: The validated query.

    Returns:
        One page of matching activities in the query's direction.

    Raises:
        ActivityQueryError: ``page_token`` names no activity of this account.
    """
    ordered = list(activities) if query.direction == "asc" else list(reversed(activities))
    if query.page_token is not None:
        ids = [a.id for a in ordered]
        try:
            start = ids.index(query.page_token) + 1
        except ValueError:
            raise ActivityQueryError(f"invalid page_token: {query.page_token!r}") from None
        ordered = ordered[start:]
    if not query.fills:
        return []
    rows = [a for a in ordered if _matches(a, query)]
    return rows if query.page_size is None else rows[: query.page_size]


def _matches(activity: FillActivity, query: ActivityQuery) -> bool:
    when = activity.transaction_time
    if query.on_date is not None and when.astimezone(NEW_YORK).date() != query.on_date:
        return False
    if query.after is not None and when <= query.after:
        return False
    return not (query.until is not None and when >= query.until)
