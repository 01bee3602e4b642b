"""Catch-up: the fills and order updates a broker account had while no bridge was listening.

A bridge that takes an account over (a lease hand-over, a restart) first asks Alpaca's REST API
what happened since the last event published for that account, publishes it, and only then
streams. :func:`catch_up` does the asking; it is synchronous (alpaca-py's REST client is), so
call it from an executor, and pure apart from the GET requests it makes through ``client``.

Sources (Alpaca's documentation; alpaca-py 0.44's ``TradingClient`` has no method for account
activities, alpaca-py issues #232/#595, so they are read with the client's own REST session,
``client.get(path, params)``, which returns the raw JSON):

* ``GET /v2/account/activities/FILL`` (https://docs.alpaca.markets/reference/getaccountactivitiesbytype):
  one ``TradeActivity`` per execution, ``{"id": "<time>::<uuid>", "transaction_time", "type":
  "fill"|"partial_fill", "price", "qty", "side", "symbol", "leaves_qty", "cum_qty", "order_id",
  "order_status"}``; paged with ``direction=asc``, ``page_size`` ≤ 100 and ``page_token`` = the
  last id received (the next page begins immediately after it); ``after`` filters by time.
* ``GET /v2/orders?status=all&after=…&direction=asc`` (orders submitted after a time) and
  ``GET /v2/orders/{id}`` (https://docs.alpaca.markets/reference/getallorders).

De-duplication. A fill is skipped when its execution id (the uuid after ``::`` in the activity
id) *or* its fill key ``"<order id>:<cum_qty>"`` is in ``seen``. The simulator uses the trading
stream's ``execution_id`` as that uuid; Alpaca does not document that the two are equal, so a
bridge should remember, for every fill it publishes, both the stream's ``execution_id`` and
:func:`fill_key` of ``(order.id, order.filled_qty)``; the latter is what an activity carries on
either broker (``order_id``, ``cum_qty``).

Order of events: by broker time; for one order ``new`` before its fills (by ``cum_qty``, since
Alpaca may list executions of the same millisecond out of order, Alpaca-API issue #170) before
its final ``canceled``/``expired``/… event.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from streaming.money import fmt_qty

__all__ = [
    "CatchUp",
    "CatchUpError",
    "CatchUpEvent",
    "CaughtUpFill",
    "RestClient",
    "catch_up",
    "fill_key",
]

#: Largest page Alpaca serves for account activities without ``date``.
ACTIVITIES_PAGE_MAX = 100
#: Largest ``limit`` of ``GET /v2/orders``.
ORDERS_PAGE_MAX = 500
#: Order statuses that end an order without a fill, each also the name of its trade_updates
#: event (https://docs.alpaca.markets/docs/websocket-streaming#trade-updates).
_FINAL_EVENTS = frozenset(
    {"canceled", "expired", "rejected", "replaced", "done_for_day", "stopped", "suspended"}
)
#: The timestamp field of an order that tells when it reached each final status.
_FINAL_TIME_FIELD = {
    "canceled": "canceled_at",
    "expired": "expired_at",
    "rejected": "failed_at",
    "replaced": "replaced_at",
}
_NEW_STATUSES = frozenset({"new", "accepted", "pending_new"})
_PHASE_NEW, _PHASE_FILL, _PHASE_FINAL = 0, 1, 2


class RestClient(Protocol):
    """What catch-up needs of a REST client: alpaca-py's ``RESTClient.get`` (raw JSON).

    ``alpaca.trading.client.TradingClient(key, secret, raw_data=True, url_override=…)`` is
    one; ``path`` is relative to ``/v2`` (``"/orders"``).
    """

    def get(self, path: str, data: dict[str, Any] | None = None) -> Any:
        """GET ``/v2`` + ``path`` with query parameters ``data``; return the decoded JSON."""
        ...


class CatchUpError(Exception):
    """The broker's answers cannot be caught up from (malformed, or paging never ends)."""


def fill_key(order_id: str, cum_qty: Decimal | str) -> str:
    """Return the broker-neutral key of an execution: the order and its filled shares after it.

    The same key :class:`streaming.portfolio.PortfolioState` gives a fill that comes without
    an ``execution_id``.

    Args:
        order_id: Alpaca's order id.
        cum_qty: The order's cumulative filled quantity right after the execution (shares;
            a trade update's ``order.filled_qty``, an activity's ``cum_qty``).

    Returns:
        ``"<order_id>:<cum_qty>"`` with the quantity as :func:`streaming.money.fmt_qty` writes
        it (``"10"``, ``"0.5"``).

    Raises:
        ValueError: ``cum_qty`` is not a finite number.
    """
    return f"{order_id}:{fmt_qty(cum_qty)}"


