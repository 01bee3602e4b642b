"""``POST /internal/events``: how other services (work queue, position manager) push events.

``Authorization: Bearer <INTERNAL_TOKEN>`` (compared in constant time; with no token configured
the hook is disabled and always answers 401). Body ``{"userId", "type", "data"}``; ``data`` is
validated against the schema of ``type`` (:func:`streaming.events.validate_pushed_event`, shared
with the Redis ingest). Events that carry state are kept by the service (:mod:`streaming.pushed`).
→ 202 ``{"accepted": true}``; bad body → 400 naming every failing field; unknown user → 404
(a user's existence is remembered for ``storage.db.USER_EXISTS_TTL_S`` seconds, so a user deleted
by another process may still be accepted that long);
storage failing → 503. No input makes it answer 500.

The rules live in one coroutine, :func:`push_event`, and what to answer in :func:`hook_answer`.
Two listeners serve them with the same answers: :class:`InternalEventsHandler`, the main port's
route, and :mod:`handlers.internal_listener` (``INTERNAL_PORT``), a lean HTTP/1.1 listener for
producers that push many events (about half the server CPU per event).
"""

from __future__ import annotations

import hmac
import logging

import tornado
import ujson

from handlers.base import ApiError, BaseHandler, Context, parse_json_object
from storage.db import StorageError
from streaming.events import EventValidationError, validate_pushed_event

__all__ = [
    "ACCEPTED",
    "HOOK_PATH",
    "InternalEventsHandler",
    "SERVER",
    "error_body",
    "hook_answer",
    "push_event",
]

log = logging.getLogger(__name__)

#: The hook's path (the ``Application`` routes it too).
HOOK_PATH = "/internal/events"

#: The body of a 202.
ACCEPTED = b'{"accepted":true}'
#: The ``Server`` header Tornado's answers carry.
SERVER = f"TornadoServer/{tornado.version}"


async def push_event(ctx: Context, authorization: str, body: bytes | None) -> None:
    """Check, validate and accept one pushed event (the hook's whole behaviour but the answer).

    Args:
        ctx: the application context.
        authorization: the request's ``Authorization`` header ("" when absent).
        body: the request body (JSON ``{"userId", "type", "data"}``).

    Raises:
        ApiError: 401 ``unauthorized`` (token), 400 ``invalid_json`` / ``invalid_field`` (body),
            404 ``unknown_user``, 503 ``storage_unavailable``. Nothing else for any input.
    """
    expected = ctx.settings.internal_token
    scheme, _, token = authorization.partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")
    try:
        user_id, type_, data = validate_pushed_event(parse_json_object(body))
    except EventValidationError as exc:
        raise ApiError(400, "invalid_field", str(exc)) from None
    try:
        # remembered for a few seconds per user (storage.db.USER_EXISTS_TTL_S): one read
        # per user and interval, not one per event
        exists = await ctx.auth.store.user_exists(int(user_id))
    except StorageError:
        ctx.manager.metrics.storage_errors.inc()
        raise ApiError(503, "storage_unavailable", "users cannot be read now") from None
    if not exists:
        raise ApiError(404, "unknown_user", f"userId: no user {user_id}")
    # positions, orders and the account are kept (REST, snapshots); trades are relayed
    await ctx.portfolio.accept_pushed(user_id, type_, data)


async def hook_answer(
    ctx: Context, authorization: str, body: bytes | None
) -> tuple[int, bytes, ApiError | None]:
    """Run :func:`push_event` and say what to answer: ``(status, JSON body, error or None)``.

    ``202 {"accepted":true}``, an :class:`ApiError`'s status with
    ``{"error": {"code", "message"}}``, or, for anything unexpected (logged once with its
    traceback), ``500 internal_error`` with no detail for the caller.
    """
    try:
        await push_event(ctx, authorization, body)
    except ApiError as exc:
        return exc.status_code, error_body(exc), exc
    except Exception:  # noqa: BLE001 - answered 500 like a RequestHandler, logged once
        log.exception("POST %s failed", HOOK_PATH)
        error = ApiError(500, "internal_error", "internal error")
        return 500, error_body(error), error
    return 202, ACCEPTED, None


def error_body(error: ApiError) -> bytes:
    """The JSON body of an error answer: ``{"error": {"code", "message"}}``."""
    return ujson.dumps(
        {"error": {"code": error.code, "message": error.message}},
        ensure_ascii=False,
        escape_forward_slashes=False,
    ).encode()


class InternalEventsHandler(BaseHandler):
    """The hook on the main port: :func:`hook_answer`'s answer, with the Application's headers."""

    async def post(self) -> None:
        authorization = self.request.headers.get("Authorization", "")
        status, payload, error = await hook_answer(self.ctx, authorization, self.request.body)
        if error is not None:
            self.logged_error = error  # on the access-log line (log_request)
            if error.retry_after is not None:
                self.set_header("Retry-After", error.retry_after)
        self.set_status(status)
        self.finish(payload)
