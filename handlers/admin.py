"""Admin views: JSON stats (REQ-14, REQ-15) and Prometheus metrics.

``GET /api/admin/websocket-stats`` needs an admin session. ``GET /metrics`` (Prometheus text
format) accepts an admin session or ``Authorization: Bearer <INTERNAL_TOKEN>`` for scrapers.
"""

from __future__ import annotations

import hmac
import resource

from handlers.base import ApiError, BaseHandler

__all__ = ["StatsHandler", "MetricsHandler"]


class StatsHandler(BaseHandler):
    """Connection counts, duration, disconnect rate, delivery latency p50/p95/p99, broker state."""

    async def get(self) -> None:
        auth = await self.require_user()
        if not auth.user.is_admin:
            raise ApiError(403, "forbidden", "admin role required")
        stats = self.ctx.manager.stats()
        stats["broker"] = self.ctx.service.status()
        stats.update({k: v() if callable(v) else v for k, v in self.ctx.extra_status.items()})
        stats["maxRssMb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        stats["alerts"] = {
            "disconnectRateHigh": stats["disconnectsLastMinute"] > 10,
            "latencyP95High": (stats["latencyMs"]["p95"] or 0) > 1000,
            "loopLagP99High": (stats["loopLagMs"]["p99"] or 0) > 100,
        }
        self.write_json(stats)


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