@dataclass(frozen=True)
class CaughtUpFill:
    """One execution read from ``GET /v2/account/activities/FILL``.

    Attributes:
        execution_id: The uuid part of the activity id.
        activity_id: Alpaca's activity id (``<time>::<uuid>``).
        order_id: The order's id.
        symbol: The ticker.
        side: ``buy`` or ``sell`` (as Alpaca sends it).
        qty: Shares of this execution (> 0).
        price: USD per share.
        cum_qty: The order's filled shares after it.
        leaves_qty: The order's shares left after it.
        partial: True for ``partial_fill``.
        order_status: Alpaca's ``order_status`` field, or None when absent.
        timestamp: ``transaction_time`` (aware UTC).
    """

    execution_id: str
    activity_id: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    partial: bool
    order_status: str | None
    timestamp: datetime

    @property
    def key(self) -> str:
        """The fill key (:func:`fill_key` of order id and ``cum_qty``).

        Returns:
            ``"<order_id>:<cum_qty>"``.
        """
        return fill_key(self.order_id, self.cum_qty)


@dataclass(frozen=True)
class CatchUpEvent:
    """One trade update to publish, rebuilt from REST.

    Attributes:
        event: The ``trade_updates`` event name (``new``, ``partial_fill``, ``fill``,
            ``canceled``, …).
        timestamp: When it happened at the broker (aware UTC).
        order: Alpaca's order JSON as it was right after this event: for a fill, the order's
            current JSON with ``status``, ``filled_qty`` (= ``cum_qty``), ``filled_avg_price``
            (exact when every fill of the order is known, else the broker's own on its last
            fill, else null), ``updated_at``, ``filled_at`` and ``canceled_at`` as of the fill;
            for ``new``, status ``new`` with nothing filled; for a final event, the current JSON.
        fill: The execution, for ``fill``/``partial_fill``; else None.
    """

    event: str
    timestamp: datetime
    order: Mapping[str, Any]
    fill: CaughtUpFill | None = None

    def trade_update(self) -> dict[str, Any]:
        """Return the ``data`` of the ``trade_updates`` message the stream would have sent.

        Returns:
            ``{"event", "timestamp", "order"}`` plus, for fills, ``execution_id``, ``price``,
            ``qty`` (decimal strings). ``position_qty`` is absent: activities do not carry
            it (:meth:`streaming.portfolio.PortfolioState.apply_trade_update` accepts that).
        """
        data: dict[str, Any] = {
            "event": self.event,
            "timestamp": _iso(self.timestamp),
            "order": dict(self.order),
        }
        if self.fill is not None:
            data["execution_id"] = self.fill.execution_id
            data["price"] = str(self.fill.price)
            data["qty"] = str(self.fill.qty)
        return data


@dataclass
class CatchUp:
    """What :func:`catch_up` found.

    Attributes:
        events: The trade updates to publish, in order.
        fills: The new executions, in order (the ``fill`` of the fill events).
        seen: ``seen`` as given plus the execution id and fill key of every new fill: pass it
            to the next catch-up.
        resume_at: The ``since`` of the next catch-up: the latest event time (``since`` as
            given when nothing happened).
        requests: How many GET requests were made.
    """

    events: list[CatchUpEvent]
    fills: list[CaughtUpFill]
    seen: set[str]
    resume_at: datetime
    requests: int = 0


