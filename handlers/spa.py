"""Serves the built single-page app from ``static/``: ``index.html`` for every client route."""

from __future__ import annotations

from pathlib import Path

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from handlers.headers import apply_security_headers

__all__ = ["SpaHandler", "AssetHandler"]


class SpaHandler(RequestHandler):
    """``GET /`` and any client-side route → ``static/index.html`` (never cached)."""

    def initialize(self, static_dir: str) -> None:
        self.index = Path(static_dir) / "index.html"

    def set_default_headers(self) -> None:
        apply_security_headers(self, html=True)

    def get(self, path: str = "") -> None:
        if not self.index.exists():
            raise HTTPError(404, "the SPA is not built: run `make client`")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(self.index.read_bytes())


class AssetHandler(StaticFileHandler):
    """The SPA's hashed assets (``/assets/…``, favicons), with the security headers."""

    def set_default_headers(self) -> None:
        apply_security_headers(self)
