"""Session authentication: the one place a request or an upgrade is authorised.

A login creates a row in ``sessions`` and a cookie ``session=<JWT>`` (pyjwt, HS256, claims
``sub`` = user id, ``sid`` = session id, ``iat``, ``exp``; RFC 7519). A token is accepted only if
its signature and ``exp`` are valid **and** its ``sid`` is in the store, unrevoked and unexpired,
so ``POST /api/logout`` takes effect everywhere at once, open WebSockets included. The signing key
is derived from ``SECRET_KEY`` (HKDF, purpose ``"jwt"``); tokens never appear in URLs or logs.

Logins are throttled per client address and per username
(:class:`streaming.ratelimit.LoginThrottle`) before any password is hashed, and hashing runs
off the event loop (the store's
:class:`storage.crypto.PasswordHasher`). When storage fails, :meth:`SessionAuth.logout` still
revokes the session *in this process* (kept in memory until it expires) before raising
:class:`RevokeNotStored`, so the caller can close the sockets and answer 503.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from storage.crypto import derive_key
from storage.db import StorageError, Store, User
from streaming.ratelimit import FailureBackoff, LoginThrottle

__all__ = ["SessionAuth", "Authenticated", "COOKIE_NAME", "LoginThrottled", "RevokeNotStored"]

COOKIE_NAME = "session"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Authenticated:
    """A verified session: the user, the session id and when it expires (unix seconds)."""

    user: User
    sid: str
    expires_at: float = 0.0


class LoginThrottled(Exception):
    """Too many failed logins for this address or username; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins: retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class RevokeNotStored(StorageError):
    """Logout could not be written; the session ``sid`` is revoked in this process only."""

    def __init__(self, sid: str, cause: StorageError) -> None:
        super().__init__(str(cause))
        self.sid = sid


class SessionAuth:
    """Issues and verifies session tokens.

    Args:
        store: the user/session store.
        secret_key: the server's ``SECRET_KEY``.
        ttl_s: session lifetime in seconds.
        throttle: login throttling (default: 5 free failures, then 1 s doubling up to 300 s,
            per address and per username).
    """

    def __init__(
        self, store: Store, secret_key: str, ttl_s: int, throttle: LoginThrottle | None = None
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._key = derive_key(secret_key, "jwt")
        self.throttle = throttle or LoginThrottle(FailureBackoff(), FailureBackoff())
        #: sid → unix expiry of sessions revoked here while storage could not record it.
        self._revoked: dict[str, float] = {}

    async def login(
        self, username: str, password: str, address: str = ""
    ) -> tuple[User, str] | None:
        """Check credentials and open a session.

        Args:
            username: as typed.
            password: clear text.
            address: the client's address (throttling key).

        Returns:
            ``(user, token)`` where ``token`` is the cookie value, or None for wrong credentials.

        Raises:
            LoginThrottled: this address or username failed too often lately (no hash was done).
            storage.crypto.HasherBusy: too many logins are being checked right now.
            storage.db.StorageError: the session could not be stored.
        """
        wait = self.throttle.retry_after(address, username)
        if wait > 0:
            raise LoginThrottled(wait)
        user = await self.store.authenticate(username, password)
        if user is None:
            self.throttle.failure(address, username)
            return None
        self.throttle.success(address, username)
        sid = secrets.token_urlsafe(18)
        await self.store.create_session(user.id, sid, self.ttl_s)
        now = int(time.time())
        claims = {"sub": str(user.id), "sid": sid, "iat": now, "exp": now + self.ttl_s}
        return user, jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def _claims(self, token: str) -> dict[str, str] | None:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={"require": ["sub", "sid", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
            return None
        return claims

    async def verify(self, token: str | None) -> Authenticated | None:
        """Return who ``token`` belongs to, or None if it is missing, forged, expired or revoked."""
        if not token:
            return None
        claims = self._claims(token)
        if claims is None or claims["sid"] in self._revoked:
            return None
        found = await self.store.get_session_user(claims["sid"])
        if found is None:
            return None
        session, user = found
        if str(session.user_id) != claims["sub"] or not session.is_active(datetime.now(UTC)):
            return None
        return Authenticated(user, session.sid, session.expires_at.timestamp())

    async def logout(self, token: str | None) -> str | None:
        """Revoke the session of ``token``; return its sid (None if the token was not valid).

        Raises:
            RevokeNotStored: storage failed; the session is nevertheless revoked in this
                process (``.sid`` names it) until it expires.
        """
        if not token:
            return None
        claims = self._claims(token)
        if claims is None:
            return None
        try:
            auth = await self.verify(token)
            if auth is None:
                return None
            await self.store.revoke_session(auth.sid)
        except StorageError as exc:
            # The token is ours (signature checked): fail safe, refuse it from now on here.
            self._revoked[claims["sid"]] = float(claims.get("exp", 0) or 0)
            raise RevokeNotStored(claims["sid"], exc) from exc
        return auth.sid

    async def purge(self) -> int:
        """Delete expired sessions from the store and forget expired in-memory revocations.

        Returns:
            Rows deleted from the store.

        Raises:
            storage.db.StorageError: the store could not be written.
        """
        now = time.time()
        for sid in [s for s, exp in self._revoked.items() if exp <= now]:
            del self._revoked[sid]
        return await self.store.purge_sessions(keep_revoked_s=self.ttl_s)
