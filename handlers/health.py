"""Probes for orchestrators and the served API descriptions.

- ``GET /livez`` → 200 ``{"status": "ok"}`` whenever the event loop answers (restart if not).
- ``GET /readyz`` → 200 when every readiness probe passes, else 503 naming the failing parts
  (``streaming.readiness``): take the process out of rotation, do not restart it.
- ``GET /api/openapi.json`` and ``GET /api/asyncapi.json``: docs/openapi.json and
  docs/asyncapi.json as they are in this checkout.

None needs a session: they reveal no user data.
"""

from __future__ import annotations

from pathlib import Path

from handlers.base import ApiError, BaseHandler

__all__ = ["LivezHandler", "ReadyzHandler", "ApiDocumentHandler"]


class LivezHandler(BaseHandler):
    """``GET /livez``: the loop is running this handler, so the process is alive."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyzHandler(BaseHandler):
    """``GET /readyz``: database, Redis (when configured), broker feed and role."""

    async def get(self) -> None:
        readiness = self.ctx.readiness
        if readiness is None:
            raise ApiError(503, "not_ready", "the server is still starting")
        result = await readiness.check()
        if result["failing"]:
            result["message"] = "not ready: " + ", ".join(
                f"{name} ({result['checks'][name].get('error', 'failing')})"
                for name in result["failing"]
            )
        self.write_json(result, 503 if result["failing"] else 200)


class ApiDocumentHandler(BaseHandler):
    """``GET /api/openapi.json`` / ``/api/asyncapi.json``: the API descriptions (JSON)."""

    def initialize(self, path: str) -> None:
        self.path = Path(path)

    def get(self) -> None:
        try:
            body = self.path.read_bytes()
        except OSError:
            raise ApiError(404, "not_found", f"{self.path.name} is not in this install") from None
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)
