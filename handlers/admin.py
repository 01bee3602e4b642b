"""Admin views: JSON stats (REQ-14, REQ-15) and Prometheus metrics.

``GET /api/admin/websocket-stats`` needs an admin session. ``GET /metrics`` (Prometheus text
format) accepts an admin session or ``Authorization: Bearer <INTERNAL_TOKEN>`` for scrapers.
"""

from __future__ import annotations

import hmac

from handlers.base import ApiError, BaseHandler
from streaming.opstats import build_stats

__all__ = ["StatsHandler", "MetricsHandler"]


class StatsHandler(BaseHandler):
    """Connection counts, duration, disconnect rate, delivery latency p50/p95/p99, broker state."""

    async def get(self) -> None:
        auth = await self.require_user()
        if not auth.user.is_admin:
            raise ApiError(403, "forbidden", "admin role required")
        self.write_json(build_stats(self.ctx.manager, self.ctx.service, self.ctx.extra_status))


class MetricsHandler(BaseHandler):
    """Prometheus exposition of the server's metrics."""

    async def get(self) -> None:
        token = self.ctx.settings.internal_token
        header = self.request.headers.get("Authorization", "")
        by_token = bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
        if not by_token:
            auth = await self.require_user()
            if not auth.user.is_admin:
                raise ApiError(403, "forbidden", "admin role required")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.manager.metrics.exposition())
