"""folio-stream entry point: ``python server.py [--flags]`` runs the server; ``users`` manages.

Usage::

    python server.py [--port 8888] [--host 127.0.0.1] [--log-level info] [--…]   # run
    python server.py web [--processes K] [--…]   # cluster: HTTP, WebSocket, hook, fan-out
    python server.py bridge [--port 9101] [--…]  # cluster: alpaca-py streams of leased accounts
    python server.py users list|add|passwd|link|unlink|disable|enable|delete …  # users
    python server.py users --help                                            # details
    python server.py adduser …                                        # = users add …

Every setting is an environment variable and a flag (below); a flag wins over its variable, with
a warning when both are given and differ. Start-up failures (port in use, bad HOST, database or
Redis unreachable, a SECRET_KEY that does not decrypt the stored keys, unwritable DATA_DIR) are
one line on stderr naming the cause and the fix, exit code 2.

With no Alpaca keys the server runs in demo mode: it starts the bundled Alpaca-protocol simulator,
seeds ``alice``/``bob`` (password ``demo``) and ``admin`` (password ``admin``), and links each
trader to a simulator account. SIGTERM/SIGINT flush pending batches, close sockets with 1001,
stop the broker streams and exit 0.

Roles (``REDIS_URL`` required for ``web`` and ``bridge``; docs/deployment.md): ``web`` processes
never import alpaca-py and read portfolios from Redis; ``bridge`` processes stream the broker
accounts whose lease they hold (:mod:`streaming.leases`). ``python server.py`` alone (``all``)
does both; with ``REDIS_URL`` several such processes share the accounts by the same leases.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web
from tornado.netutil import bind_sockets
from tornado.process import fork_processes

from config.errors import EXIT_CONFIG, explain
from config.logs import configure_logging
from config.settings import SETTINGS_HELP, Settings, SettingsError, load_settings
from handlers.admin import (
    AuditHandler,
    ConnectionsHandler,
    DisconnectUserHandler,
    MetricsHandler,
    StatsHandler,
)
from handlers.auth import LoginHandler, LogoutHandler, MeHandler
from handlers.base import Context, NotFoundHandler, log_request
from handlers.health import ApiDocumentHandler, LivezHandler, ReadyzHandler
from handlers.internal import InternalEventsHandler
from handlers.internal_listener import InternalListener
from handlers.limits import LimitedHTTPServer
from handlers.portfolio import AccountHistoryHandler, HealthHandler, PortfolioHandler
from handlers.spa import AssetHandler, SpaHandler
from handlers.ws import PortfolioSocket
from storage.crypto import PasswordHasher
from storage.db import StorageError, Store, open_store
from storage.history import AccountRecorder
from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount, Endpoints
from streaming.auth import SessionAuth
from streaming.broker import Broker
from streaming.cluster import ClusterReporter
from streaming.leases import AccountLeases
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.metrics import Metrics
from streaming.opstats import StatsCollector, build_stats
from streaming.ownership import BridgeOwnership
from streaming.publisher import Publisher
from streaming.ratelimit import FailureBackoff, KeyedBuckets, LoginThrottle
from streaming.readiness import Readiness
from streaming.redis_broker import RedisBroker
from streaming.redis_ingest import RedisIngest
from streaming.service import PortfolioService
from streaming.shared import RedisViews, SharedPortfolio
from streaming.tasks import every
from streaming.user_control import UserControl

log = logging.getLogger("folio")

STATIC_DIR = Path(__file__).with_name("static")
DOCS_DIR = Path(__file__).with_name("docs")
#: Unknown paths under these prefixes are JSON 404s (``/healthz`` and ``/status`` too: probes).
NOT_FOUND_PATHS = (
    r"/(?:api|ws|internal)(?:/.*)?|/(?:metrics|livez|readyz|healthz|status).*"
    r"|/(?:openapi|asyncapi)\.json"
)
MAX_BODY_BYTES = 1024 * 1024
DEMO_TRADERS = (("alice", "demo"), ("bob", "demo"))
DEMO_DATA_KEY = ("DEMO-MARKET-DATA", "demo-market-data-secret")
#: What a process does (``python server.py [ROLE]``); see :class:`FolioServer`.
ROLES = ("all", "web", "bridge")


def make_app(ctx: Context, static_dir: Path = STATIC_DIR) -> tornado.web.Application:
    """Build the Tornado application: routes → thin handlers → ``ctx``.

    Args:
        ctx: the shared :class:`~handlers.base.Context`.
        static_dir: where the built SPA lives.

    Returns:
        The application (not yet listening).
    """
    settings = ctx.settings
    ws_route: Any = (
        (r"/ws/portfolio", PortfolioSocket)
        if settings.enable_realtime_portfolio
        else (r"/ws/portfolio", NotFoundHandler)
    )
    routes: list[Any] = [
        ws_route,
        (r"/api/login", LoginHandler),
        (r"/api/logout", LogoutHandler),
        (r"/api/me", MeHandler),
        (r"/api/health", HealthHandler),
        (r"/api/positions", PortfolioHandler, {"view": "positions"}),
        (r"/api/orders", PortfolioHandler, {"view": "orders"}),
        (r"/api/account", PortfolioHandler, {"view": "account"}),
        (r"/api/account/history", AccountHistoryHandler),
        (r"/api/trades", PortfolioHandler, {"view": "trades"}),
        (r"/api/admin/websocket-stats", StatsHandler),
        (r"/api/admin/connections", ConnectionsHandler),
        (r"/api/admin/audit", AuditHandler),
        (r"/api/admin/users/([0-9]{1,18})/disconnect", DisconnectUserHandler),
        (r"/metrics", MetricsHandler),
        (r"/internal/events", InternalEventsHandler),
        (r"/livez", LivezHandler),
        (r"/readyz", ReadyzHandler),
        (r"/api/openapi.json", ApiDocumentHandler, {"path": str(DOCS_DIR / "openapi.json")}),
        (r"/api/asyncapi.json", ApiDocumentHandler, {"path": str(DOCS_DIR / "asyncapi.json")}),
        # Machine paths answer JSON 404, never the SPA (a probe must not see 200 text/html).
        (NOT_FOUND_PATHS, NotFoundHandler),
        (r"/assets/(.*)", AssetHandler, {"path": str(static_dir / "assets")}),
        (r"/(favicon\.(?:ico|svg))", AssetHandler, {"path": str(static_dir)}),
        (r"/(.*)", SpaHandler, {"static_dir": str(static_dir)}),
    ]
    return tornado.web.Application(
        routes,
        ctx=ctx,
        websocket_max_message_size=settings.max_message_bytes,
        log_function=log_request,
    )


def make_probe_app(ctx: Context) -> tornado.web.Application:
    """The bridge role's HTTP surface: ``/livez``, ``/readyz`` and ``/metrics`` only."""
    return tornado.web.Application(
        [
            (r"/livez", LivezHandler),
            (r"/readyz", ReadyzHandler),
            (r"/metrics", MetricsHandler),
            (r"/.*", NotFoundHandler),
        ],
        ctx=ctx,
        log_function=log_request,
    )


