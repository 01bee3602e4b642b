"""REST views of the portfolio, for fallback polling and reconciliation (REQ-8, REQ-9).

Same shapes as the stream, plus the user's current ``seq`` and ``epoch`` so a client can line the
REST answer up with the events it has seen.
"""

from __future__ import annotations

from typing import Any

from handlers.base import BaseHandler

__all__ = ["PortfolioHandler", "HealthHandler"]


class PortfolioHandler(BaseHandler):
    """``GET /api/positions|orders|account|trades`` for the logged-in trader (401 otherwise)."""

    def initialize(self, view: str) -> None:
        self.view = view

    async def get(self) -> None:
        auth = await self.require_user()
        user_id = auth.user.user_id
        seq, epoch = await self.ctx.manager.broker.position(user_id)
        state = self.ctx.service.state(user_id)
        body: dict[str, Any] = {"userId": user_id, "seq": seq, "epoch": epoch}
        if self.view == "positions":
            body["positions"] = state.positions() if state else []
        elif self.view == "orders":
            body["orders"] = state.orders() if state else []
        elif self.view == "account":
            body["account"] = state.account() if state else None
        else:
            body["trades"] = state.trades() if state else []
        self.write_json(body)


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
        broker = "stale" if ctx.service.stale else "ok"
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
