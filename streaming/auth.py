"""Session authentication: the one place a request or an upgrade is authorised.

A login creates a row in ``sessions`` and a cookie ``session=<JWT>`` (pyjwt, HS256, claims
``sub`` = user id, ``sid`` = session id, ``iat``, ``exp``; RFC 7519). A token is accepted only if
its signature and ``exp`` are valid **and** its ``sid`` is in the store, unrevoked and unexpired,
so ``POST /api/logout`` takes effect everywhere at once, open WebSockets included. The signing key
is derived from ``SECRET_KEY`` (HKDF, purpose ``"jwt"``); tokens never appear in URLs or logs.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from storage.crypto import derive_key
from storage.db import Store, User

__all__ = ["SessionAuth", "Authenticated", "COOKIE_NAME"]

COOKIE_NAME = "session"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Authenticated:
    """A verified session: the user, the session id and when it expires (unix seconds)."""

    user: User
    sid: str
    expires_at: float = 0.0


class SessionAuth:
    """Issues and verifies session tokens.

    Args:
        store: the user/session store.
        secret_key: the server's ``SECRET_KEY``.
        ttl_s: session lifetime in seconds.
    """

    def __init__(self, store: Store, secret_key: str, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._key = derive_key(secret_key, "jwt")

    async def login(self, username: str, password: str) -> tuple[User, str] | None:
        """Check credentials and open a session.

        Returns:
            ``(user, token)`` where ``token`` is the cookie value, or None for wrong credentials.
        """
        user = await self.store.authenticate(username, password)
        if user is None:
            return None
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
        """Return who ``token`` is, or None: missing, forged, expired, revoked or disabled."""
        if not token:
            return None
        claims = self._claims(token)
        if claims is None:
            return None
        found = await self.store.get_session_user(claims["sid"])
        if found is None:
            return None
        session, user = found
        if str(session.user_id) != claims["sub"] or not session.is_active(datetime.now(UTC)):
            return None
        if user.disabled:
            return None
        return Authenticated(user, session.sid, session.expires_at.timestamp())

    async def logout(self, token: str | None) -> str | None:
        """Revoke the session of ``token``; return its sid (None if the token was not valid)."""
        auth = await self.verify(token)
        if auth is None:
            return None
        await self.store.revoke_session(auth.sid)
        return auth.sid
