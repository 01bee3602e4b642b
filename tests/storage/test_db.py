"""The user/session store on SQLite and on the real PostgreSQL server (same tests, both engines)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from storage.crypto import InvalidToken
from storage.db import MIGRATIONS_DIR, Store, UserExistsError, open_store
from tests.conftest import postgres_schema_url

SECRET = "s" * 32


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: Any, tmp_path: Any) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a throw-away schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/t.db"
        return
    with postgres_schema_url() as url:
        yield url


async def _open(url: str) -> Store:
    return await open_store(url, SECRET)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_migrations_apply_once(store_url: str) -> None:
    """A new database gets every migration file of its dialect; opening it again applies nothing."""

    async def go() -> None:
        store = await _open(store_url)
        assert await store.migrate() == []
        rows = await store._query("SELECT version FROM schema_migrations ORDER BY version")
        dialect = "sqlite" if store_url.startswith("sqlite") else "postgres"
        files = sorted(p.name.split(".")[0] for p in MIGRATIONS_DIR.glob(f"*.{dialect}.sql"))
        assert [r[0] for r in rows] == files
        assert files[:3] == ["0001_initial", "0002_user_admin", "0003_account_history"]
        await store.close()

    run(go())


def test_users_and_passwords(store_url: str) -> None:
    """Create, authenticate, reject wrong password, duplicate and malformed names."""

    async def go() -> None:
        store = await _open(store_url)
        # Not base64's alphabet, so it cannot turn up in the encoded hash by chance.
        secret = "pw-alice!"
        user = await store.create_user("alice", secret, is_admin=False)
        admin = await store.create_user("root", "pw2", is_admin=True)
        assert (user.username, user.is_admin, admin.is_admin) == ("alice", False, True)
        assert user.user_id == str(user.id)
        assert await store.authenticate("alice", secret) == user
        assert await store.authenticate("alice", secret.upper()) is None
        assert await store.authenticate("nobody", secret) is None
        with pytest.raises(UserExistsError):
            await store.create_user("alice", "x")
        for bad in ("", "a b", "x" * 65, "semi;colon"):
            with pytest.raises(ValueError):
                await store.create_user(bad, "x")
        rows = await store._query("SELECT password_hash FROM users WHERE username = ?", ("alice",))
        assert rows[0][0].startswith("scrypt$") and secret not in rows[0][0]
        assert [u.username for u in await store.list_users()] == ["alice", "root"]
        await store.close()

    run(go())


def test_sessions_and_revocation(store_url: str) -> None:
    """A session is active until revoked or expired."""
    from datetime import UTC, datetime, timedelta

    async def go() -> None:
        store = await _open(store_url)
        user = await store.create_user("bob", "pw")
        session = await store.create_session(user.id, "sid-1", ttl_s=60)
        got = await store.get_session("sid-1")
        assert got is not None and got.user_id == user.id
        now = datetime.now(UTC)
        assert got.is_active(now) and not got.is_active(now + timedelta(seconds=61))
        await store.revoke_session("sid-1")
        got = await store.get_session("sid-1")
        assert got is not None and got.revoked_at is not None and not got.is_active(now)
        assert await store.get_session("nope") is None
        assert session.sid == "sid-1"
        await store.close()

    run(go())


def test_broker_keys_encrypted_at_rest(store_url: str) -> None:
    """Keys are stored as Fernet tokens and come back decrypted; another SECRET_KEY cannot read."""

    async def go() -> None:
        store = await _open(store_url)
        user = await store.create_user("carol", "pw")
        await store.link_broker_account(user.id, "PKCAROL", "very-secret", paper=True)
        await store.link_broker_account(user.id, "PKCAROL2", "very-secret-2", paper=False)
        accounts = await store.linked_accounts()
        assert [(a.user_id, a.key, a.secret, a.paper) for a in accounts] == [
            (user.user_id, "PKCAROL2", "very-secret-2", False)
        ]
        assert "very-secret" not in repr(accounts[0])
        rows = await store._query("SELECT alpaca_key_enc, alpaca_secret_enc FROM broker_accounts")
        assert "PKCAROL" not in rows[0][0] and "very-secret" not in rows[0][1]
        with pytest.raises(ValueError):
            await store.link_broker_account(user.id, "", "x")
        await store.close()
        other = await open_store(store_url, "o" * 32)
        with pytest.raises(InvalidToken):
            await other.linked_accounts()
        await other.close()

    run(go())


def test_unknown_scheme_rejected() -> None:
    """A DATABASE_URL with another scheme is refused with a clear error."""
    with pytest.raises(ValueError, match="unsupported DATABASE_URL"):
        run(open_store("mysql://x", SECRET))


def test_migration_applied_concurrently_is_not_an_error(store_url: str) -> None:
    """A process that read "not applied" before another one applied it does not fail."""

    async def go() -> None:
        first = await _open(store_url)
        second = await _open(store_url)

        async def stale_view() -> set[str]:
            second._applied = real  # type: ignore[method-assign]
            return set()

        real = second._applied
        second._applied = stale_view  # type: ignore[method-assign]
        assert await second.migrate() == []
        await first.close()
        await second.close()

    run(go())


def test_session_and_user_in_one_lookup(store_url: str) -> None:
    """get_session_user joins the session with its user; unknown sid → None."""

    async def go() -> None:
        store = await _open(store_url)
        user = await store.create_user("erin", "pw", is_admin=True)
        await store.create_session(user.id, "sid-e", ttl_s=60)
        found = await store.get_session_user("sid-e")
        assert found is not None
        session, who = found
        assert (session.sid, session.user_id, session.revoked_at) == ("sid-e", user.id, None)
        assert who == user
        assert await store.get_session_user("nope") is None
        await store.close()

    run(go())


def test_disable_delete_passwd_unlink_and_audit(store_url: str) -> None:
    """The operator's user actions: disabled users cannot log in and their sessions stop
    counting; delete cascades; passwords change; links go; actions are audited."""

    async def go() -> None:
        store = await _open(store_url)
        user = await store.create_user("erin", "pw1")
        await store.link_broker_account(user.id, "K", "S", paper=False)
        await store.create_session(user.id, "sid-1", 3600)
        await store.create_session(user.id, "sid-2", 3600)
        assert await store.active_sids(["sid-1", "sid-2", "nope"]) == {"sid-1", "sid-2"}
        [info] = [i for i in await store.user_details() if i.user.username == "erin"]
        assert (info.linked, info.paper, info.active_sessions) == (True, False, 2)

        await store.set_disabled(user.id, True)
        assert await store.authenticate("erin", "pw1") is None
        assert (await store.get_user(user.id)).disabled  # type: ignore[union-attr]
        assert await store.active_sids(["sid-1"]) == set()
        await store.set_disabled(user.id, False)
        assert await store.authenticate("erin", "pw1") is not None

        assert sorted(await store.revoke_user_sessions(user.id)) == ["sid-1", "sid-2"]
        assert await store.active_sids(["sid-1", "sid-2"]) == set()

        await store.set_password(user.id, "pw2")
        assert await store.authenticate("erin", "pw1") is None
        assert await store.authenticate("erin", "pw2") is not None
        assert await store.unlink_broker_account(user.id) is True
        assert await store.unlink_broker_account(user.id) is False

        await store.audit("cli", "delete", "erin", "userId 1")
        await store.delete_user(user.id)
        assert await store.get_user(user.id) is None
        assert await store.get_session("sid-1") is None  # cascaded
        [entry] = await store.audit_entries()
        assert (entry.actor, entry.action, entry.target) == ("cli", "delete", "erin")
        await store.close()

    run(go())


def test_user_exists_is_remembered_briefly_and_forgotten_on_delete(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user_exists reads once per user and TTL; a no, a delete and an expired yes read again."""
    import storage.db as db

    async def go() -> None:
        store = await _open(store_url)
        user = await store.create_user("frank", "pw1")
        other = await store.create_user("gina", "pw1")
        reads: list[int] = []
        get_user = store.get_user

        async def counting(user_id: int) -> Any:
            reads.append(user_id)
            return await get_user(user_id)

        monkeypatch.setattr(store, "get_user", counting)
        clock = [1000.0]
        monkeypatch.setattr(db.time, "monotonic", lambda: clock[0])

        assert await store.user_exists(user.id) is True
        assert await store.user_exists(user.id) is True
        assert reads == [user.id]  # the second answer was remembered
        assert await store.user_exists(999_999) is False
        assert await store.user_exists(999_999) is False
        assert reads.count(999_999) == 2  # a no is never remembered

        clock[0] += db.USER_EXISTS_TTL_S + 0.1  # expired: read again
        assert await store.user_exists(user.id) is True
        assert reads.count(user.id) == 2

        # a disabled user still exists (the hook accepts their events, as before the cache)
        await store.set_disabled(other.id, True)
        assert await store.user_exists(other.id) is True

        await store.delete_user(user.id)  # forgotten at once in this process
        assert await store.user_exists(user.id) is False
        await store.close()

    run(go())


def test_user_exists_memory_is_bounded_and_errors_are_not_remembered(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most USER_EXISTS_MAX answers are kept (oldest dropped); a failed read raises, unkept."""
    import storage.db as db

    monkeypatch.setattr(db, "USER_EXISTS_MAX", 2)

    async def go() -> None:
        store = await _open(f"sqlite:///{tmp_path}/b.db")
        users = [await store.create_user(f"u{n}", "pw1") for n in range(3)]
        for user in users:
            assert await store.user_exists(user.id)
        assert list(store._known_users) == [users[1].id, users[2].id]

        async def broken(user_id: int) -> Any:
            raise db.StorageError("SQLite: disk I/O error")

        monkeypatch.setattr(store, "get_user", broken)
        with pytest.raises(db.StorageError):
            await store.user_exists(users[0].id)  # not remembered: asked again
        assert await store.user_exists(users[2].id)  # remembered: no read needed
        store.forget_user(users[2].id)
        with pytest.raises(db.StorageError):
            await store.user_exists(users[2].id)
        await store.close()

    run(go())
