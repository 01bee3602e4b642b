"""Admin views: stats (REQ-14, REQ-15), metrics, connected users, "disconnect this user".

``GET /api/admin/*`` and ``POST /api/admin/*`` need an admin session. ``GET /metrics``
(Prometheus text format) accepts an admin session or ``Authorization: Bearer <INTERNAL_TOKEN>``
for scrapers.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC

from handlers.base import ApiError, BaseHandler
from streaming.auth import Authenticated
from streaming.opstats import build_stats

__all__ = [
    "StatsHandler",
    "MetricsHandler",
    "ConnectionsHandler",
    "DisconnectUserHandler",
    "AuditHandler",
]

audit_log = logging.getLogger("folio.audit")


class AdminHandler(BaseHandler):
    """Base of the admin views: :meth:`require_admin`."""

    async def require_admin(self) -> Authenticated:
        """Return the admin's session.

        Raises:
            ApiError: 401 ``unauthorized`` without a session, 403 ``forbidden`` for a trader.
        """
        auth = await self.require_user()
        if not auth.user.is_admin:
            raise ApiError(403, "forbidden", "admin role required")
        return auth


class StatsHandler(AdminHandler):
    """Connection counts, duration, disconnect rate, delivery latency p50/p95/p99, broker state."""

    async def get(self) -> None:
        await self.require_admin()
        self.write_json(build_stats(self.ctx.manager, self.ctx.service, self.ctx.extra_status))


class ConnectionsHandler(AdminHandler):
    """``GET /api/admin/connections``: the users connected to this process.

    Answers ``{"users": [{"userId", "username", "connections", "connectedSeconds",
    "lastSeenSeconds"}]}`` (seconds ago; ``username`` null for a user deleted meanwhile).
    """

    async def get(self) -> None:
        await self.require_admin()
        rows = self.ctx.manager.connected_users()
        names = {u.user_id: u.username for u in await self.ctx.auth.store.list_users()}
        self.write_json({"users": [{**r, "username": names.get(r["userId"])} for r in rows]})


class DisconnectUserHandler(AdminHandler):
    """``POST /api/admin/users/{userId}/disconnect``: revoke the user's sessions everywhere.

    Every session of the user is revoked in the database, the user's sockets close with 4001
    on every process (:class:`streaming.user_control.UserControl`), and the action is written
    to the audit log (table ``audit_log`` and logger ``folio.audit``). CSRF-safe: the request
    must come from an allowed ``Origin`` and carry ``Content-Type: application/json``, which a
    cross-site form cannot send without a CORS preflight that this server never grants.
    Answers ``{"userId", "sessionsRevoked", "socketsClosed"}`` (sockets of this process).
    """

    async def post(self, user_id: str) -> None:
        self.check_request_origin()
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            raise ApiError(400, "invalid_json", "send Content-Type: application/json")
        auth = await self.require_admin()
        store = self.ctx.auth.store
        user = await store.get_user(int(user_id))
        if user is None:
            raise ApiError(404, "unknown_user", f"no user with userId {user_id}")
        revoked = await store.revoke_user_sessions(user.id)
        control = self.ctx.user_control
        closed = (
            await control.disconnect_user(user.user_id)
            if control is not None
            else self.ctx.manager.close_user(user.user_id)
        )
        detail = f"{len(revoked)} session(s) revoked, {closed} socket(s) closed here"
        await store.audit(auth.user.username, "disconnect", user.username, detail)
        audit_log.warning(
            "admin %s disconnected user %s (userId %s): %s",
            auth.user.username,
            user.username,
            user.user_id,
            detail,
        )
        self.write_json(
            {"userId": user.user_id, "sessionsRevoked": len(revoked), "socketsClosed": closed}
        )


class AuditHandler(AdminHandler):
    """``GET /api/admin/audit``: the 50 most recent operator actions, newest first.

    Answers ``{"entries": [{"at" (ISO 8601 UTC), "actor", "action", "target", "detail"}]}``:
    admin disconnects and the ``users`` commands.
    """

    async def get(self) -> None:
        await self.require_admin()
        entries = await self.ctx.auth.store.audit_entries(50)
        self.write_json(
            {
                "entries": [
                    {
                        "at": e.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "detail": e.detail,
                    }
                    for e in entries
                ]
            }
        )


class MetricsHandler(AdminHandler):
    """Prometheus exposition of the server's metrics."""

    async def get(self) -> None:
        token = self.ctx.settings.internal_token
        header = self.request.headers.get("Authorization", "")
        by_token = bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
        if not by_token:
            await self.require_admin()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.manager.metrics.exposition())