def catch_up(
    client: RestClient,
    *,
    since: datetime,
    seen: Collection[str] = (),
    open_order_ids: Iterable[str] = (),
    overlap_s: float = 5.0,
    page_size: int = ACTIVITIES_PAGE_MAX,
    max_requests: int = 1000,
) -> CatchUp:
    """Read what happened to an account after ``since``: fills, then order updates, in order.

    Contract: ``since`` is the broker time of the last trade update published for the account
    (an execution's or an order update's ``timestamp``); ``seen`` holds the execution ids and
    fill keys (:func:`fill_key`) of the fills published at or after ``since - overlap_s``.
    Then every execution after ``since`` is returned exactly once, and every order update after
    ``since`` that REST can still show (orders submitted in the window, orders that filled in it,
    and the ``open_order_ids`` the caller held as open, which may have been canceled meanwhile).

    Fills are read from ``since - overlap_s`` (``after`` is sent in whole seconds) so that a
    stream timestamp slightly later than the activity's ``transaction_time`` loses nothing; the
    overlap is removed by ``seen``. Order events are kept only when strictly after ``since``.

    Args:
        client: The account's REST client (alpaca-py ``TradingClient`` with ``raw_data=True``,
            or anything with its ``get(path, data)``).
        since: Aware datetime (naive is taken as UTC).
        seen: Execution ids and fill keys already published.
        open_order_ids: Orders the caller holds as open; each is re-read by id (404 skipped).
        overlap_s: Seconds before ``since`` to re-read fills from (≥ 0).
        page_size: Activities per request (1–100).
        max_requests: Give up after this many GET requests.

    Returns:
        The :class:`CatchUp` (events, fills, the updated ``seen`` and the next ``since``).

    Raises:
        ValueError: A bad argument.
        CatchUpError: A malformed broker answer (the message names the field), or more than
            ``max_requests`` requests.
        Exception: Whatever ``client.get`` raises (alpaca-py's ``APIError``, network errors);
            nothing was published, so the caller retries.
    """
    if not 1 <= page_size <= ACTIVITIES_PAGE_MAX:
        raise ValueError(f"page_size must be between 1 and {ACTIVITIES_PAGE_MAX}")
    if overlap_s < 0 or not math.isfinite(overlap_s):
        raise ValueError("overlap_s must be a finite number >= 0")
    since = _aware(since)
    known = set(seen)
    result = CatchUp(events=[], fills=[], seen=known, resume_at=since)
    budget = _Budget(client, max_requests, result)
    floor = (since - timedelta(seconds=overlap_s)).replace(microsecond=0)

    # 1. every execution after the floor, oldest first, paged by activity id.
    fills: list[CaughtUpFill] = []
    params: dict[str, Any] = {"after": _iso_seconds(floor), "direction": "asc"}
    params["page_size"] = page_size
    while True:
        page = budget.get("/account/activities/FILL", params)
        if not isinstance(page, list):
            raise CatchUpError("account activities: expected a JSON array")
        for index, raw in enumerate(page):
            fill = _parse_fill(raw, f"activities[{index}].")
            if fill.execution_id in known or fill.key in known:
                continue
            known.add(fill.execution_id)
            known.add(fill.key)
            fills.append(fill)
        if len(page) < page_size:
            break
        params = {**params, "page_token": page[-1]["id"]}

    # 2. the orders concerned: submitted after the floor, filled meanwhile, or held as open.
    orders: dict[str, Mapping[str, Any]] = {}
    after = floor
    while True:
        page = budget.get(
            "/orders",
            {
                "status": "all",
                "after": _iso(after),
                "direction": "asc",
                "limit": ORDERS_PAGE_MAX,
            },
        )
        if not isinstance(page, list):
            raise CatchUpError("orders: expected a JSON array")
        fresh = 0
        for index, raw in enumerate(page):
            order_id = _order_id(raw, f"orders[{index}].")
            if order_id not in orders:
                fresh += 1
                orders[order_id] = raw
        if len(page) < ORDERS_PAGE_MAX or fresh == 0:
            break
        # Submitted at the same microsecond as the last one may sit on both sides of the page
        # boundary: restart 1 µs before it and drop the repeats.
        after = _time(page[-1], "submitted_at", "orders[-1].") - timedelta(microseconds=1)
    wanted = [f.order_id for f in fills] + list(open_order_ids)
    for order_id in dict.fromkeys(wanted):
        if order_id in orders:
            continue
        raw = budget.get_order(order_id)
        if raw is not None:
            orders[order_id] = raw

    # 3. rebuild the trade updates, per order, and merge them by time.
    by_order: dict[str, list[CaughtUpFill]] = {}
    for fill in fills:
        by_order.setdefault(fill.order_id, []).append(fill)
    keyed: list[tuple[datetime, int, Decimal, int, CatchUpEvent]] = []
    for order_id, order in orders.items():
        own = sorted(by_order.get(order_id, []), key=lambda f: (f.cum_qty, f.timestamp))
        for event, phase in _order_events(order, own, since):
            rank = event.fill.cum_qty if event.fill is not None else Decimal(0)
            keyed.append((event.timestamp, phase, rank, len(keyed), event))
    for order_id in by_order:
        if order_id not in orders:
            raise CatchUpError(f"order {order_id} of a fill could not be read")
    keyed.sort(key=lambda k: k[:4])
    result.events = [k[4] for k in keyed]
    result.fills = [e.fill for e in result.events if e.fill is not None]
    if result.events:
        result.resume_at = max(since, result.events[-1].timestamp)
    return result


class _Budget:
    """Counts GET requests and stops a catch-up that never ends."""

    def __init__(self, client: RestClient, limit: int, result: CatchUp) -> None:
        self.client = client
        self.limit = limit
        self.result = result

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        if self.result.requests >= self.limit:
            raise CatchUpError(f"gave up after {self.limit} requests (paging does not end)")
        self.result.requests += 1
        return self.client.get(path, params)

    def get_order(self, order_id: str) -> Mapping[str, Any] | None:
        try:
            raw = self.get(f"/orders/{order_id}")
        except Exception as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise
        _order_id(raw, f"order {order_id}: ")
        return raw


