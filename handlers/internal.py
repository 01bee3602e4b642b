"""``POST /internal/events``: how other services (work queue, position manager) push events.

``Authorization: Bearer <INTERNAL_TOKEN>`` (compared in constant time; with no token configured
the hook is disabled and always answers 401). Body ``{"userId", "type", "data"}``; ``data`` is
validated against the schema of ``type`` (:func:`streaming.events.validate_pushed_event`, shared
with the Redis ingest). Events that carry state are kept by the service (:mod:`streaming.pushed`).
→ 202 ``{"accepted": true}``; bad body → 400 naming every failing field; unknown user → 404
(a user's existence is remembered for ``storage.db.USER_EXISTS_TTL_S`` seconds, so a user deleted
by another process may still be accepted that long);
storage failing → 503. No input makes it answer 500.

The rules live in one coroutine, :func:`push_event`. It is served two ways:

- :class:`HookFastPath` (what ``server.py`` installs): ``POST /internal/events`` is answered by a
  bare :class:`tornado.httputil.HTTPMessageDelegate`, without a ``RequestHandler``; every other
  request goes to the ``Application`` untouched. Producers push an event per request, at
  thousands per second, and a ``RequestHandler``'s set-up, routing, default headers and
  coroutine plumbing were about a third of each event's cost (bench/README.md, "CPU per
  event"). Same limits (the ``HTTPServer``'s body size and timeouts apply below it), same
  answers and headers, same access-log line.
- :class:`InternalEventsHandler`, the ``Application``'s route: what answers other methods (405)
  and serves the hook where the fast path is not installed.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import tornado
import ujson
from tornado import httputil
from tornado.httputil import HTTPHeaders, RequestStartLine, ResponseStartLine

from handlers.base import ApiError, BaseHandler, Context, access_line, parse_json_object
from handlers.headers import JSON_SECURITY_HEADERS
from storage.db import StorageError
from streaming.events import EventValidationError, validate_pushed_event
from streaming.tasks import spawn

__all__ = [
    "ACCEPTED",
    "HOOK_PATH",
    "HookFastPath",
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
    """The hook as an ``Application`` route (see the module docstring)."""

    async def post(self) -> None:
        await push_event(self.ctx, self.request.headers.get("Authorization", ""), self.request.body)
        self.write_json({"accepted": True}, status=202)


class HookFastPath(httputil.HTTPServerConnectionDelegate):
    """The ``HTTPServer``'s delegate: ``POST /internal/events`` served lean, the rest by ``app``.

    Args:
        app: the ``Application`` (any ``HTTPServerConnectionDelegate``) for every other request.
        ctx: the application context (what :func:`push_event` needs).
    """

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Dispatch(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Dispatch(httputil.HTTPMessageDelegate):
    """Chooses, once the request line is known, who handles the request; then forwards."""

    __slots__ = ("_fast", "_server_conn", "_conn", "_to")

    def __init__(
        self, fast: HookFastPath, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> None:
        self._fast = fast
        self._server_conn = server_conn
        self._conn = request_conn
        self._to: httputil.HTTPMessageDelegate | None = None

    def headers_received(
        self,
        start_line: RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
    ) -> Any:
        assert isinstance(start_line, RequestStartLine)
        if start_line.method == "POST" and start_line.path.partition("?")[0] == HOOK_PATH:
            self._to = _HookRequest(self._fast.ctx, self._conn, start_line, headers)
        else:
            self._to = self._fast.app.start_request(self._server_conn, self._conn)
        return self._to.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        assert self._to is not None
        return self._to.data_received(chunk)

    def finish(self) -> None:
        assert self._to is not None
        self._to.finish()

    def on_connection_close(self) -> None:
        if self._to is not None:
            self._to.on_connection_close()


class _HookRequest(httputil.HTTPMessageDelegate):
    """One ``POST /internal/events``: body collected, :func:`push_event` run, answer written."""

    def __init__(
        self,
        ctx: Context,
        conn: httputil.HTTPConnection,
        start_line: RequestStartLine,
        headers: HTTPHeaders,
    ) -> None:
        self._ctx = ctx
        self._conn = conn
        self._start_line = start_line
        self._authorization = headers.get("Authorization", "")
        self._chunks: list[bytes] = []
        self._started = time.monotonic()
        self._closed = False

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> None:
        return None  # taken in __init__

    def data_received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)  # bounded by the HTTPServer's max_body_size

    def finish(self) -> None:
        spawn(self._answer(b"".join(self._chunks)), "internal-event")

    def on_connection_close(self) -> None:
        self._closed = True

    async def _answer(self, body: bytes) -> None:
        status, payload, error = await hook_answer(self._ctx, self._authorization, body)
        if self._closed:
            return
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Cache-Control"] = "no-store"
        for name, value in JSON_SECURITY_HEADERS:
            headers[name] = value
        headers["Server"] = SERVER
        headers["Date"] = httputil.format_timestamp(time.time())
        if error is not None and error.retry_after is not None:
            headers["Retry-After"] = error.retry_after
        headers["Content-Length"] = str(len(payload))
        reason = httputil.responses.get(status, "Unknown")
        self._conn.write_headers(ResponseStartLine("HTTP/1.1", status, reason), headers, payload)
        self._conn.finish()
        context = getattr(self._conn, "context", None)
        access_line(
            status,
            self._start_line.method,
            self._start_line.path,
            getattr(context, "remote_ip", None),
            time.monotonic() - self._started,
            error,
        )
