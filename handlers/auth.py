"""Login, logout and "who am I" (``/api/login``, ``/api/logout``, ``/api/me``)."""

from __future__ import annotations

from handlers.base import ApiError, BaseHandler
from streaming.auth import COOKIE_NAME

__all__ = ["LoginHandler", "LogoutHandler", "MeHandler"]


class LoginHandler(BaseHandler):
    """``POST /api/login`` ``{"username", "password"}`` → 200 + ``Set-Cookie: session=<JWT>``.

    The cookie is HttpOnly, SameSite=Lax, Path=/, Secure when the request came over https, and
    lasts ``SESSION_TTL_S``. Wrong credentials → 401 ``invalid_credentials``.
    """

    async def post(self) -> None:
        self.check_request_origin()
        body = self.json_body()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username:
            raise ApiError(400, "invalid_field", "username must be a non-empty string")
        if not isinstance(password, str) or not password:
            raise ApiError(400, "invalid_field", "password must be a non-empty string")
        result = await self.ctx.auth.login(username, password)
        if result is None:
            raise ApiError(401, "invalid_credentials", "wrong username or password")
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
    """``POST /api/logout``: revokes the session everywhere; open sockets close with 4001."""

    async def post(self) -> None:
        self.check_request_origin()
        sid = await self.ctx.auth.logout(self.session_token())
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
