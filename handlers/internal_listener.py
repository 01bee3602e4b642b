"""The internal listener: ``POST /internal/events`` alone, on its own port (``INTERNAL_PORT``).

Producers push one event per request, a thousand or more a second. On the main port each one
goes through Tornado's HTTP/1.1 server: a connection state machine, header and body timeouts
as futures, header objects, ~250 µs of CPU per request on the bench machine, the largest cost
of an event once its fan-out is cheap (bench/README.md, "Issue 6, last round"). This listener
is an :class:`asyncio.Protocol` with httptools (llhttp, the C parser uvicorn uses): bytes in,
parser callbacks, :func:`handlers.internal.hook_answer` (the same rules and answers as the main
port's hook), one pre-built answer out.

What it serves:

- ``POST /internal/events`` (a query string is ignored): 202/400/401/404/503 exactly as the main
  port, JSON bodies and all. Any other path: 404 ``not_found``; another method: 405
  ``method_not_allowed`` with ``Allow: POST``. Malformed HTTP or an ``Upgrade``: 400 and close.
- HTTP/1.1 keep-alive and pipelining: requests on a connection are answered in order.

Limits (a stranger who reaches the port gets no more than on the main port):

- a body over ``max_body`` bytes: 413 and close, before it is buffered; a request line over
  8 KiB: 414; header fields over 64 KiB or 100 fields: 431 (each closes);
- a request must arrive whole within ``body_timeout_s`` of its first byte, and a connection
  idle for ``idle_timeout_s`` is closed (slowloris);
- at most ``max_connections`` connections (more are closed at once), and at most
  :data:`MAX_PIPELINED` requests waiting on one connection (reading pauses meanwhile).

It binds ``INTERNAL_HOST`` (``127.0.0.1`` by default): the hook need not be reachable from
outside the host or the private network at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from email.utils import formatdate

import httptools
from tornado import httputil

from handlers.base import ApiError, Context, access_line
from handlers.headers import JSON_SECURITY_HEADERS
from handlers.internal import HOOK_PATH, SERVER, error_body, hook_answer
from streaming.tasks import spawn

__all__ = ["InternalListener", "MAX_PIPELINED"]

log = logging.getLogger(__name__)

#: Requests that may wait, read but unanswered, on one connection before reading pauses.
MAX_PIPELINED = 32
_MAX_URL = 8 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_MAX_HEADERS = 100
_PATH = HOOK_PATH.encode()
_STATIC_HEADERS = (
    "Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in JSON_SECURITY_HEADERS)
    + f"Server: {SERVER}\r\n"
).encode("latin-1")


class _Refuse(Exception):  # noqa: N818 - raised inside parser callbacks, answered then closed
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _Request:
    __slots__ = ("method", "url", "authorization", "body", "keep_alive", "version", "started")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        authorization: str,
        body: bytes,
        keep_alive: bool,
        version: str,
        started: float,
    ) -> None:
        self.method = method
        self.url = url
        self.authorization = authorization
        self.body = body
        self.keep_alive = keep_alive
        self.version = version
        self.started = started


class InternalListener:
    """The internal listener's sockets and connections; one per web process.

    Args:
        ctx: the application context (:func:`handlers.internal.push_event` needs it).
        max_body: the largest request body in bytes (the main port's limit).
        idle_timeout_s: seconds a connection may stay idle between requests.
        body_timeout_s: seconds a request may take to arrive whole, from its first byte.
        max_connections: open connections allowed at once.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        max_body: int,
        idle_timeout_s: float,
        body_timeout_s: float,
        max_connections: int = 1024,
    ) -> None:
        self.ctx = ctx
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.port = 0
        self._servers: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()
        self._date = (0, b"")

    async def start(self, host: str, port: int, sockets: list[socket.socket] | None = None) -> int:
        """Listen on ``host``:``port`` (0: a free port), or on ``sockets`` already bound.

        Returns:
            The port listened on.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        for sock in sockets or []:
            self._servers.append(await loop.create_server(self._protocol, sock=sock))
        if not sockets:
            self._servers.append(await loop.create_server(self._protocol, host, port))
        self.port = int(self._servers[0].sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop accepting, then close every connection (requests not answered yet are dropped)."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def connections(self) -> int:
        """Open connections."""
        return len(self._connections)

    def _protocol(self) -> _Connection:
        return _Connection(self)

    def admit(self, conn: _Connection) -> bool:
        """Register a new connection; False when ``max_connections`` are open already."""
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(conn)
        return True

    def forget(self, conn: _Connection) -> None:
        """Unregister a closed connection."""
        self._connections.discard(conn)

    def date(self) -> bytes:
        """The ``Date`` header line (RFC 9110 §6.6.1), rendered once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode("latin-1"))
        return self._date[1]


