"""The HTTP server with limits: per-address connection cap, calm ``accept`` errors, trusted proxies.

:class:`LimitedHTTPServer` is Tornado's :class:`~tornado.httpserver.HTTPServer` plus:

- **Per-address cap**: at most ``max_per_address`` open TCP connections (HTTP keep-alive and
  upgraded WebSockets alike) from one client address; the next one is closed at once and counted
  in ``folio_http_refused{reason="per_address"}``. Addresses in ``TRUSTED_PROXIES`` are exempt
  (every client of a proxy shares its address: the proxy must do per-client limiting).
- **Calm when descriptors run out**: ``accept()`` failing with ``EMFILE``/``ENFILE``/``ENOBUFS``/
  ``ENOMEM`` is counted (``folio_http_refused{reason="accept_error"}``), logged at most once every
  ``log_every_s`` seconds (with the count since the last line, never a traceback), and accepting
  pauses for a short, growing delay (10 ms doubling to 1 s) instead of spinning on a listening
  socket that stays readable. Connections already open keep being served; waiting ones stay in
  the kernel's backlog until a descriptor frees. Tornado's own accept handler raises on these
  errors and the IOLoop logs a traceback per readiness event.
- **X-Forwarded-For / X-Real-IP / X-Forwarded-Proto** are applied only to requests whose TCP peer is
  in ``TRUSTED_PROXIES`` (Tornado's ``xheaders`` trusts any peer).

Header and idle timeouts are Tornado's own ``idle_connection_timeout`` (also the deadline for a
request's headers) and ``body_timeout``, passed by ``server.py``.

Pinned to Tornado >= 6.5, < 7 internals: ``TCPServer._sockets``/``_handlers``/
``_handle_connection`` (accept loop) and ``HTTPServer.start_request`` reading ``self.xheaders``
(checked by ``tests/security``).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

__all__ = ["LimitedHTTPServer", "in_networks", "log_request"]

log = logging.getLogger(__name__)

#: accept() errors that mean "out of descriptors or memory": pause, do not crash or spin.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BATCH = 128


def in_networks(
    ip: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """True when ``ip`` (text) belongs to one of ``networks``; False for anything unparsable."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


access_log = logging.getLogger("tornado.access")


def log_request(handler: Any) -> None:
    """Access log line per request (the application's ``log_function``).

    Tornado's format and levels, except 429 refusals at DEBUG: a flood of refused requests must
    not flood the log (they are counted in the metrics).
    """
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status == 429:
        level = logging.DEBUG
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        request_time = 1000.0 * handler.request.request_time()
        access_log.log(level, "%d %s %.2fms", status, handler._request_summary(), request_time)


class LimitedHTTPServer(HTTPServer):
    """An :class:`HTTPServer` with a per-address cap, calm accept errors and trusted proxies.

    Keyword args (besides :class:`HTTPServer`'s own):
        max_per_address: open connections allowed per client address (0: no cap).
        trusted_proxies: addresses/networks (``"10.0.0.0/8"``) whose forwarding headers count.
        on_refused: called with a reason (``"per_address"``, ``"accept_error"``) per refusal,
            e.g. a Prometheus counter's ``labels(reason=…).inc``.
        log_every_s: at most one log line per this many seconds for each refusal reason.
    """

    def initialize(
        self,
        *args: Any,
        max_per_address: int = 0,
        trusted_proxies: Iterable[str] = (),
        on_refused: Callable[[str], None] | None = None,
        log_every_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        plain = [str(n.network_address) for n in networks if n.num_addresses == 1]
        kwargs.setdefault("trusted_downstream", plain)
        kwargs["xheaders"] = bool(networks)
        super().initialize(*args, **kwargs)
        self.max_per_address = max_per_address
        self.trusted_networks = networks
        self._on_refused = on_refused
        self._log_every_s = log_every_s
        self._by_address: dict[str, set[IOStream]] = {}
        self._sweep_above = 10_000
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        #: Refusals so far, by reason (also counted through ``on_refused``).
        self.refused: dict[str, int] = {}

    # -- refusals -------------------------------------------------------------------------------
    def _refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self._on_refused is not None:
            self._on_refused(reason)
        now = time.monotonic()
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        if now - self._last_log.get(reason, -1e9) >= self._log_every_s:
            count = self._unlogged.pop(reason)
            self._last_log[reason] = now
            log.warning("refused %d connection(s) (%s): %s", count, reason, detail)

    # -- per-address cap ------------------------------------------------------------------------
    def open_connections(self, ip: str) -> int:
        """Return how many connections from ``ip`` are open now."""
        streams = self._by_address.get(ip)
        if not streams:
            return 0
        for stream in [s for s in streams if s.closed()]:
            streams.discard(stream)
        if not streams:
            del self._by_address[ip]
        return len(streams)

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        """Refuse the connection when its address is at the cap; otherwise serve it."""
        ip = address[0] if isinstance(address, tuple) and address else ""
        if self.max_per_address and ip and not in_networks(ip, self.trusted_networks):
            if self.open_connections(ip) >= self.max_per_address:
                stream.close()
                self._refuse(
                    "per_address",
                    f"{ip} already has {self.max_per_address} open connections "
                    "(MAX_CONNECTIONS_PER_ADDRESS)",
                )
                return
            self._by_address.setdefault(ip, set()).add(stream)
            if len(self._by_address) > self._sweep_above:
                # forget addresses whose connections all closed; amortised O(1) per connection
                for key in list(self._by_address):
                    self.open_connections(key)
                self._sweep_above = max(10_000, 2 * len(self._by_address))
        super().handle_stream(stream, address)

    # -- trusted proxies ------------------------------------------------------------------------
    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Apply forwarding headers only when the TCP peer is a trusted proxy."""
        context = getattr(request_conn, "context", None)
        peer = getattr(context, "_orig_remote_ip", None)
        self.xheaders = in_networks(peer, self.trusted_networks)
        return super().start_request(server_conn, request_conn)

    # -- accept loop ----------------------------------------------------------------------------
    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on ``sockets`` with the calm accept loop (see the module docstring)."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        io_loop = IOLoop.current()
        state: dict[str, Any] = {"removed": False, "timer": None, "pause": 0.01}

        def resume() -> None:
            state["timer"] = None
            if not state["removed"]:
                io_loop.add_handler(sock, on_readable, IOLoop.READ)

        def on_readable(fd: Any, events: int) -> None:
            for _ in range(_ACCEPT_BATCH):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRORS:
                        raise
                    self._refuse(
                        "accept_error",
                        f"{exc.strerror or exc} — raise the descriptor limit (ulimit -n), "
                        "see docs/operations.md",
                    )
                    io_loop.remove_handler(sock)
                    state["timer"] = io_loop.call_later(state["pause"], resume)
                    state["pause"] = min(1.0, state["pause"] * 2)
                    return
                state["pause"] = 0.01
                self._handle_connection(connection, address)

        def remove() -> None:
            if state["timer"] is not None:
                io_loop.remove_timeout(state["timer"])
                state["timer"] = None
            else:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, on_readable, IOLoop.READ)
        return remove
