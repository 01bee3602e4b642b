"""CPU per frame of the fan-out itself, in one process: ``Hub.deliver`` → ``PortfolioSocket.send``.

The ladder's CPU per frame includes the hook, the event loop and everything else the machine
does; this isolates the write path. It builds ``--conns`` real connections' write side — a
:class:`handlers.ws.PortfolioSocket` with its :class:`handlers.ws.FolioProtocol` over a Tornado
``IOStream`` on one end of a ``socketpair`` (no handshake: the objects are assembled directly) —
registers them with a :class:`streaming.hub.Hub` under ``--users`` users, and delivers batch
publications (the shape the Batcher builds) to one user at a time, draining the other ends
between rounds (not timed). It reports CPU µs per frame (``time.process_time``) for:

- ``deliver``: ``Hub.deliver`` as the server runs it (filter, prepare once, send each tab);
- ``send floor``: a bare ``socket.send(frame)`` loop over the same sockets: the kernel's part,
  which no Python change removes.

    .venv/bin/python bench/fanout_micro.py --conns 2000 --rounds 200 [--tcp]

``--tcp`` connects the ends over TCP on 127.0.0.1 (with ``TCP_NODELAY``, as the server sets it)
instead of a ``socketpair``: closer to the ladder, where every send also runs the loopback
receive path in the sender's system time.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.iostream import IOStream  # noqa: E402

from handlers.ws import FolioProtocol, PortfolioSocket  # noqa: E402
from streaming.broker import Publication  # noqa: E402
from streaming.events import Channel  # noqa: E402
from streaming.hub import Hub  # noqa: E402
from streaming.session import Session  # noqa: E402
from streaming.subscription import Subscription  # noqa: E402

ALL = {Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT, Channel.TRADES}


def _pair(tcp: socket.socket | None) -> tuple[socket.socket, socket.socket]:
    """Two connected sockets: a socketpair, or a TCP connection over loopback (as in the ladder)."""
    if tcp is None:
        return socket.socketpair()
    right = socket.create_connection(tcp.getsockname())
    left, _ = tcp.accept()
    left.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as PortfolioSocket.open does
    return left, right


def _connection(user_id: str, n: int, tcp: socket.socket | None) -> tuple[Session, socket.socket]:
    left, right = _pair(tcp)
    left.setblocking(False)
    right.setblocking(False)
    proto = FolioProtocol.__new__(FolioProtocol)
    proto.stream = IOStream(left)
    proto.client_terminated = proto.server_terminated = False
    proto._compressor = object()  # as negotiated: deflate frames
    proto.deflate_wbits = 15
    proto._message_bytes_out = proto._wire_bytes_out = 0
    sock = PortfolioSocket.__new__(PortfolioSocket)
    sock.ws_connection = proto
    session = Session(sock, user_id, f"s{n}", conn_id=f"c{n}")
    session.subscription = Subscription(set(ALL))
    sock.session = session
    return session, right


def _batch(i: int) -> dict[str, Any]:
    return {
        "positions": [
            {
                "symbol": f"BN{(i + k) % 10:02d}",
                "quantity": "100",
                "currentPrice": f"{100 + i % 50}.25",
                "unrealizedPnl": f"{i % 97}.50",
                "marketValue": "10025.00",
                "side": "long",
                "strategyId": f"bench:{i}:{time.time_ns()}",
            }
            for k in range(3)
        ]
    }


async def main() -> int:
    p = argparse.ArgumentParser(prog="bench/fanout_micro.py", description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--tcp", action="store_true", help="TCP over loopback instead of socketpairs")
    a = p.parse_args()
    tcp = None
    if a.tcp:
        tcp = socket.create_server(("127.0.0.1", 0), backlog=1024)
    hub = Hub(max_per_user=a.conns)
    readers: list[socket.socket] = []
    users = [str(u + 1) for u in range(a.users)]
    for n in range(a.conns):
        client, right = _connection(users[n % a.users], n, tcp)
        hub.add(client)
        readers.append(right)

    def drain() -> None:
        for r in readers:
            try:
                while r.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass

    deliver_s = floor_s = 0.0
    frames = 0
    for i in range(a.rounds):
        user = users[i % a.users]
        pub = Publication(user, i + 1, "E", "batch", _batch(i), "2026-12-01T00:00:00.000000Z")
        t0 = time.process_time()
        sent, overloaded = hub.deliver(pub)
        deliver_s += time.process_time() - t0
        assert not overloaded, "a socket buffer filled up: drain more often"
        frames += sent
        drain()
        await asyncio.sleep(0)
    # the kernel's share: the same number of sends of one ~300-byte frame, same sockets
    conns = [c for c in hub.all()]
    frame = b"\xc1" + bytes([126]) + (300).to_bytes(2, "big") + b"x" * 300
    per_user = {
        u: [c.transport.ws_connection.stream.socket for c in conns if c.user_id == u] for u in users
    }
    for i in range(a.rounds):
        socks = per_user[users[i % a.users]]
        t0 = time.process_time()
        for s in socks:
            s.send(frame)
        floor_s += time.process_time() - t0
        drain()
    print(
        f"{'TCP' if a.tcp else 'socketpair'}, {a.conns} conns, {frames} frames: "
        f"deliver {1e6 * deliver_s / frames:.2f} µs/frame, "
        f"send floor {1e6 * floor_s / frames:.2f} µs/frame, "
        f"Python {1e6 * (deliver_s - floor_s) / frames:.2f} µs/frame"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
