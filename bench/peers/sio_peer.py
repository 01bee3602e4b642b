"""Peer 2: a minimal python-socketio server (aiohttp), one room per user, ``emit`` to the room.

``python bench/peers/sio_peer.py --port P``: Socket.IO clients connect to ``/socket.io/`` with
``auth = {"token": <user token>}`` (refused otherwise), join the room of their user and get a
``snapshot`` event (their user's seq) first; events pushed to ``POST /internal/events`` on the
same port are emitted to the user's room as an event named after their ``type``. permessage-deflate
is what aiohttp's ``WebSocketResponse`` does by default (accepted when offered).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HOOK_PATH, Users  # noqa: E402


def build_app() -> web.Application:
    """The aiohttp application: Socket.IO at ``/socket.io/`` and the hook."""
    users = Users()
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        user_id = users.verify((auth or {}).get("token") if isinstance(auth, dict) else None)
        if user_id is None:
            return False
        await sio.enter_room(sid, user_id)
        await sio.emit("snapshot", users.snapshot(user_id), to=sid)
        return True

    async def hook(request: web.Request) -> web.Response:
        status, envelope = users.accept(
            await request.read(), request.headers.get("Authorization", "")
        )
        if envelope is not None:
            await sio.emit(envelope["type"], envelope, room=envelope["userId"])
        body = {"accepted": True} if status == 202 else {}
        return web.json_response(body, status=status)

    app.router.add_post(HOOK_PATH, hook)
    return app


async def main(host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    await runner.cleanup()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    asyncio.run(main(a.host, a.port))
