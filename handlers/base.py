"""Shared pieces of the HTTP handlers: the application context, JSON I/O, session lookup.

Handlers stay thin: they parse the request, authorise it (through :class:`SessionAuth`, the one
place sessions are checked) and delegate to ``streaming``. Errors are JSON
``{"error": {"code", "message"}}`` with the matching status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import ujson
from tornado.web import HTTPError, RequestHandler

from config.settings import Settings
from handlers.headers import apply_security_headers
from storage.db import StorageError
from streaming.auth import COOKIE_NAME, Authenticated, SessionAuth
from streaming.manager import StreamManager
from streaming.ratelimit import KeyedBuckets, retry_after_header
from streaming.readiness import Readiness
from streaming.service import PortfolioService
from streaming.shared import SharedPortfolio
from streaming.user_control import UserControl

__all__ = [
    "Context",
    "BaseHandler",
    "ApiError",
    "NotFoundHandler",
    "access_line",
    "log_request",
    "parse_json_object",
]

log = logging.getLogger(__name__)
access_log = logging.getLogger("tornado.access")


def log_request(handler: RequestHandler) -> None:
    """Log one line per finished request (the Application's ``log_function``).

    See :func:`access_line` for the line and its level.
    """
    request = handler.request
    access_line(
        handler.get_status(),
        request.method or "",
        request.uri or "",
        request.remote_ip,
        request.request_time(),
        getattr(handler, "logged_error", None),
    )


def access_line(
    status: int,
    method: str,
    uri: str,
    remote_ip: str | None,
    duration_s: float,
    error: HTTPError | None = None,
) -> None:
    """Log one finished request: ``"<status> <method> <uri> (<ip>) <ms>ms[: <code>: <message>]"``.

    2xx/3xx at INFO, 4xx at WARNING, 5xx at ERROR, except 429 refusals at DEBUG (a flood of
    refused requests must not flood the log; they are counted in the metrics). An error answer
    carries its code and message on the same line, so an error is logged once (not also by
    ``log_exception``). Extras: ``status`` and ``errorCode`` (for ``LOG_FORMAT=json``).

    Args:
        status: the HTTP status answered.
        method: the request method.
        uri: the request target as received (path and query).
        remote_ip: the client's address (after trusted proxies' headers), or None.
        duration_s: seconds from the request's arrival to its answer.
        error: the HTTPError the request ended with, if any.
    """
    code, detail = None, ""
    if isinstance(error, ApiError):
        code, detail = error.code, f": {error.code}: {error.message}"
    elif isinstance(error, HTTPError) and error.log_message:
        text = error.log_message % error.args if error.args else error.log_message
        code, detail = "http_error", f": {text}"
    if status < 400:
        level = logging.INFO
    elif status == 429:
        level = logging.DEBUG
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {"status": status}
    if code:
        extra["errorCode"] = code
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms%s",
        status,
        method,
        uri,
        remote_ip,
        1000.0 * duration_s,
        detail,
        extra=extra,
    )


def parse_json_object(body: bytes | None) -> dict[str, Any]:
    """Decode a request body that must be a JSON object.

    Raises:
        ApiError: 400 ``invalid_json`` when the body is not a JSON object.
    """
    try:
        value = ujson.loads(body or b"")
    except (ValueError, OverflowError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return value


@dataclass
class Context:
    """Everything the handlers reach, built once by ``server.py``."""

    settings: Settings
    auth: SessionAuth
    manager: StreamManager
    #: Where traders' views are read and pushed events kept: this process's service, or Redis.
    portfolio: PortfolioService | SharedPortfolio
    #: The broker-fed service when this process streams accounts (None in the web role).
    service: PortfolioService | None = None
    #: ``all``, ``web`` or ``bridge`` (server.py).
    role: str = "all"
    #: More sections for the admin stats: values, or callables evaluated per request.
    extra_status: dict[str, Any] = field(default_factory=dict)
    #: The ``/readyz`` probes (set once the server has started).
    readiness: Readiness | None = None
    #: Closes a user's sockets on every process (set once the server has started).
    user_control: UserControl | None = None
    #: WebSocket upgrade attempts per client address (None: unlimited).
    upgrades: KeyedBuckets | None = None


class ApiError(HTTPError):
    """An HTTP error with a machine-readable ``code`` for the JSON body.

    ``retry_after_s``, when given, becomes the ``Retry-After`` header (whole seconds, >= 1).
    """

    def __init__(
        self, status: int, code: str, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(status, reason=None, log_message=message)
        self.code = code
        self.message = message
        self.retry_after = None if retry_after_s is None else retry_after_header(retry_after_s)


class BaseHandler(RequestHandler):
    """JSON API base: ``ctx`` access, JSON errors, cookie session lookup, no caching."""

    auth_result: Authenticated | None = None
    #: The HTTPError this request ended with, for :func:`log_request`'s one line.
    logged_error: HTTPError | None = None

    @property
    def ctx(self) -> Context:
        """The application :class:`Context`."""
        ctx: Context = self.application.settings["ctx"]
        return ctx

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        apply_security_headers(self)

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Finish the request with ``payload`` as JSON and HTTP ``status``."""
        self.set_status(status)
        self.finish(ujson.dumps(payload, ensure_ascii=False, escape_forward_slashes=False))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """HTTP errors are logged once, by :func:`log_request`; others keep their traceback."""
        if isinstance(value, HTTPError):
            self.logged_error = value
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            if exc.retry_after is not None:
                self.set_header("Retry-After", exc.retry_after)
        elif isinstance(exc, HTTPError) and exc.log_message:
            code, message = (
                "http_error",
                exc.log_message % exc.args if exc.args else exc.log_message,
            )
        else:
            code, message = "http_error", self._reason
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(ujson.dumps({"error": {"code": code, "message": message}}))

    def json_body(self) -> dict[str, Any]:
        """Decode the request body as a JSON object.

        Raises:
            ApiError: 400 ``invalid_json`` when the body is not a JSON object.
        """
        return parse_json_object(self.request.body)

    def session_token(self) -> str | None:
        """Return the session cookie's value (never logged)."""
        return self.get_cookie(COOKIE_NAME)

    async def authenticate(self) -> Authenticated | None:
        """Look up the session cookie; sets and returns :attr:`auth_result`.

        Raises:
            ApiError: 503 ``storage_unavailable`` when the session store cannot be read.
        """
        try:
            self.auth_result = await self.ctx.auth.verify(self.session_token())
        except StorageError:
            self.ctx.manager.metrics.storage_errors.inc()
            raise ApiError(
                503, "storage_unavailable", "sessions cannot be checked now: try again later"
            ) from None
        return self.auth_result

    async def require_user(self) -> Authenticated:
        """Return the authenticated session or raise 401.

        Raises:
            ApiError: 401 ``unauthorized``.
        """
        auth = await self.authenticate()
        if auth is None:
            raise ApiError(401, "unauthorized", "login required")
        return auth

    def check_request_origin(self) -> None:
        """Refuse state-changing requests whose ``Origin`` is not allowed (CSRF defence).

        Raises:
            ApiError: 403 ``bad_origin``.
        """
        origin = self.request.headers.get("Origin")
        if origin is not None and origin not in self.ctx.settings.origins():
            raise ApiError(403, "bad_origin", f"origin {origin!r} is not allowed")


class NotFoundHandler(BaseHandler):
    """JSON 404 for unknown API paths and switched-off routes (``/ws/portfolio``, flag off)."""

    def prepare(self) -> None:
        raise ApiError(404, "not_found", f"no such endpoint: {self.request.path}")
