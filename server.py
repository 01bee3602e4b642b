"""folio-stream entry point: ``python server.py [--flags]`` runs the server; ``users`` manages.

Usage::

    python server.py [--port 8888] [--host 127.0.0.1] [--log-level info] [--…]   # run
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
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web
from tornado.netutil import bind_sockets

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
from streaming.leader import RedisLeader, SoleLeader
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.opstats import StatsCollector, build_stats
from streaming.ratelimit import FailureBackoff, KeyedBuckets, LoginThrottle
from streaming.readiness import Readiness
from streaming.redis_broker import RedisBroker
from streaming.redis_ingest import RedisIngest
from streaming.service import PortfolioService
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


class FolioServer:
    """The whole server in one object, so tests can run it in-process on a free port.

    Args:
        settings: validated settings.
        static_dir: where the built SPA lives.
    """

    def __init__(self, settings: Settings, static_dir: Path = STATIC_DIR) -> None:
        self.settings = settings
        self.static_dir = static_dir
        self.store: Store | None = None
        self.simulator: Any = None
        self.bridge: AlpacaBridge | None = None
        self.http: LimitedHTTPServer | None = None
        self.port = 0
        self.manager: StreamManager | None = None
        self.service: PortfolioService | None = None
        self.ctx: Context | None = None
        self.broker: Broker | None = None
        self.leader: SoleLeader | RedisLeader = SoleLeader()
        self.cluster: ClusterReporter | None = None
        self.ingest: RedisIngest | None = None
        self.recorder: AccountRecorder | None = None
        self.user_control: UserControl | None = None
        self._purge: asyncio.Task[Any] | None = None

    async def start(self) -> int:
        """Open storage, start the simulator (demo), the bridge and the HTTP server.

        Returns:
            The bound HTTP port.
        """
        s = self.settings
        sockets = bind_sockets(s.port, s.host)
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
        else:
            broker = MemoryBroker()
        self.broker = broker
        self.manager = manager = StreamManager(
            broker,
            batch_window_ms=s.batch_window_ms,
            max_connections_per_user=s.max_connections_per_user,
            heartbeat_interval_s=s.heartbeat_interval_s,
            heartbeat_timeout_s=s.heartbeat_timeout_s,
            outbox_max_events=s.outbox_max_events,
        )
        self.service = service = PortfolioService(manager, stale_after_s=s.stale_after_s)
        manager.set_source(service)

        def backoff() -> FailureBackoff:
            return FailureBackoff(free=s.login_free_failures, max_s=s.login_backoff_max_s)

        throttle = LoginThrottle(per_address=backoff(), per_username=backoff())
        auth = SessionAuth(store, s.secret_key, s.session_ttl_s, throttle)
        upgrades = KeyedBuckets(s.ws_upgrade_rate, s.ws_upgrade_burst)
        self.ctx = Context(s, auth, manager, service, upgrades=upgrades)
        self.ctx.extra_status["storage"] = lambda: {"ok": store.fault is None, "fault": store.fault}

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

        accounts = await linked()
        # JSON bodies here are small: refuse anything over 1 MiB before reading it. Idle and
        # header/body timeouts and the per-address cap keep idle or slow clients from holding
        # descriptors (docs/operations.md, "Limits").
        refused = manager.metrics.http_refused
        self.http = LimitedHTTPServer(
            make_app(self.ctx, self.static_dir),
            max_body_size=MAX_BODY_BYTES,
            idle_connection_timeout=s.idle_connection_timeout_s,
            body_timeout=s.body_timeout_s,
            max_per_address=s.max_connections_per_address,
            trusted_proxies=s.trusted_proxies,
            on_refused=lambda reason: refused.labels(reason=reason).inc(),
        )
        self.http.add_sockets(sockets)
        self._purge = every(s.session_purge_interval_s, self._purge_sessions, "session-purge")
        manager.start()
        # The day's account line (GET /api/account/history): sampled from the service's state;
        # only the process publishing broker events records, so points are never doubled.
        self.recorder = AccountRecorder(
            store,
            service.accounts,
            interval_s=s.account_history_interval_s,
            enabled=lambda: service.publishing,
        )
        self.recorder.start()
        self.bridge = AlpacaBridge(
            service,
            accounts,
            data_key=data_key,
            data_secret=data_secret,
            endpoints=endpoints,
            sync_interval_s=s.sync_interval_s,
            paper=s.alpaca_paper,
            accounts_provider=linked,
        )
        bridge = self.bridge
        self.ctx.extra_status["bridge"] = lambda: {**bridge.status(), "demo": s.demo}
        if s.redis_url:
            # Several processes may share this Redis: only the leader publishes broker events.
            service.shared_fanout = True
            service.publishing = False
            self.leader = RedisLeader(s.redis_url, service.set_publishing, prefix=s.redis_prefix)

            async def user_exists(user_id: str) -> bool:
                return await store.get_user(int(user_id)) is not None

            self.ingest = RedisIngest(
                s.redis_url, service.accept_pushed, user_exists, prefix=s.redis_prefix
            )
        await self.bridge.start()
        await self.leader.start()
        if self.ingest is not None:
            await self.ingest.start()
        self.ctx.extra_status["redis"] = self._redis_status
        ctx = self.ctx
        manager.metrics.registry.register(
            StatsCollector(lambda: build_stats(manager, service, ctx.extra_status))
        )
        ctx.readiness = self._readiness()
        self.user_control = UserControl(
            manager,
            store,
            interval_s=s.heartbeat_interval_s,
            redis_url=s.redis_url,
            prefix=s.redis_prefix,
        )
        self.user_control.start()
        ctx.user_control = self.user_control
        if s.redis_url:
            self.cluster = ClusterReporter(s.redis_url, self._process_report, prefix=s.redis_prefix)
            await self.cluster.start()
            self.ctx.extra_status["cluster"] = self.cluster.view
        else:
            self.ctx.extra_status["cluster"] = self._single_process_view
        log.info(
            "folio-stream listening on http://%s:%d (%s, realtime %s, %d linked account(s))",
            s.host,
            self.port,
            "demo mode" if s.demo else "Alpaca",
            s.enable_realtime_portfolio,
            len(accounts),
        )
        return self.port

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
        """Graceful stop: flush batches, close sockets with 1001, stop streams and simulator."""
        if self._purge is not None:
            self._purge.cancel()
        if self.http is not None:
            self.http.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.leader.stop()
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
        if self.broker is not None:
            await self.broker.close()
        if self.store is not None:
            await self.store.close()

    def _readiness(self) -> Readiness:
        """The ``/readyz`` probes: database, Redis (when configured), broker feed, role."""
        readiness = Readiness()
        store, broker, bridge, service = self.store, self.broker, self.bridge, self.service
        assert store is not None and bridge is not None and service is not None

        async def database() -> dict[str, Any]:
            await store.ping()
            return {"ok": True, "engine": store.dialect}

        async def redis() -> dict[str, Any]:
            assert isinstance(broker, RedisBroker)
            await broker.ping()
            return {"ok": True}

        async def broker_feed() -> dict[str, Any]:
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
            if not self.settings.redis_url:
                return {"ok": True, "role": "single"}
            return {"ok": True, "role": "leader" if self.leader.is_leader else "follower"}

        readiness.add("database", database)
        if isinstance(broker, RedisBroker):
            readiness.add("redis", redis)
        readiness.add("broker", broker_feed)
        readiness.add("role", role)
        return readiness

    def _process_report(self) -> dict[str, Any]:
        """Return the figures of this process for the cluster view (:mod:`streaming.cluster`)."""
        assert self.manager is not None
        stats = self.manager.stats()
        return {
            "activeConnections": stats["activeConnections"],
            "activeUsers": stats["activeUsers"],
            "eventsDelivered": stats["eventsDelivered"],
            "latencyMs": stats["latencyMs"],
            "loopLagMs": stats["loopLagMs"],
            "outbox": stats["outbox"],
            "leader": self.leader.is_leader,
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
                "leaders": 1,
            },
            "updatedAt": None,
        }

    def _redis_status(self) -> dict[str, Any]:
        broker = self.broker
        return {
            "fanout": broker.connected if isinstance(broker, RedisBroker) else None,
            "leader": self.leader.is_leader,
            "ingestAccepted": self.ingest.accepted if self.ingest else 0,
            "ingestRejected": self.ingest.rejected if self.ingest else 0,
        }


async def _serve(settings: Settings) -> int:
    server = FolioServer(settings)
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
    configure_logging(settings.log_level, settings.log_format)
    for line in warnings:
        log.warning("%s (a flag wins over its environment variable)", line)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            return runner.run(_serve(settings))
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


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop for ``EVENT_LOOP``: None (asyncio's default) or uvloop's."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


if __name__ == "__main__":
    sys.exit(main())
