"""``POST /internal/events``: how other services (work queue, position manager) push events.

``Authorization: Bearer <INTERNAL_TOKEN>`` (compared in constant time; with no token configured
the hook is disabled and always answers 401). Body ``{"userId", "type", "data"}``; ``data`` is
validated against the schema of ``type`` (:func:`streaming.events.validate_pushed_event`, shared
with the Redis ingest). Events that carry state are kept by the service (:mod:`streaming.pushed`).
→ 202 ``{"accepted": true}``; bad body → 400 naming every failing field; unknown user → 404
(a user's existence is remembered for ``storage.db.USER_EXISTS_TTL_S`` seconds, so a user deleted
by another process may still be accepted that long);
storage failing → 503. No input makes it answer 500.
"""

from __future__ import annotations

import hmac

from handlers.base import ApiError, BaseHandler
from storage.db import StorageError
from streaming.events import EventValidationError, validate_pushed_event

__all__ = ["InternalEventsHandler"]


class InternalEventsHandler(BaseHandler):
    """Accepts one event for one user: its state is kept, and it is emitted through fan-out."""

    def _check_token(self) -> None:
        expected = self.ctx.settings.internal_token
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if (
            not expected
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    async def post(self) -> None:
        self._check_token()
        try:
            user_id, type_, data = validate_pushed_event(self.json_body())
        except EventValidationError as exc:
            raise ApiError(400, "invalid_field", str(exc)) from None
        try:
            # remembered for a few seconds per user (storage.db.USER_EXISTS_TTL_S): one read
            # per user and interval, not one per event
            exists = await self.ctx.auth.store.user_exists(int(user_id))
        except StorageError:
            self.ctx.manager.metrics.storage_errors.inc()
            raise ApiError(503, "storage_unavailable", "users cannot be read now") from None
        if not exists:
            raise ApiError(404, "unknown_user", f"userId: no user {user_id}")
        # positions, orders and the account are kept (REST, snapshots); trades are relayed
        await self.ctx.portfolio.accept_pushed(user_id, type_, data)
        self.write_json({"accepted": True}, status=202)