def _order_events(
    order: Mapping[str, Any], fills: list[CaughtUpFill], since: datetime
) -> list[tuple[CatchUpEvent, int]]:
    """Rebuild one order's trade updates after ``since``: new, its fills, its final event."""
    prefix = f"order {order.get('id')}: "
    out: list[tuple[CatchUpEvent, int]] = []
    status = _str(order, "status", prefix)
    created = _time(order, "submitted_at", prefix, fallback="created_at")
    if created > since:
        as_new = dict(order)
        if fills or status not in _NEW_STATUSES:
            as_new.update(
                status="new",
                filled_qty="0",
                filled_avg_price=None,
                filled_at=None,
                canceled_at=None,
                expired_at=None,
                failed_at=None,
                replaced_at=None,
                updated_at=_iso(created),
            )
        out.append((CatchUpEvent("new", created, as_new), _PHASE_NEW))

    total_filled = _decimal_or_none(order.get("filled_qty"))
    complete = bool(fills) and fills[0].cum_qty == fills[0].qty  # every fill of it is known
    notional = Decimal(0)
    for fill in fills:
        notional += fill.qty * fill.price
        state = dict(order)
        avg: Any = None
        if total_filled is not None and fill.cum_qty == total_filled:
            avg = order.get("filled_avg_price")  # the broker's own figure for its last state
        elif complete:
            avg = str(notional / fill.cum_qty)
        when = _iso(fill.timestamp)
        state.update(
            status="partially_filled" if fill.partial else "filled",
            filled_qty=str(fill.cum_qty),
            filled_avg_price=avg,
            updated_at=when,
            filled_at=None if fill.partial else when,
            canceled_at=None,
            expired_at=None,
            failed_at=None,
            replaced_at=None,
        )
        event = "partial_fill" if fill.partial else "fill"
        out.append((CatchUpEvent(event, fill.timestamp, state, fill), _PHASE_FILL))

    if status in _FINAL_EVENTS:
        field_name = _FINAL_TIME_FIELD.get(status, "updated_at")
        ended = _time(order, field_name, prefix, fallback="updated_at")
        if ended > since:
            out.append((CatchUpEvent(status, ended, dict(order)), _PHASE_FINAL))
    return out


def _parse_fill(raw: Any, prefix: str) -> CaughtUpFill:
    if not isinstance(raw, Mapping):
        raise CatchUpError(f"{prefix[:-1]}: expected an object")
    if raw.get("activity_type", "FILL") != "FILL":
        raise CatchUpError(f"{prefix}activity_type: expected FILL, got {raw['activity_type']!r}")
    activity_id = _str(raw, "id", prefix)
    _, sep, execution_id = activity_id.partition("::")
    if not sep or not execution_id:
        raise CatchUpError(f"{prefix}id: expected '<time>::<uuid>', got {activity_id!r}")
    kind = _str(raw, "type", prefix)
    if kind not in ("fill", "partial_fill"):
        raise CatchUpError(f"{prefix}type: expected fill or partial_fill, got {kind!r}")
    qty = _decimal(raw, "qty", prefix)
    price = _decimal(raw, "price", prefix)
    if qty <= 0 or price <= 0:
        raise CatchUpError(f"{prefix}qty/price: must be > 0")
    status = raw.get("order_status")
    return CaughtUpFill(
        execution_id=execution_id,
        activity_id=activity_id,
        order_id=_str(raw, "order_id", prefix),
        symbol=_str(raw, "symbol", prefix),
        side=_str(raw, "side", prefix),
        qty=qty,
        price=price,
        cum_qty=_decimal(raw, "cum_qty", prefix),
        leaves_qty=_decimal(raw, "leaves_qty", prefix),
        partial=kind == "partial_fill",
        order_status=status if isinstance(status, str) else None,
        timestamp=_time(raw, "transaction_time", prefix),
    )


def _order_id(raw: Any, prefix: str) -> str:
    if not isinstance(raw, Mapping):
        raise CatchUpError(f"{prefix[:-1]}: expected an order object")
    return _str(raw, "id", prefix)


def _str(raw: Mapping[str, Any], name: str, prefix: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise CatchUpError(f"{prefix}{name}: expected a non-empty string, got {value!r}")
    return value


def _decimal(raw: Mapping[str, Any], name: str, prefix: str) -> Decimal:
    value = _decimal_or_none(raw.get(name))
    if value is None:
        raise CatchUpError(f"{prefix}{name}: expected a decimal number, got {raw.get(name)!r}")
    return value


def _decimal_or_none(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _time(raw: Mapping[str, Any], name: str, prefix: str, fallback: str | None = None) -> datetime:
    value = raw.get(name)
    if value is None and fallback is not None:
        name, value = fallback, raw.get(fallback)
    if not isinstance(value, str):
        raise CatchUpError(f"{prefix}{name}: expected an RFC 3339 time, got {value!r}")
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise CatchUpError(f"{prefix}{name}: expected an RFC 3339 time, got {value!r}") from None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