class FolioServer:
    """The whole server in one object, so tests can run it in-process on a free port.

    Args:
        settings: validated settings.
        static_dir: where the built SPA lives.
        role: ``all`` (everything: one process, or with ``REDIS_URL`` a process that both
            serves and streams the accounts whose lease it takes), ``web`` (HTTP, WebSocket,
            hook, ingest, fan-out; never imports alpaca-py; needs ``REDIS_URL``) or ``bridge``
            (alpaca-py streams for the accounts it leases → the engine; serves only ``/livez``,
            ``/readyz`` and ``/metrics``; needs ``REDIS_URL``). See docs/deployment.md.
        sockets: listening sockets already bound (``web --processes K`` binds before forking).
        internal_sockets: the same for ``INTERNAL_PORT``.
    """

    def __init__(
        self,
        settings: Settings,
        static_dir: Path = STATIC_DIR,
        role: str = "all",
        sockets: list[socket.socket] | None = None,
        internal_sockets: list[socket.socket] | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.settings = settings
        self.static_dir = static_dir
        self.role = role
        self._sockets = sockets
        self._internal_sockets = internal_sockets
        #: ``INTERNAL_PORT``'s listener (None when not set, or in the bridge role).
        self.internal: InternalListener | None = None
        self.store: Store | None = None
        self.simulator: Any = None
        self.bridge: AlpacaBridge | None = None
        self.http: LimitedHTTPServer | None = None
        self.port = 0
        self.manager: StreamManager | None = None
        self.publisher: Publisher | None = None
        self.service: PortfolioService | None = None
        self.views: RedisViews | None = None
        self.shared: SharedPortfolio | None = None
        self.ownership: BridgeOwnership | None = None
        self.ctx: Context | None = None
        self.broker: Broker | None = None
        self.cluster: ClusterReporter | None = None
        self.ingest: RedisIngest | None = None
        self.recorder: AccountRecorder | None = None
        self.user_control: UserControl | None = None
        self._purge: asyncio.Task[Any] | None = None

    @property
    def serves_web(self) -> bool:
        """True when this process serves traders (HTTP API, WebSocket, hook)."""
        return self.role in ("all", "web")

    @property
    def streams_broker(self) -> bool:
        """True when this process runs alpaca-py streams."""
        return self.role in ("all", "bridge")

    async def start(self) -> int:
        """Open storage and the engine, start this role's parts, then listen.

        Returns:
            The bound HTTP port.

        Raises:
            SettingsError: ``web``/``bridge`` without ``REDIS_URL``, or ``bridge`` in demo mode.
        """
        s = self.settings
        problem = role_problem(s, self.role)
        if problem is not None:
            raise SettingsError(problem)
        sockets = self._sockets or bind_sockets(s.port, s.host)
        self.port = sockets[0].getsockname()[1]
        if s.port == 0:  # any free port: the default allowed origin must name the real one
            self.settings = s = dataclasses.replace(s, port=self.port)
        hasher = PasswordHasher(s.login_hash_workers, s.login_max_pending)
        self.store = store = await open_store(s.database_url, s.secret_key, hasher)
        broker: Broker
        if s.redis_url:
            broker = RedisBroker(
                s.redis_url, prefix=s.redis_prefix, slot_ttl_s=s.heartbeat_timeout_s
            )
            await broker.start()
            self.views = RedisViews(s.redis_url, prefix=s.redis_prefix)
            await self.views.start()
        else:
            broker = MemoryBroker()
        self.broker = broker
        # One publisher per process: the bridge's events (their views saved to Redis first, for
        # web processes) and the hook's.
        self.publisher = publisher = Publisher(
            broker,
            metrics=Metrics(),
            batch_window_ms=s.batch_window_ms,
            outbox_max_events=s.outbox_max_events,
            state=self.views if self.streams_broker else None,
        )
        if self.streams_broker:
            self.service = PortfolioService(publisher, stale_after_s=s.stale_after_s)
        portfolio: PortfolioService | SharedPortfolio
        if self.views is not None:
            portfolio = self.shared = SharedPortfolio(self.views, publisher)
        else:
            portfolio = self._service()
        self.manager = manager = StreamManager(
            broker,
            publisher=publisher,
            source=portfolio,
            max_connections_per_user=s.max_connections_per_user,
            heartbeat_interval_s=s.heartbeat_interval_s,
            heartbeat_timeout_s=s.heartbeat_timeout_s,
        )

        def backoff() -> FailureBackoff:
            return FailureBackoff(free=s.login_free_failures, max_s=s.login_backoff_max_s)

        throttle = LoginThrottle(per_address=backoff(), per_username=backoff())
        auth = SessionAuth(store, s.secret_key, s.session_ttl_s, throttle)
        upgrades = KeyedBuckets(s.ws_upgrade_rate, s.ws_upgrade_burst)
        self.ctx = ctx = Context(
            s, auth, manager, portfolio, service=self.service, upgrades=upgrades, role=self.role
        )
        ctx.extra_status["storage"] = lambda: {"ok": store.fault is None, "fault": store.fault}
        # JSON bodies here are small: refuse anything over 1 MiB before reading it. Idle and
        # header/body timeouts and the per-address cap keep idle or slow clients from holding
        # descriptors (docs/operations.md, "Limits").
        refused = manager.metrics.http_refused
        app = make_app(ctx, self.static_dir) if self.serves_web else make_probe_app(ctx)
        self.http = LimitedHTTPServer(
            app,
            max_body_size=MAX_BODY_BYTES,
            idle_connection_timeout=s.idle_connection_timeout_s,
            body_timeout=s.body_timeout_s,
            max_per_address=s.max_connections_per_address,
            trusted_proxies=s.trusted_proxies,
            on_refused=lambda reason: refused.labels(reason=reason).inc(),
        )
        manager.start()
        if self.streams_broker:
            await self._start_bridge(store)
        if self.serves_web:
            self._purge = every(s.session_purge_interval_s, self._purge_sessions, "session-purge")
            if s.redis_url:

                async def user_exists(user_id: str) -> bool:
                    return await store.user_exists(int(user_id))

                self.ingest = RedisIngest(
                    s.redis_url, portfolio.accept_pushed, user_exists, prefix=s.redis_prefix
                )
                await self.ingest.start()
            self.user_control = UserControl(
                manager,
                store,
                interval_s=s.heartbeat_interval_s,
                redis_url=s.redis_url,
                prefix=s.redis_prefix,
            )
            self.user_control.start()
            ctx.user_control = self.user_control
        ctx.extra_status["redis"] = self._redis_status
        manager.metrics.registry.register(
            StatsCollector(lambda: build_stats(manager, self.service, ctx.extra_status))
        )
        ctx.readiness = self._readiness()
        if s.redis_url:
            self.cluster = ClusterReporter(s.redis_url, self._process_report, prefix=s.redis_prefix)
            await self.cluster.start()
            ctx.extra_status["cluster"] = self.cluster.view
        else:
            ctx.extra_status["cluster"] = self._single_process_view
        if self.serves_web and s.internal_port is not None:
            self.internal = InternalListener(
                ctx,
                max_body=MAX_BODY_BYTES,
                idle_timeout_s=s.idle_connection_timeout_s,
                body_timeout_s=s.body_timeout_s,
            )
        # Listen last: the demo users exist and every part is up before the first request.
        self.http.add_sockets(sockets)
        if self.internal is not None and s.internal_port is not None:
            port = await self.internal.start(
                s.internal_host, s.internal_port, self._internal_sockets
            )
            log.info(
                "internal hook listening on http://%s:%d/internal/events", s.internal_host, port
            )
        log.info(
            "folio-stream %s listening on http://%s:%d (%s, realtime %s)",
            self.role,
            s.host,
            self.port,
            "demo mode" if s.demo else "Alpaca",
            s.enable_realtime_portfolio,
        )
        return self.port

    def _service(self) -> PortfolioService:
        assert self.service is not None
        return self.service

    async def _start_bridge(self, store: Store) -> None:
        """Start the alpaca-py bridge: every linked account, or those this process leases."""
        s, service, ctx = self.settings, self._service(), self.ctx
        assert ctx is not None and self.publisher is not None
        endpoints = Endpoints(
            s.alpaca_trading_url or None, s.alpaca_stream_url or None, s.alpaca_data_url or None
        )
        data_key, data_secret = s.alpaca_api_key, s.alpaca_secret_key
        if s.demo:
            endpoints, data_key, data_secret = await self._start_demo(store)

        async def linked() -> list[BridgeAccount]:
            return [
                BridgeAccount(a.user_id, a.key, a.secret, a.paper)
                for a in await store.linked_accounts()
            ]

        leased = self.views is not None
        self.bridge = bridge = AlpacaBridge(
            service,
            [] if leased else await linked(),
            data_key=data_key,
            data_secret=data_secret,
            endpoints=endpoints,
            sync_interval_s=s.sync_interval_s,
            paper=s.alpaca_paper,
            # With leases, the ownership loop tells the bridge which accounts to stream.
            accounts_provider=None if leased else linked,
            # A bridge taking an account over first publishes what nobody streamed meanwhile.
            fills_ledger=self.broker.published_fills if self.broker is not None else None,
        )
        ctx.extra_status["bridge"] = lambda: {**bridge.status(), "demo": s.demo}
        # The day's account line (GET /api/account/history), sampled from the traders this
        # process streams (so with leases each trader's points are recorded once).
        self.recorder = AccountRecorder(
            store, service.accounts, interval_s=s.account_history_interval_s
        )
        self.recorder.start()
        await bridge.start()
        if self.views is not None:
            leases = AccountLeases(s.redis_url, prefix=s.redis_prefix, lease_s=s.lease_s)
            await leases.start()
            self.ownership = BridgeOwnership(
                leases, bridge, service, self.publisher, self.views, linked
            )
            await self.ownership.start()

    async def _start_demo(self, store: Store) -> tuple[Endpoints, str, str]:
        from streaming.simulator import Simulator

        created = []
        for name, password in (*DEMO_TRADERS, ("admin", "admin")):
            if await store.get_user_by_name(name) is None:
                await store.create_user(name, password, is_admin=name == "admin")
                created.append(name)
        sim = Simulator(
            month_s=self.settings.simulator_month_s, auto_trade=self.settings.simulator_auto_trade
        )
        for name, _ in DEMO_TRADERS:
            user = await store.get_user_by_name(name)
            assert user is not None
            key, secret = f"DEMO-{name.upper()}", f"demo-{name}-secret"
            await store.link_broker_account(user.id, key, secret, paper=True)
            sim.add_account(key, secret)
        sim.add_account(*DEMO_DATA_KEY, auto_trade=False)
        await sim.start(self.settings.simulator_port)
        self.simulator = sim
        if created:
            log.info(
                "demo mode: seeded users %s (alice/bob password 'demo', admin password 'admin')",
                ", ".join(created),
            )
        log.info(
            "demo mode: Alpaca-protocol simulator at %s; alice and bob linked to it",
            sim.trading_url,
        )
        return (
            Endpoints(sim.trading_url, sim.trading_stream_url, sim.data_stream_url),
            *DEMO_DATA_KEY,
        )

    async def _purge_sessions(self) -> None:
        assert self.ctx is not None
        deleted = await self.ctx.auth.purge()
        if deleted:
            log.info("purged %d expired or revoked session(s)", deleted)

    async def stop(self) -> None:
        """Graceful stop: flush batches, close sockets with 1001, stop streams and simulator.

        A bridge publishes what its streams produced and releases its leases, so another bridge
        takes its accounts over at once (not after the lease expires).
        """
        if self._purge is not None:
            self._purge.cancel()
        if self.http is not None:
            self.http.stop()
        if self.internal is not None:
            await self.internal.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.ownership is not None:
            await self.ownership.stop()
        if self.user_control is not None:
            await self.user_control.stop()
        if self.ingest is not None:
            await self.ingest.stop()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.manager is not None:
            await self.manager.stop()
        if self.bridge is not None:
            await self.bridge.stop()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.http is not None:
            try:
                await asyncio.wait_for(self.http.close_all_connections(), 1.0)
            except TimeoutError:
                pass
        if self.shared is not None:
            await self.shared.close()
        if self.views is not None:
            await self.views.close()
        if self.broker is not None:
            await self.broker.close()
        if self.store is not None:
            await self.store.close()

    def _readiness(self) -> Readiness:
        """The ``/readyz`` probes: database, Redis (when configured), broker feed, role."""
        readiness = Readiness()
        store, broker, bridge, service = self.store, self.broker, self.bridge, self.service
        assert store is not None

        async def database() -> dict[str, Any]:
            await store.ping()
            return {"ok": True, "engine": store.dialect}

        async def redis() -> dict[str, Any]:
            assert isinstance(broker, RedisBroker)
            await broker.ping()
            return {"ok": True}

        async def broker_feed() -> dict[str, Any]:
            assert bridge is not None and service is not None
            state, feed = bridge.status(), service.status()
            down = sorted(u for u, alive in state["tradingStreams"].items() if not alive)
            # The market-data stream only runs while some symbol is held.
            data_down = bool(bridge.data_symbols) and not state["marketData"]
            ok = not down and not data_down
            details: dict[str, Any] = {
                "ok": ok,
                "stale": feed["stale"],
                "secondsSinceBrokerMessage": feed["secondsSinceBrokerMessage"],
            }
            if not ok:
                details["error"] = (
                    f"trading stream down for userId {', '.join(down)}"
                    if down
                    else "market-data stream not running"
                )
            return details

        async def role() -> dict[str, Any]:
            details: dict[str, Any] = {
                "ok": True,
                "role": self.role if self.settings.redis_url else "single",
            }
            if self.ownership is not None:
                details["accountsOwned"] = sorted(self.ownership.leases.owned)
            return details

        readiness.add("database", database)
        if isinstance(broker, RedisBroker):
            readiness.add("redis", redis)
        if bridge is not None:
            readiness.add("broker", broker_feed)
        readiness.add("role", role)
        return readiness

    def _accounts_owned(self) -> list[str]:
        if self.ownership is not None:
            return sorted(self.ownership.leases.owned)
        return sorted(a.user_id for a in self.bridge.accounts) if self.bridge is not None else []

    def _process_report(self) -> dict[str, Any]:
        """Return the figures of this process for the cluster view (:mod:`streaming.cluster`)."""
        assert self.manager is not None
        stats = self.manager.stats()
        return {
            "role": self.role,
            "activeConnections": stats["activeConnections"],
            "activeUsers": stats["activeUsers"],
            "eventsDelivered": stats["eventsDelivered"],
            "latencyMs": stats["latencyMs"],
            "loopLagMs": stats["loopLagMs"],
            "outbox": stats["outbox"],
            "accountsOwned": self._accounts_owned(),
            "brokerStale": self.service.stale if self.service is not None else None,
        }

    def _single_process_view(self) -> dict[str, Any]:
        """The cluster view without Redis: this process alone."""
        report = {**self._process_report(), "id": "local", "alive": True, "self": True}
        return {
            "processes": [report],
            "totals": {
                "processes": 1,
                "gone": 0,
                "activeConnections": report["activeConnections"],
                "eventsDelivered": report["eventsDelivered"],
                "bridges": 1,
                "accountsStreamed": len(report["accountsOwned"]),
            },
            "updatedAt": None,
        }

    def _redis_status(self) -> dict[str, Any]:
        broker = self.broker
        return {
            "fanout": broker.connected if isinstance(broker, RedisBroker) else None,
            "role": self.role,
            "accountsOwned": len(self._accounts_owned()),
            "ingestAccepted": self.ingest.accepted if self.ingest else 0,
            "ingestRejected": self.ingest.rejected if self.ingest else 0,
        }


async def _serve(
    settings: Settings,
    role: str = "all",
    sockets: list[socket.socket] | None = None,
    internal_sockets: list[socket.socket] | None = None,
) -> int:
    server = FolioServer(settings, role=role, sockets=sockets, internal_sockets=internal_sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a signal during start-up is clean
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.ensure_future(server.start())
    await asyncio.wait(
        [starting, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED"
    )
    if starting.done() and starting.exception() is not None:
        try:  # release what was started (simulator, store, Redis) before reporting
            await asyncio.wait_for(server.stop(), 4.0)
        except Exception:
            pass
        raise starting.exception()  # type: ignore[misc]
    if starting.done():
        tune_gc()
    await stop.wait()
    if not starting.done():
        starting.cancel()
    log.info("shutting down")
    try:
        await asyncio.wait_for(server.stop(), 4.0)
    except TimeoutError:
        log.warning("shutdown took longer than 4 s; exiting anyway")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the server, or a ``users`` command (``adduser`` is ``users add``).

    Args:
        argv: command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The process exit code: 0, or 2 (``config.errors.EXIT_CONFIG``) after one line on stderr
        naming the cause and the fix when the settings or the environment are wrong.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("users", "adduser"):
        from cli.users import main as users_main

        return users_main(argv)
    role = "all"
    if argv and argv[0] in ROLES:
        role = argv.pop(0)
    try:
        argv, processes = _take_processes(argv, role)
    except ValueError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        for name, text in SETTINGS_HELP.items():
            print(f"  --{name.replace('_', '-'):28} {name.upper()}: {text}")
        return 0
    warnings: list[str] = []
    try:
        settings = load_settings(argv=argv, warnings=warnings)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # the demo SECRET_KEY file under DATA_DIR
        data_dir = os.environ.get("DATA_DIR", "var")
        print(f"start-up error: {explain(exc, data_dir=data_dir) or exc}", file=sys.stderr)
        return EXIT_CONFIG
    problem = role_problem(settings, role)
    if problem is not None:
        print(f"settings error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    for line in warnings:
        log.warning("%s (a flag wins over its environment variable)", line)
    try:
        sockets = internal = None
        if processes > 1:
            # Bound once, before forking: every web process accepts on the same port.
            sockets = bind_sockets(settings.port, settings.host, reuse_port=True)
            if settings.port == 0:
                settings = dataclasses.replace(settings, port=sockets[0].getsockname()[1])
            if settings.internal_port is not None:
                internal = bind_sockets(
                    settings.internal_port, settings.internal_host, reuse_port=True
                )
            fork_processes(processes, max_restarts=100)
            _die_with_parent()
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            return runner.run(_serve(settings, role, sockets, internal))
    except Exception as exc:
        message = explain(
            exc,
            host=settings.host,
            port=settings.port,
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            data_dir=settings.data_dir,
        )
        if message is None and isinstance(exc, StorageError):
            message = f"{exc}: check DATABASE_URL, or set DATA_DIR to a writable directory"
        if message is None:
            raise
        print(f"start-up error: {message}", file=sys.stderr)
        return EXIT_CONFIG


def role_problem(settings: Settings, role: str) -> str | None:
    """Return why ``role`` cannot run with ``settings`` (one line naming the fix), or None."""
    if role != "all" and not settings.redis_url:
        return (
            f"the {role} role shares state through Redis: set REDIS_URL "
            "(or run `python server.py` for everything in one process)"
        )
    if role == "bridge" and settings.demo:
        return (
            "a bridge needs ALPACA_API_KEY/ALPACA_SECRET_KEY (the market-data key); for a "
            "local cluster run `python -m streaming.simulator` and set ALPACA_*_URL to it "
            "(docs/deployment.md)"
        )
    return None


def tune_gc() -> None:
    """Tune CPython's garbage collector for a long-running server, once started.

    ``gc.freeze()`` moves everything allocated during start-up (modules, settings, the app) to
    a permanent generation that collections no longer scan, and ``gc.set_threshold(50_000, 20,
    100)`` makes collections rarer: at 10,000 tabs the defaults ran a full collection once or
    twice per 12 s, each stopping the event loop for 0.26–0.54 s; with these, none ran in the
    same bench points and the server used about 6% less CPU per frame (bench/README.md, issue
    6, "GC"). Reference cycles are still collected, only less often.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _take_processes(argv: list[str], role: str) -> tuple[list[str], int]:
    """Remove ``--processes K`` from ``argv``; return the rest and K (default 1).

    Raises:
        ValueError: K is not a whole number from 1 to 64, or is given for a role other than web.
    """
    rest: list[str] = []
    processes = 1
    items = iter(argv)
    for item in items:
        name, eq, value = item.partition("=")
        if name != "--processes":
            rest.append(item)
            continue
        text = value if eq else next(items, "")
        if not text.isdigit() or not 1 <= int(text) <= 64:
            raise ValueError(f"--processes: expected a whole number from 1 to 64, got {text!r}")
        processes = int(text)
    if processes > 1 and role != "web":
        raise ValueError("--processes is for the web role: `python server.py web --processes K`")
    return rest, processes


def _die_with_parent() -> None:
    """In a forked web process: get SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``).

    The parent only watches its children (``fork_processes``); without this, stopping it would
    leave them serving.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop the whole process group instead
        log.debug("PR_SET_PDEATHSIG unavailable")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop for ``EVENT_LOOP``: None (asyncio's default) or uvloop's."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


if __name__ == "__main__":
    sys.exit(main())
