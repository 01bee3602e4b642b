"""REST views of the portfolio, for fallback polling and reconciliation (REQ-8, REQ-9).

Same shapes as the stream, plus the user's current ``seq`` and ``epoch`` so a client can line the
REST answer up with the events it has seen. ``?symbols=AAPL,MSFT`` narrows positions, orders and
trades as the socket's ``subscribe.symbols`` does. ``/api/account/history`` serves the recorded
account points of the day (:mod:`storage.history`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.base import ApiError, BaseHandler
from storage.db import StorageError
from storage.history import HISTORY_PERIODS
from streaming.broker import BrokerUnavailable
from streaming.money import fmt_money
from streaming.protocol import ProtocolError, parse_symbols

__all__ = ["PortfolioHandler", "HealthHandler", "AccountHistoryHandler"]


class PortfolioHandler(BaseHandler):
    """``GET /api/positions|orders|account|trades`` for the logged-in trader (401 otherwise).

    ``?symbols=A,B`` (positions, orders, trades): only those symbols (same rules as the socket's
    ``symbols``; a bad one → 400 ``invalid_field``). The account is never filtered.
    """

    def initialize(self, view: str) -> None:
        self.view = view

    def _symbols(self) -> frozenset[str] | None:
        raw = self.get_query_argument("symbols", None)
        if raw is None:
            return None
        try:
            return parse_symbols([s for s in raw.split(",") if s.strip()])
        except ProtocolError as exc:
            raise ApiError(400, "invalid_field", exc.message) from None

    async def get(self) -> None:
        auth = await self.require_user()
        symbols = self._symbols()
        user_id = auth.user.user_id
        seq, epoch = await self.ctx.manager.broker.position(user_id)
        try:
            view = await self.ctx.portfolio.view(user_id)
        except BrokerUnavailable:
            raise ApiError(503, "engine_unavailable", "portfolios cannot be read now") from None
        body: dict[str, Any] = {"userId": user_id, "seq": seq, "epoch": epoch}

        def wanted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return items if symbols is None else [i for i in items if i["symbol"] in symbols]

        if self.view == "account":
            body["account"] = view["account"]
        else:
            body[self.view] = wanted(view[self.view])
        self.write_json(body)


class AccountHistoryHandler(BaseHandler):
    """``GET /api/account/history?period=1D``: the trader's recorded equity and day P&L.

    → ``{"userId", "period": "1D", "points": [{"timestamp", "equity", "dayPnl"}]}``, oldest
    first, the last 24 hours; ``dayPnl`` is null where it was unknown. A period other than
    ``1D`` → 400 ``invalid_field``; not logged in → 401; the database failing → 503
    ``storage_unavailable``.
    """

    async def get(self) -> None:
        period = self.get_query_argument("period", "1D")
        span = HISTORY_PERIODS.get(period)
        if span is None:
            allowed = ", ".join(HISTORY_PERIODS)
            raise ApiError(400, "invalid_field", f"period: must be one of {allowed}")
        auth = await self.require_user()
        since = datetime.now(UTC) - span
        try:
            points = await self.ctx.auth.store.account_points(auth.user.id, since)
        except StorageError:
            self.ctx.manager.metrics.storage_errors.inc()
            raise ApiError(
                503,
                "storage_unavailable",
                "account history cannot be read now: try again later",
            ) from None
        self.write_json(
            {
                "userId": auth.user.user_id,
                "period": period,
                "points": [
                    {
                        "timestamp": p.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "equity": fmt_money(p.equity),
                        "dayPnl": None if p.day_pnl is None else fmt_money(p.day_pnl),
                    }
                    for p in points
                ],
            }
        )


class HealthHandler(BaseHandler):
    """``GET /api/health`` (no session) → liveness and the state of what the server depends on.

    ``{"status": "ok" | "degraded", "realtime": <ENABLE_REALTIME_PORTFOLIO>,
    "storage": "ok" | "failing", "broker": "ok" | "stale", "redis": "ok" | "down" | "off"}``.
    ``status`` is ``degraded`` when storage fails or Redis is down (the broker being stale is
    normal outside market hours). Always 200 while the process answers: it is a liveness probe;
    details (the storage error) are in the admin stats, not here.
    """

    def get(self) -> None:
        ctx = self.ctx
        storage = "ok" if ctx.auth.store.fault is None else "failing"
        service = ctx.service
        broker = "unknown" if service is None else ("stale" if service.stale else "ok")
        redis_status = ctx.extra_status.get("redis")
        fanout = redis_status().get("fanout") if callable(redis_status) else None
        redis = "off" if fanout is None else ("ok" if fanout else "down")
        degraded = storage != "ok" or redis == "down"
        self.write_json(
            {
                "status": "degraded" if degraded else "ok",
                "realtime": ctx.settings.enable_realtime_portfolio,
                "storage": storage,
                "broker": broker,
                "redis": redis,
            }
        )
