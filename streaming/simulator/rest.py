"""Alpaca's trading REST API under ``/v2`` (account, positions, orders, clock, assets).

Authentication uses the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers. Errors are
Alpaca-style JSON bodies ``{"code": int, "message": str}``.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import tornado.web

from streaming.simulator.activities import (
    ACTIVITY_TYPES,
    CATEGORIES,
    MAX_PAGE_SIZE,
    NEW_YORK,
    ActivityQuery,
    ActivityQueryError,
    is_activity_id,
    select_activities,
)
from streaming.simulator.book import EXCHANGES, SimAccount, SimAPIError, asset_id, unprocessable
from streaming.simulator.fmt import iso, utcnow

if TYPE_CHECKING:
    from streaming.simulator.server import Simulator

log = logging.getLogger(__name__)

UNAUTHORIZED = SimAPIError(401, 40110000, "request is not authorized")


class SimHandler(tornado.web.RequestHandler):
    """Base REST handler: JSON in and out, Alpaca-style errors, API-key authentication."""

    requires_auth = True

    def initialize(self, sim: Simulator) -> None:
        """Keep the simulator.

        Args:
            sim: The owning simulator.
        """
        self.sim = sim
        self.account: SimAccount | None = None

    def set_default_headers(self) -> None:
        """Answer JSON."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def prepare(self) -> None:
        """Authenticate the request from the API key headers.

        Raises:
            tornado.web.Finish: After writing 401 for a missing or wrong key pair.
        """
        if not self.requires_auth:
            return
        account = self.sim.authenticate(
            self.request.headers.get("APCA-API-KEY-ID"),
            self.request.headers.get("APCA-API-SECRET-KEY"),
        )
        if account is None:
            self.send_error_body(UNAUTHORIZED)
            raise tornado.web.Finish()
        self.account = account

    @property
    def acct(self) -> SimAccount:
        """The authenticated account.

        Returns:
            The account.
        """
        assert self.account is not None
        return self.account

    def send_json(self, data: Any, status: int = 200) -> None:
        """Write a JSON response.

        Args:
            data: The JSON-serialisable body.
            status: The HTTP status.
        """
        self.set_status(status)
        self.finish(json.dumps(data))

    def send_error_body(self, err: SimAPIError) -> None:
        """Write an Alpaca-style error response.

        Args:
            err: The error.
        """
        self.send_json(err.body(), err.status)

    def json_body(self) -> Any:
        """Decode the request body.

        Returns:
            The decoded JSON value.

        Raises:
            SimAPIError: 400 (code 40010000) if it is not JSON.
        """
        try:
            return json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise SimAPIError(400, 40010000, "request body format is invalid") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render unexpected errors (405, 500, …) as Alpaca-style JSON.

        Args:
            status_code: The HTTP status.
            kwargs: Tornado's ``exc_info``.
        """
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], SimAPIError):
            err = exc_info[1]
            self.set_status(err.status)
            self.finish(json.dumps(err.body()))
            return
        message = self._reason.lower() if self._reason else "internal server error"
        self.finish(json.dumps({"code": status_code * 100000, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Do not log expected API errors as server errors.

        Args:
            typ: Exception type.
            value: The exception.
            tb: The traceback.
        """
        if isinstance(value, SimAPIError):
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(SimHandler):
    """Every unknown path: 404 ``{"code": 40410000, "message": "endpoint not found"}``."""

    requires_auth = False

    def prepare(self) -> None:
        """Answer 404 for any method.

        Raises:
            tornado.web.Finish: Always.
        """
        self.send_error_body(SimAPIError(404, 40410000, "endpoint not found"))
        raise tornado.web.Finish()


class AccountHandler(SimHandler):
    """``GET /v2/account``."""

    def get(self) -> None:
        """Return the account."""
        self.send_json(self.acct.account_json(self.sim.price))


class PositionsHandler(SimHandler):
    """``GET /v2/positions``."""

    def get(self) -> None:
        """Return all open positions."""
        self.send_json(self.acct.positions_json(self.sim.price, self.sim.lastday_price))


class PositionHandler(SimHandler):
    """``GET`` / ``DELETE /v2/positions/{symbol}``."""

    def get(self, symbol: str) -> None:
        """Return one position (404 if none).

        Args:
            symbol: The ticker.
        """
        self.send_json(self.acct.position_json(symbol, self.sim.price, self.sim.lastday_price))

    def delete(self, symbol: str) -> None:
        """Close a position with a market order; answers the order.

        Args:
            symbol: The ticker.
        """
        qty = self.acct.position_qty(symbol.upper())
        if qty == 0:
            raise SimAPIError(404, 40410000, "position does not exist")
        body = {
            "symbol": symbol.upper(),
            "qty": str(abs(qty)),
            "side": "sell" if qty > 0 else "buy",
            "type": "market",
            "time_in_force": "day",
        }
        self.send_json(self.sim.place_order(self.acct, body))


