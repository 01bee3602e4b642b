"""Login, logout and "who am I" (``/api/login``, ``/api/logout``, ``/api/me``)."""

from __future__ import annotations

from handlers.base import ApiError, BaseHandler
from storage.crypto import HasherBusy
from storage.db import StorageError
from streaming.auth import COOKIE_NAME, LoginThrottled, RevokeNotStored

__all__ = ["LoginHandler", "LogoutHandler", "MeHandler"]


class LoginHandler(BaseHandler):
    """``POST /api/login`` ``{"username", "password"}`` → 200 + ``Set-Cookie: session=<JWT>``.

    The cookie is HttpOnly, SameSite=Lax, Path=/, Secure when the request came over https, and
    lasts ``SESSION_TTL_S``. Wrong credentials → 401 ``invalid_credentials``. Too many failures
    from this address or for this username → 429 ``too_many_attempts`` with ``Retry-After``
    (no password is checked then); too many logins being checked at once → 503 ``busy`` with
    ``Retry-After``; storage failing → 503 ``storage_unavailable``.
    """

    async def post(self) -> None:
        self.check_request_origin()
        body = self.json_body()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username or len(username) > 256:
            raise ApiError(400, "invalid_field", "username must be a non-empty string")
        if not isinstance(password, str) or not password or len(password) > 1024:
            raise ApiError(400, "invalid_field", "password must be a non-empty string")
        logins = self.ctx.manager.metrics.logins
        try:
            result = await self.ctx.auth.login(username, password, self.request.remote_ip or "")
        except LoginThrottled as exc:
            logins.labels(result="throttled").inc()
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins: wait before trying again",
                retry_after_s=exc.retry_after_s,
            ) from None
        except HasherBusy:
            logins.labels(result="busy").inc()
            raise ApiError(
                503, "busy", "too many logins in progress: try again in a second", retry_after_s=1
            ) from None
        except StorageError:
            logins.labels(result="storage_error").inc()
            self.ctx.manager.metrics.storage_errors.inc()
            raise ApiError(
                503, "storage_unavailable", "the session could not be stored: try again later"
            ) from None
        if result is None:
            logins.labels(result="invalid").inc()
            raise ApiError(401, "invalid_credentials", "wrong username or password")
        logins.labels(result="ok").inc()
        user, token = result
        self.set_cookie(
            COOKIE_NAME,
            token,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            path="/",
            expires_days=self.ctx.auth.ttl_s / 86400,
        )
        self.write_json(
            {"userId": user.user_id, "username": user.username, "isAdmin": user.is_admin}
        )


class LogoutHandler(BaseHandler):
    """``POST /api/logout``: revokes the session everywhere; open sockets close with 4001.

    Fails safe when storage cannot record the revocation: the session's sockets are still
    closed with 4001, the session is refused by this process from now on, the cookie is
    cleared, and the answer is 503 ``storage_unavailable`` (other processes sharing the database
    may still accept the session until storage recovers or it expires).
    """

    async def post(self) -> None:
        self.check_request_origin()
        try:
            sid = await self.ctx.auth.logout(self.session_token())
        except RevokeNotStored as exc:
            self.ctx.manager.close_session(exc.sid)
            self.ctx.manager.metrics.storage_errors.inc()
            self.clear_cookie(COOKIE_NAME, path="/")
            self.write_json(
                {
                    "error": {
                        "code": "storage_unavailable",
                        "message": "logged out on this server, but storage failed to record it",
                    }
                },
                status=503,
            )
            return
        if sid is not None:
            self.ctx.manager.close_session(sid)
        self.clear_cookie(COOKIE_NAME, path="/")
        self.write_json({})


class MeHandler(BaseHandler):
    """``GET /api/me`` → ``{"userId", "username", "isAdmin"}``; 401 without a session."""

    async def get(self) -> None:
        auth = await self.require_user()
        user = auth.user
        self.write_json(
            {"userId": user.user_id, "username": user.username, "isAdmin": user.is_admin}
        )
