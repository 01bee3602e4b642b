"""Peer 1: a minimal ``websockets`` server fanning events out with ``websockets.broadcast()``.

``python bench/peers/ws_peer.py --port P --hook-port H``: WebSocket clients connect to
``ws://127.0.0.1:P/?token=<user token>`` (401 otherwise) and get a ``snapshot`` (their user's seq)
first; events pushed to ``POST http://127.0.0.1:H/internal/events`` go to every connection of
their user with one ``broadcast()`` call. permessage-deflate is offered/accepted as the library
does by default (``compression="deflate"``, its default window and memory settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Users, serve_hook  # noqa: E402


async def main(host: str, port: int, hook_port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    users = Users()
    conns: dict[str, set[ServerConnection]] = {u: set() for u in users.seq}

    def process_request(connection: ServerConnection, request: Any) -> Any:
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        user_id = users.verify(token)
        if user_id is None:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad token\n")
        connection.user_id = user_id  # type: ignore[attr-defined]
        return None

    async def handler(ws: ServerConnection) -> None:
        user_id: str = ws.user_id  # type: ignore[attr-defined]
        # synchronous: no event can slip in between the snapshot's seq and joining the set
        broadcast([ws], json.dumps(users.snapshot(user_id)))
        conns[user_id].add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns[user_id].discard(ws)

    def publish(envelope: dict[str, Any]) -> None:
        broadcast(conns[envelope["userId"]], json.dumps(envelope))

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    hook = await serve_hook(host, hook_port, users, publish)
    async with serve(handler, host, port, process_request=process_request, max_queue=None):
        await stop
    hook.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hook-port", type=int, required=True)
    a = p.parse_args()
    asyncio.run(main(a.host, a.port, a.hook_port))
