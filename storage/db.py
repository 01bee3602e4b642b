"""Users, linked broker accounts and login sessions in SQL (SQLite by default, PostgreSQL).

``open_store(database_url, secret_key)`` picks the engine from the URL:

- ``sqlite:///var/folio.db`` (relative) or ``sqlite:////abs/path.db``: the stdlib ``sqlite3``.
  Calls are synchronous but take microseconds on a local file, so they run on the IOLoop.
- ``postgresql://user@host:5432/db``: psycopg 3's ``AsyncConnection`` (autocommit), one
  connection serialised by a lock: logins and session checks are rare next to stream traffic.

The schema is created by :meth:`Store.migrate`, which applies the numbered files in
``storage/migrations/`` (``NNNN_name.<dialect>.sql``) that are not yet recorded in the
``schema_migrations`` table, each in its own transaction. Never change an applied file: add one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from storage.crypto import KeyBox, PasswordHasher

__all__ = [
    "AccountPoint",
    "User",
    "Session",
    "LinkedAccount",
    "Store",
    "UserExistsError",
    "UserInfo",
    "AuditEntry",
    "StorageError",
    "open_store",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Seconds a "this user exists" answer of :meth:`Store.user_exists` is reused. A user deleted by
#: another process (``server.py users delete``) is still accepted by the event hook for at most
#: this long; in this process :meth:`Store.delete_user` forgets the answer at once.
USER_EXISTS_TTL_S = 5.0
#: Most userIds :meth:`Store.user_exists` remembers (the oldest answer is dropped first).
USER_EXISTS_MAX = 20_000


class UserExistsError(ValueError):
    """A user with that username already exists."""


class StorageError(RuntimeError):
    """The database cannot be read or written now (disk full, read-only, connection lost).

    Raised instead of the engine's own error (``sqlite3.OperationalError``,
    ``psycopg.OperationalError``) so callers can fail safe (answer 503) without knowing the
    engine. The message names the cause; the engine's error is chained.
    """


@dataclass(frozen=True)
class User:
    """A person who can log in. ``id`` is the ``userId`` on the wire (as a string)."""

    id: int
    username: str
    is_admin: bool
    disabled: bool = False

    @property
    def user_id(self) -> str:
        """The wire ``userId``: the numeric id as a string."""
        return str(self.id)


@dataclass(frozen=True)
class Session:
    """A login session; the session cookie's JWT carries its ``sid``."""

    sid: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def is_active(self, now: datetime) -> bool:
        """True when neither revoked nor expired at ``now`` (UTC)."""
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True)
class LinkedAccount:
    """A trader's broker account with its decrypted Alpaca key pair (never log ``secret``)."""

    user_id: str
    username: str
    key: str
    secret: str
    paper: bool

    def __repr__(self) -> str:
        return f"LinkedAccount(user_id={self.user_id!r}, username={self.username!r}, key=***)"


@dataclass(frozen=True)
class AccountPoint:
    """One recorded account figure: ``equity`` and ``day_pnl`` in USD (None: unknown)."""

    user_id: int
    at: datetime
    equity: Decimal
    day_pnl: Decimal | None


@dataclass(frozen=True)
class UserInfo:
    """One row of ``server.py users list``: a user and what is attached to it."""

    user: User
    created_at: datetime
    linked: bool
    paper: bool | None
    active_sessions: int


@dataclass(frozen=True)
class AuditEntry:
    """An audited operator action (``audit_log``)."""

    at: datetime
    actor: str
    action: str
    target: str
    detail: str


_USER_COLUMNS = "id, username, is_admin, disabled_at"


def _user(row: Sequence[Any]) -> User:
    return User(int(row[0]), row[1], bool(row[2]), row[3] is not None)


def _now() -> datetime:
    return datetime.now(UTC)