def _parse_time(name: str, raw: str) -> datetime:
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable(f"invalid {name}: {raw!r}") from None
    if dt.tzinfo is None:
        raise unprocessable(f"{name} must include a time zone")
    return dt


class OrdersHandler(SimHandler):
    """``GET`` / ``POST`` / ``DELETE /v2/orders``."""

    def get(self) -> None:
        """List orders.

        Query parameters: ``status``, ``limit``, ``direction``, ``symbols``, ``side``,
        ``after``, ``until``.

        Raises:
            SimAPIError: 422 for a bad query parameter.
        """
        status = self.get_query_argument("status", "open")
        if status not in ("open", "closed", "all"):
            raise unprocessable(f"invalid status: {status!r}")
        raw_limit = self.get_query_argument("limit", "50")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise unprocessable(f"invalid limit: {raw_limit!r}") from None
        if not 1 <= limit <= 500:
            raise unprocessable("limit must be between 1 and 500")
        direction = self.get_query_argument("direction", "desc")
        if direction not in ("asc", "desc"):
            raise unprocessable(f"invalid direction: {direction!r}")
        side = self.get_query_argument("side", None)
        if side not in (None, "buy", "sell"):
            raise unprocessable(f"invalid side: {side!r}")
        raw_symbols = self.get_query_argument("symbols", None)
        symbols = (
            {s.strip().upper() for s in raw_symbols.split(",") if s.strip()}
            if raw_symbols
            else None
        )
        raw_after = self.get_query_argument("after", None)
        raw_until = self.get_query_argument("until", None)
        orders = self.acct.list_orders(
            status=status,
            limit=limit,
            direction=direction,
            symbols=symbols,
            side=side,
            after=_parse_time("after", raw_after) if raw_after else None,
            until=_parse_time("until", raw_until) if raw_until else None,
        )
        self.send_json([o.to_json() for o in orders])

    def post(self) -> None:
        """Place an order (market or limit); answers the order JSON with status ``new``."""
        self.send_json(self.sim.place_order(self.acct, self.json_body()))

    def delete(self) -> None:
        """Cancel every open order; answers 207 with one result per order."""
        results = []
        for order in self.acct.list_orders(status="open", limit=10_000):
            self.sim.cancel_order(self.acct, order.id)
            results.append({"id": order.id, "status": 200, "body": order.to_json()})
        self.send_json(results, 207)


class OrderByClientIdHandler(SimHandler):
    """``GET /v2/orders:by_client_order_id?client_order_id=...``."""

    def get(self) -> None:
        """Return the order with that client order id.

        Raises:
            SimAPIError: 422 without ``client_order_id``, 404 if unknown.
        """
        cid = self.get_query_argument("client_order_id", None)
        if not cid:
            raise unprocessable("client_order_id is required")
        self.send_json(self.acct.get_order_by_client_id(cid).to_json())


class OrderHandler(SimHandler):
    """``GET`` / ``DELETE /v2/orders/{id}``."""

    def get(self, order_id: str) -> None:
        """Return one order.

        Args:
            order_id: Alpaca's order id.
        """
        self.send_json(self.acct.get_order(order_id).to_json())

    def delete(self, order_id: str) -> None:
        """Cancel an open order: 204 and a ``canceled`` trade update.

        Args:
            order_id: Alpaca's order id.
        """
        self.sim.cancel_order(self.acct, order_id)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


def _parse_day_or_time(name: str, raw: str) -> datetime:
    """Read an activities time filter: ``YYYY-MM-DD`` (midnight in New York) or RFC 3339."""
    if len(raw) == 10:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise unprocessable(f"invalid {name}: {raw!r}") from None
        return datetime.combine(day, time(), NEW_YORK)
    return _parse_time(name, raw)