class _Connection(asyncio.Protocol):
    """One producer connection: parses requests, answers them in order."""

    def __init__(self, listener: InternalListener) -> None:
        self._listener = listener
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._pending: deque[_Request] = deque()
        self._serving = False
        self._paused = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        # the request being read
        self._url = b""
        self._authorization = ""
        self._body: list[bytes] = []
        self._size = 0
        self._header_bytes = 0
        self._headers = 0
        self._started = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._listener.admit(self):
            log.warning(
                "internal listener: %d connections already open; closed one from %s",
                self._listener.max_connections,
                self._peer,
            )
            self._closed = True
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm(self._listener.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listener.forget(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refuse):
                self._refuse(refusal.error)
            else:  # a bug of ours in a callback: logged once, the caller told 500
                log.error("internal listener: %r", refusal)
                self._refuse(ApiError(500, "internal_error", "internal error"))
        except httptools.HttpParserUpgrade:
            self._refuse(ApiError(400, "bad_request", "protocol upgrades are not served here"))
        except httptools.HttpParserError:
            self._refuse(ApiError(400, "bad_request", "malformed HTTP request"))

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._authorization, self._body = b"", "", []
        self._size = self._header_bytes = self._headers = 0
        self._started = time.monotonic()
        self._arm(self._listener.body_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > _MAX_URL:
            raise _Refuse(ApiError(414, "uri_too_long", f"request line over {_MAX_URL} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._header_bytes += len(name) + len(value)
        if self._headers > _MAX_HEADERS or self._header_bytes > _MAX_HEADER_BYTES:
            raise _Refuse(
                ApiError(
                    431,
                    "headers_too_large",
                    f"over {_MAX_HEADERS} header fields or {_MAX_HEADER_BYTES} bytes of them",
                )
            )
        if name.lower() == b"authorization":
            self._authorization = value.decode("latin-1")
        elif name.lower() == b"expect" and value.lower() == b"100-continue":
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._listener.max_body:
            raise _Refuse(
                ApiError(
                    413, "body_too_large", f"request body over {self._listener.max_body} bytes"
                )
            )
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        self._pending.append(
            _Request(
                parser.get_method(),
                self._url,
                self._authorization,
                b"".join(self._body),
                parser.should_keep_alive(),
                parser.get_http_version(),
                self._started,
            )
        )
        self._body = []
        self._arm(self._listener.idle_timeout_s)
        if len(self._pending) >= MAX_PIPELINED and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        if not self._serving:
            self._serving = True
            spawn(self._serve(), "internal-listener")

    # -- answering ----------------------------------------------------------------------------
    async def _serve(self) -> None:
        """Answer the waiting requests in order (HTTP/1.1 §9.3.2: pipelined answers in order)."""
        try:
            while self._pending and not self._closed:
                request = self._pending.popleft()
                status, payload, error = await self._answer(request)
                if self._closed:
                    return
                self._write(request, status, payload, error)
                if not request.keep_alive:
                    self.close()
                    return
                if self._paused and len(self._pending) < MAX_PIPELINED // 2 and self._transport:
                    self._paused = False
                    self._transport.resume_reading()
        finally:
            self._serving = False

    async def _answer(self, request: _Request) -> tuple[int, bytes, ApiError | None]:
        path = request.url.split(b"?", 1)[0]
        if path != _PATH:
            shown = path[:200].decode("latin-1")
            error = ApiError(404, "not_found", f"no such endpoint here: {shown}")
        elif request.method != b"POST":
            error = ApiError(405, "method_not_allowed", f"use POST for {HOOK_PATH}")
        else:
            return await hook_answer(self._listener.ctx, request.authorization, request.body)
        return error.status_code, error_body(error), error

    def _write(
        self, request: _Request, status: int, payload: bytes, error: ApiError | None
    ) -> None:
        assert self._transport is not None
        reason = httputil.responses.get(status, "Unknown")
        head = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1"), _STATIC_HEADERS]
        head.append(self._listener.date())
        if error is not None and error.retry_after is not None:
            head.append(f"Retry-After: {error.retry_after}\r\n".encode("latin-1"))
        if status == 405:
            head.append(b"Allow: POST\r\n")
        if not request.keep_alive:
            head.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"Content-Length: %d\r\n\r\n" % len(payload))
        head.append(payload)
        self._transport.write(b"".join(head))
        access_line(
            status,
            request.method.decode("latin-1"),
            request.url.decode("latin-1"),
            self._peer,
            time.monotonic() - request.started,
            error,
        )

    def _refuse(self, error: ApiError) -> None:
        """Answer a request that cannot be read on (``error``), then close the connection."""
        refused = _Request(b"-", self._url or b"-", "", b"", False, "1.1", self._started)
        status = error.status_code
        self._pending.clear()
        self._write(refused, status, error_body(error), error)
        self.close()

    # -- lifecycle ----------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._time_out)

    def _time_out(self) -> None:
        self._timer = None
        if self._serving or self._pending:  # answering: the answer re-arms the idle timer
            self._arm(self._listener.idle_timeout_s)
            return
        log.info("internal listener: closed an idle or slow connection from %s", self._peer)
        self.close()

    def close(self) -> None:
        """Close the connection (what was written is still sent)."""
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.close()