class Store(ABC):
    """Persistence for users, broker accounts and sessions. All methods are coroutines.

    Subclasses implement four primitives (:meth:`_query`, :meth:`_script`, :meth:`_ts`,
    :meth:`_from_ts`); the SQL is shared and written with ``?`` placeholders.
    """

    dialect: str = ""

    def __init__(self, secret_key: str, hasher: PasswordHasher | None = None) -> None:
        self._box = KeyBox(secret_key)
        #: Password hashing off the event loop (bounded thread pool).
        self.hasher = hasher or PasswordHasher()
        #: The last storage fault (one line), None while the last write succeeded.
        self.fault: str | None = None
        #: user id → monotonic seconds until which :meth:`user_exists` answers True unasked.
        self._known_users: dict[int, float] = {}

    def _note(self, sql: str, error: BaseException | None) -> None:
        """Track storage health: a failure sets :attr:`fault`, a successful write clears it."""
        if error is not None:
            self.fault = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        elif self.fault is not None and not sql.lstrip().upper().startswith("SELECT"):
            self.fault = None

    # -- primitives -------------------------------------------------------------------------
    @abstractmethod
    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (empty for statements without a result)."""

    @abstractmethod
    async def _script(self, sql: str, version: str) -> None:
        """Run a migration script and record ``version`` in one transaction."""

    @abstractmethod
    def _ts(self, value: datetime) -> Any:
        """Convert a UTC datetime to the engine's parameter value."""

    @abstractmethod
    def _from_ts(self, value: Any) -> datetime:
        """Convert a stored timestamp back to an aware UTC datetime."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection."""

    # -- schema -----------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations for this dialect.

        Several processes may start at once on a new database: a migration that fails because
        another process applied it meanwhile (its version is then recorded) is not an error.

        Returns:
            The versions applied now (``["0001_initial"]`` on a new database, ``[]`` after).

        Raises:
            Exception: the engine's error when a migration fails for any other reason.
        """
        await self._query(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = await self._applied()
        applied = []
        for path in sorted(MIGRATIONS_DIR.glob(f"*.{self.dialect}.sql")):
            version = path.name.split(".")[0]
            if version in done:
                continue
            try:
                await self._script(path.read_text(), version)
            except Exception:
                if version in await self._applied():
                    continue  # applied concurrently by another process
                raise
            applied.append(version)
        return applied

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the engine's error when the database does not answer."""
        await self._query("SELECT 1")

    async def _applied(self) -> set[str]:
        return {row[0] for row in await self._query("SELECT version FROM schema_migrations")}

    # -- users ------------------------------------------------------------------------------
    async def create_user(self, username: str, password: str, *, is_admin: bool = False) -> User:
        """Create a user with a scrypt-hashed password.

        Args:
            username: 1–64 characters of letters, digits, ``._-``.
            password: clear text; only its hash is stored.
            is_admin: grants access to the admin endpoints.

        Returns:
            The new :class:`User`.

        Raises:
            UserExistsError: the username is taken.
            ValueError: the username or password is malformed.
        """
        if (
            not username
            or len(username) > 64
            or not all(c.isalnum() or c in "._-" for c in username)
        ):
            raise ValueError("username must be 1-64 letters, digits, '.', '_' or '-'")
        if await self.get_user_by_name(username) is not None:
            raise UserExistsError(f"user {username!r} already exists")
        await self._query(
            "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?)",
            (username, await self.hasher.hash(password), is_admin, self._ts(_now())),
        )
        user = await self.get_user_by_name(username)
        assert user is not None
        return user

    async def get_user_by_name(self, username: str) -> User | None:
        """Return the user called ``username`` or None."""
        rows = await self._query(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)
        )
        return _user(rows[0]) if rows else None

    async def get_user(self, user_id: int) -> User | None:
        """Return the user with numeric id ``user_id`` or None."""
        rows = await self._query(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def user_exists(self, user_id: int) -> bool:
        """True when a user with numeric id ``user_id`` exists (disabled or not).

        The event hooks ask this once per event (``POST /internal/events``, the Redis ingest),
        so a yes is remembered for :data:`USER_EXISTS_TTL_S` seconds (at most
        :data:`USER_EXISTS_MAX` users): one database read per user and interval instead of one
        per event. A no is never remembered (a user created a moment ago is found at once).
        :meth:`delete_user` and :meth:`forget_user` drop the remembered answer.

        Raises:
            StorageError: the database cannot be read (and the answer is not remembered).
        """
        known = self._known_users
        until = known.get(user_id)
        now = time.monotonic()
        if until is not None and until > now:
            return True
        user = await self.get_user(user_id)
        known.pop(user_id, None)
        if user is None:
            return False
        if len(known) >= USER_EXISTS_MAX:
            del known[next(iter(known))]  # the oldest answer (dicts keep insertion order)
        known[user_id] = now + USER_EXISTS_TTL_S
        return True

    def forget_user(self, user_id: int) -> None:
        """Drop the remembered :meth:`user_exists` answer for ``user_id`` (it was deleted)."""
        self._known_users.pop(user_id, None)

    async def list_users(self) -> list[User]:
        """Return every user, ordered by id."""
        rows = await self._query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY id")
        return [_user(r) for r in rows]

    async def authenticate(self, username: str, password: str) -> User | None:
        """Return the user when ``password`` is right and the user is enabled, else None.

        Costs the same either way (a dummy hash for unknown users). The scrypt check runs in
        :attr:`hasher`'s worker threads, never on the event loop.

        Raises:
            storage.crypto.HasherBusy: too many logins are being checked at once.
            StorageError: the database cannot be read.
        """
        rows = await self._query(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = ?",
            (username,),
        )
        if not rows:
            # Keep timing flat for unknown users.
            await self.hasher.verify(password, await _dummy_hash(self.hasher))
            return None
        if not await self.hasher.verify(password, rows[0][4]):
            return None
        user = _user(rows[0])
        return None if user.disabled else user

    async def user_details(self) -> list[UserInfo]:
        """Return every user with creation time, broker link and active session count."""
        now = self._ts(_now())
        rows = await self._query(
            "SELECT u.id, u.username, u.is_admin, u.disabled_at, u.created_at, b.paper, "
            "(SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL "
            "AND s.expires_at > ?) FROM users u "
            "LEFT JOIN broker_accounts b ON b.user_id = u.id ORDER BY u.id",
            (now,),
        )
        return [
            UserInfo(
                _user(r),
                self._from_ts(r[4]),
                r[5] is not None,
                None if r[5] is None else bool(r[5]),
                int(r[6]),
            )
            for r in rows
        ]

    async def set_password(self, user_id: int, password: str) -> None:
        """Replace the user's password (scrypt hash).

        Raises:
            ValueError: the password is empty.
        """
        if not password:
            raise ValueError("the password must not be empty")
        await self._query(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            (await self.hasher.hash(password), user_id),
        )

    async def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disable (no login, every session refused) or re-enable a user."""
        await self._query(
            "UPDATE users SET disabled_at = ? WHERE id = ?",
            (self._ts(_now()) if disabled else None, user_id),
        )

    async def delete_user(self, user_id: int) -> None:
        """Delete a user with their sessions and broker account (``ON DELETE CASCADE``)."""
        self.forget_user(user_id)
        await self._query("DELETE FROM users WHERE id = ?", (user_id,))
        self.forget_user(user_id)  # a user_exists() that read the row meanwhile

    async def revoke_user_sessions(self, user_id: int) -> list[str]:
        """Revoke every active session of ``user_id``; return their sids."""
        rows = await self._query(
            "SELECT sid FROM sessions WHERE user_id = ? AND revoked_at IS NULL", (user_id,)
        )
        await self._query(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (self._ts(_now()), user_id),
        )
        return [r[0] for r in rows]

    async def active_sids(self, sids: Sequence[str]) -> set[str]:
        """Return which of ``sids`` are still active: unrevoked, unexpired, user not disabled.

        One query per 500 sids (the periodic session check of open sockets).
        """
        out: set[str] = set()
        now = self._ts(_now())
        unique = list(dict.fromkeys(sids))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await self._query(
                f"SELECT s.sid FROM sessions s JOIN users u ON u.id = s.user_id "
                f"WHERE s.sid IN ({marks}) AND s.revoked_at IS NULL AND s.expires_at > ? "
                "AND u.disabled_at IS NULL",
                (*chunk, now),
            )
            out.update(r[0] for r in rows)
        return out

    async def audit(self, actor: str, action: str, target: str, detail: str = "") -> None:
        """Record an operator action (who, what, on whom) in ``audit_log``."""
        await self._query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (self._ts(_now()), actor, action, target, detail),
        )

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """Return the ``limit`` most recent audit entries, newest first."""
        rows = await self._query(
            "SELECT at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEntry(self._from_ts(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    # -- broker accounts --------------------------------------------------------------------
    async def link_broker_account(
        self, user_id: int, key: str, secret: str, *, paper: bool = True
    ) -> None:
        """Link (or re-link) a user's Alpaca key pair, stored encrypted with Fernet.

        Raises:
            ValueError: ``key`` or ``secret`` is empty.
        """
        if not key or not secret:
            raise ValueError("both the Alpaca key and secret are required")
        await self._query("DELETE FROM broker_accounts WHERE user_id = ?", (user_id,))
        await self._query(
            "INSERT INTO broker_accounts (user_id, alpaca_key_enc, alpaca_secret_enc, paper, "
            "created_at) VALUES (?, ?, ?, ?, ?)",
            (user_id, self._box.encrypt(key), self._box.encrypt(secret), paper, self._ts(_now())),
        )

    async def unlink_broker_account(self, user_id: int) -> bool:
        """Remove the user's broker account; True when there was one."""
        rows = await self._query("SELECT 1 FROM broker_accounts WHERE user_id = ?", (user_id,))
        await self._query("DELETE FROM broker_accounts WHERE user_id = ?", (user_id,))
        return bool(rows)

    async def linked_accounts(self) -> list[LinkedAccount]:
        """Return every linked broker account with decrypted keys.

        Raises:
            storage.crypto.InvalidToken: the keys were stored under another ``SECRET_KEY``.
        """
        rows = await self._query(
            "SELECT u.id, u.username, b.alpaca_key_enc, b.alpaca_secret_enc, b.paper "
            "FROM broker_accounts b JOIN users u ON u.id = b.user_id ORDER BY u.id"
        )
        return [
            LinkedAccount(
                str(r[0]), r[1], self._box.decrypt(r[2]), self._box.decrypt(r[3]), bool(r[4])
            )
            for r in rows
        ]

    # -- sessions ---------------------------------------------------------------------------
    async def create_session(self, user_id: int, sid: str, ttl_s: int) -> Session:
        """Record a new session ``sid`` for ``user_id`` lasting ``ttl_s`` seconds."""
        now = _now()
        expires = now + timedelta(seconds=ttl_s)
        await self._query(
            "INSERT INTO sessions (sid, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (sid, user_id, self._ts(now), self._ts(expires)),
        )
        return Session(sid, user_id, now, expires, None)

    async def get_session(self, sid: str) -> Session | None:
        """Return the session ``sid`` (active or not) or None."""
        rows = await self._query(
            "SELECT sid, user_id, created_at, expires_at, revoked_at FROM sessions WHERE sid = ?",
            (sid,),
        )
        if not rows:
            return None
        r = rows[0]
        revoked = self._from_ts(r[4]) if r[4] is not None else None
        return Session(r[0], int(r[1]), self._from_ts(r[2]), self._from_ts(r[3]), revoked)

    async def get_session_user(self, sid: str) -> tuple[Session, User] | None:
        """Return the session ``sid`` (active or not) and its user in one query, or None.

        This is the hot path: every authenticated request and WebSocket upgrade calls it.
        """
        rows = await self._query(
            "SELECT s.sid, s.user_id, s.created_at, s.expires_at, s.revoked_at, u.username, "
            "u.is_admin, u.disabled_at FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.sid = ?",
            (sid,),
        )
        if not rows:
            return None
        r = rows[0]
        revoked = self._from_ts(r[4]) if r[4] is not None else None
        session = Session(r[0], int(r[1]), self._from_ts(r[2]), self._from_ts(r[3]), revoked)
        return session, User(int(r[1]), r[5], bool(r[6]), r[7] is not None)

    async def revoke_session(self, sid: str) -> None:
        """Mark ``sid`` revoked; a revoked session is refused everywhere.

        Raises:
            StorageError: the database cannot be written.
        """
        await self._query(
            "UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL",
            (self._ts(_now()), sid),
        )

    # -- account history ------------------------------------------------------------------------
    async def add_account_points(self, points: Sequence[AccountPoint]) -> None:
        """Record account points; a point for a (user, instant) already recorded is skipped.

        Args:
            points: ``at`` aware UTC datetimes; money as exact Decimals (stored to the cent).

        Raises:
            StorageError: the database cannot be written.
        """
        for p in points:
            day_pnl = None if p.day_pnl is None else str(p.day_pnl)
            await self._query(
                "INSERT INTO account_snapshots (user_id, at, equity, day_pnl) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id, at) DO NOTHING",
                (p.user_id, self._ts(p.at.astimezone(UTC)), str(p.equity), day_pnl),
            )

    async def account_points(self, user_id: int, since: datetime) -> list[AccountPoint]:
        """Return ``user_id``'s points recorded at or after ``since`` (UTC), oldest first.

        Raises:
            StorageError: the database cannot be read.
        """
        rows = await self._query(
            "SELECT user_id, at, equity, day_pnl FROM account_snapshots "
            "WHERE user_id = ? AND at >= ? ORDER BY at",
            (user_id, self._ts(since.astimezone(UTC))),
        )
        return [
            AccountPoint(
                int(r[0]),
                self._from_ts(r[1]),
                Decimal(str(r[2])),
                None if r[3] is None else Decimal(str(r[3])),
            )
            for r in rows
        ]

    async def prune_account_points(self, before: datetime) -> int:
        """Delete every point recorded before ``before`` (UTC); return how many.

        Raises:
            StorageError: the database cannot be written.
        """
        cutoff = self._ts(before.astimezone(UTC))
        rows = await self._query("SELECT COUNT(*) FROM account_snapshots WHERE at < ?", (cutoff,))
        if rows and rows[0][0]:
            await self._query("DELETE FROM account_snapshots WHERE at < ?", (cutoff,))
        return int(rows[0][0]) if rows else 0

    async def purge_sessions(self, keep_revoked_s: float = 86400.0) -> int:
        """Delete expired sessions and those revoked more than ``keep_revoked_s`` seconds ago.

        A deleted session is refused like a revoked one (its ``sid`` is no longer found).

        Returns:
            How many rows were deleted.

        Raises:
            StorageError: the database cannot be written.
        """
        now = _now()
        params = (self._ts(now), self._ts(now - timedelta(seconds=keep_revoked_s)))
        where = "expires_at < ? OR (revoked_at IS NOT NULL AND revoked_at < ?)"
        rows = await self._query(f"SELECT COUNT(*) FROM sessions WHERE {where}", params)
        if rows and rows[0][0]:
            await self._query(f"DELETE FROM sessions WHERE {where}", params)
        return int(rows[0][0]) if rows else 0


_DUMMY: list[str] = []


async def _dummy_hash(hasher: PasswordHasher) -> str:
    if not _DUMMY:
        _DUMMY.append(await hasher.hash("not-a-password"))
    return _DUMMY[0]


class SqliteStore(Store):
    """SQLite engine (stdlib ``sqlite3``); one connection, foreign keys on."""

    dialect = "sqlite"

    def __init__(self, path: str, secret_key: str, hasher: PasswordHasher | None = None) -> None:
        super().__init__(secret_key, hasher)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA journal_mode = WAL")

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            rows = self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:  # disk full, read-only, I/O error, locked
            self._note(sql, exc)
            raise StorageError(f"SQLite: {exc}") from exc
        self._note(sql, None)
        return rows

    async def _script(self, sql: str, version: str) -> None:
        now = _now().isoformat()
        try:
            self._conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO schema_migrations VALUES ('{version}', '{now}');\nCOMMIT;"
            )
        except sqlite3.Error:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _ts(self, value: datetime) -> Any:
        return value.isoformat()

    def _from_ts(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    async def close(self) -> None:
        self._conn.close()
        self.hasher.close()


class PostgresStore(Store):
    """PostgreSQL engine (psycopg 3 ``AsyncConnection``, autocommit, one connection + lock).

    A statement on a lost connection fails with :class:`StorageError`; the next one reconnects.
    """

    dialect = "postgres"

    def __init__(self, url: str, secret_key: str, hasher: PasswordHasher | None = None) -> None:
        super().__init__(secret_key, hasher)
        self._url = url
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Open the connection.

        Raises:
            psycopg.OperationalError: the server does not answer.
        """
        import psycopg

        self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        async with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    # the connection was lost (server restart, terminated backend): reconnect
                    await self.connect()
                cur = await self._conn.execute(sql.replace("?", "%s"), tuple(params))
                rows = list(await cur.fetchall()) if cur.description else []
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._note(sql, exc)
                raise StorageError(f"PostgreSQL: {exc}") from exc
        self._note(sql, None)
        return rows

    async def _script(self, sql: str, version: str) -> None:
        async with self._lock, self._conn.transaction():
            await self._conn.execute(sql)
            await self._conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s)", (version, _now().isoformat())
            )

    def _ts(self, value: datetime) -> Any:
        return value

    def _from_ts(self, value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self.hasher.close()


async def open_store(
    database_url: str, secret_key: str, hasher: PasswordHasher | None = None
) -> Store:
    """Open the store named by ``database_url`` and apply pending migrations.

    Args:
        database_url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://:memory:``
            or ``postgresql://…``.
        secret_key: the server's ``SECRET_KEY`` (encrypts broker keys).
        hasher: the password hasher (default: one worker thread, 16 pending).

    Returns:
        A migrated :class:`Store`.

    Raises:
        ValueError: the URL scheme is not supported.
        psycopg.OperationalError: PostgreSQL does not answer.
    """
    store: Store
    if database_url.startswith("sqlite://"):
        path = database_url[len("sqlite:///") :] if database_url.startswith("sqlite:///") else ""
        store = SqliteStore(path or ":memory:", secret_key, hasher)
    elif database_url.startswith(("postgresql://", "postgres://")):
        pg = PostgresStore(database_url, secret_key, hasher)
        await pg.connect()
        store = pg
    else:
        raise ValueError(f"unsupported DATABASE_URL scheme: {database_url.split(':', 1)[0]!r}")
    await store.migrate()
    return store