class ActivitiesHandler(SimHandler):
    """``GET /v2/account/activities`` and ``GET /v2/account/activities/{activity_type}``.

    Serves ``FILL`` activities (see :mod:`streaming.simulator.activities` for the shapes and
    paging, from https://docs.alpaca.markets/reference/getaccountactivities); every other
    documented type answers ``[]``. The body is a JSON array; the next page is asked for with
    ``page_token`` = the last id received, and an empty array ends the listing.
    """

    def get(self, activity_type: str | None = None) -> None:
        """List activities.

        Query parameters: ``activity_types`` (comma-separated, list form only), ``category``
        (``trade_activity``/``non_trade_activity``, list form only), ``date``, ``after``,
        ``until`` (``YYYY-MM-DD`` or RFC 3339 with a zone), ``direction``, ``page_size``,
        ``page_token``.

        Args:
            activity_type: The type from the path, or None for the list form.

        Raises:
            SimAPIError: 422 (code 40010001) naming the bad parameter, e.g.
                ``invalid activity type: FFFFF`` (Alpaca's own answer).
        """
        arg = self.get_query_argument
        category = arg("category", None)
        if activity_type is not None:
            if activity_type not in ACTIVITY_TYPES:
                raise unprocessable(f"invalid activity type: {activity_type}")
            if category is not None:
                raise unprocessable("category cannot be used with an activity type in the path")
            types: set[str] | None = {activity_type}
        else:
            raw_types = arg("activity_types", None)
            types = None
            if raw_types is not None:
                types = {t.strip() for t in raw_types.split(",") if t.strip()}
                for name in sorted(types):
                    if name not in ACTIVITY_TYPES:
                        raise unprocessable(f"invalid activity type: {name}")
                if not types:
                    raise unprocessable("activity_types must name at least one type")
        if category is not None:
            if category not in CATEGORIES:
                raise unprocessable(f"invalid category: {category!r}")
            if types is not None:
                raise unprocessable("category cannot be used with activity_types")
        fills = (types is None or "FILL" in types) and category != "non_trade_activity"

        raw_date = arg("date", None)
        raw_after = arg("after", None)
        raw_until = arg("until", None)
        on_date = None
        if raw_date is not None:
            if raw_after is not None or raw_until is not None:
                raise unprocessable("date cannot be used with after or until")
            try:
                on_date = date.fromisoformat(raw_date[:10])
            except ValueError:
                raise unprocessable(f"invalid date: {raw_date!r}") from None
            if len(raw_date) > 10:
                _parse_time("date", raw_date)  # validated; the calendar date written counts
        after = _parse_day_or_time("after", raw_after) if raw_after is not None else None
        until = _parse_day_or_time("until", raw_until) if raw_until is not None else None

        direction = arg("direction", "desc")
        if direction not in ("asc", "desc"):
            raise unprocessable(f"invalid direction: {direction!r}")
        raw_size = arg("page_size", None)
        page_size: int | None = None if on_date is not None else MAX_PAGE_SIZE
        if raw_size is not None:
            try:
                page_size = int(raw_size)
            except ValueError:
                raise unprocessable(f"invalid page_size: {raw_size!r}") from None
            if page_size < 1 or (on_date is None and page_size > MAX_PAGE_SIZE):
                raise unprocessable(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        token = arg("page_token", None)
        if token is not None and not is_activity_id(token):
            raise unprocessable(f"invalid page_token: {token!r}")
        query = ActivityQuery(
            fills=fills,
            on_date=on_date,
            after=after,
            until=until,
            direction=direction,
            page_size=page_size,
            page_token=token,
        )
        try:
            rows = select_activities(self.acct.activities, query)
        except ActivityQueryError as exc:
            raise unprocessable(str(exc)) from None
        self.send_json([a.to_json() for a in rows])


class ClockHandler(SimHandler):
    """``GET /v2/clock``: the simulated market is always open."""

    def get(self) -> None:
        """Return the clock."""
        now = utcnow()
        self.send_json(
            {
                "timestamp": iso(now),
                "is_open": True,
                "next_open": iso(now + timedelta(days=1)),
                "next_close": iso(now + timedelta(hours=6)),
            }
        )


class AssetHandler(SimHandler):
    """``GET /v2/assets/{symbol}``."""

    def get(self, symbol: str) -> None:
        """Return the asset (404 for symbols the simulator does not replay).

        Args:
            symbol: The ticker.

        Raises:
            SimAPIError: 404 for unknown symbols.
        """
        sym = symbol.upper()
        if sym not in self.sim.symbols:
            raise SimAPIError(404, 40410000, "asset not found")
        self.send_json(
            {
                "id": asset_id(sym),
                "class": "us_equity",
                "exchange": EXCHANGES.get(sym, "NASDAQ"),
                "symbol": sym,
                "name": sym,
                "status": "active",
                "tradable": True,
                "marginable": True,
                "shortable": True,
                "easy_to_borrow": True,
                "fractionable": True,
                "min_order_size": None,
                "min_trade_increment": None,
                "price_increment": float(Decimal("0.01")),
                "maintenance_margin_requirement": 30,
                "attributes": [],
            }
        )


def rest_routes(sim: Simulator) -> list[Any]:
    """Return the REST routes for a Tornado application.

    Args:
        sim: The owning simulator.

    Returns:
        ``(pattern, handler, kwargs)`` tuples.
    """
    kw = {"sim": sim}
    return [
        (r"/v2/account", AccountHandler, kw),
        (r"/v2/positions", PositionsHandler, kw),
        (r"/v2/positions/([^/]+)", PositionHandler, kw),
        (r"/v2/orders", OrdersHandler, kw),
        (r"/v2/orders:by_client_order_id", OrderByClientIdHandler, kw),
        (r"/v2/orders/([^/]+)", OrderHandler, kw),
        (r"/v2/account/activities", ActivitiesHandler, kw),
        (r"/v2/account/activities/([^/]+)", ActivitiesHandler, kw),
        (r"/v2/clock", ClockHandler, kw),
        (r"/v2/assets/([^/]+)", AssetHandler, kw),
    ]
