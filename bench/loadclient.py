"""A fast WebSocket load client for the bench: picows (Cython) connections over several processes.

Why picows: the ``websockets`` asyncio client spent more CPU than the server at 2,000
connections (issue 6), so the load generator, not the server, was measured. picows parses frames
in Cython and calls :meth:`WSListener.on_ws_frame` once per frame with no per-frame coroutine or
queue; here that callback only stamps ``time.time_ns()``, inflates the payload if compressed and
keeps the bytes. JSON is parsed after the run (:func:`latency.analyse_raw`), in the worker
processes, so parsing does not slow the clients down during the load.

permessage-deflate (RFC 7692): picows has no extension support of its own, but it lets a client
add handshake headers and exposes each frame's RSV1 bit, which is all a receiver needs:

- the handshake offers ``Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits``,
  as Chromium and Firefox do;
- the response's ``Sec-WebSocket-Extensions`` says what the server accepted:
  ``server_max_window_bits=N`` (default 15) is the window of the inflater, and
  ``server_no_context_takeover`` (RFC 7692 §7.1.1.1) says every message is compressed from a
  fresh context, so a fresh inflater per message is valid (we use one; without the parameter
  one inflater per connection keeps its context, as the server's compressor does);
- a message whose first frame has RSV1 set is inflated as ``payload + 00 00 ff ff`` with
  ``zlib.decompressobj(-wbits)`` (RFC 7692 §7.2.2). The client sends uncompressed frames only,
  which the extension allows.

Three kinds of server are spoken to (:data:`KINDS`):

- ``folio``: ``/ws/portfolio`` with the ``session`` cookie, a ``subscribe`` message, ready at the
  ``snapshot`` reply (its ``seq`` starts the seq check);
- ``ws``: the ``websockets`` peer (``bench/peers/ws_peer.py``), ``?token=``, ready at the
  ``snapshot`` it sends on connect;
- ``sio``: the Socket.IO peer (``bench/peers/sio_peer.py``) over the plain WebSocket transport,
  Engine.IO v4 framing kept minimal: ``/socket.io/?EIO=4&transport=websocket``, the server's open
  packet ``0{…}``, our connect ``40{"token":…}``, its ``40{…}``; events arrive as
  ``42["<event>", <message>]``; a ping ``2`` is answered with a pong ``3`` at once.

Processes: :class:`ClientPool` starts ``procs`` worker processes (``multiprocessing`` spawn) and
drives them over pipes; each worker runs one event loop (uvloop when installed) holding its share
of the connections. Not part of the test suite; used by ``bench/ladder.py``.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import multiprocessing
import os
import threading
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

KINDS = ("folio", "ws", "sio")
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: appended before inflating a message
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# permessage-deflate negotiation (RFC 7692)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deflate:
    """What the server accepted: inflater window bits and whether each message is fresh."""

    wbits: int = 15
    no_context_takeover: bool = False


def parse_extensions(header: str | None) -> Deflate | None:
    """Parse a response's ``Sec-WebSocket-Extensions``; None unless permessage-deflate.

    Raises:
        ValueError: a parameter outside RFC 7692 §7.1 (e.g. window bits not in 8..15).
    """
    if not header:
        return None
    for ext in header.split(","):
        parts = [p.strip() for p in ext.split(";")]
        if parts[0].lower() != "permessage-deflate":
            continue
        wbits, fresh = 15, False
        for param in parts[1:]:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "server_max_window_bits":
                wbits = int(value)
                if not 8 <= wbits <= 15:
                    raise ValueError(f"server_max_window_bits={value} outside 8..15")
            elif name == "server_no_context_takeover":
                fresh = True
        # zlib cannot inflate with a window of 8 bits in raw mode; 9 reads an 8-bit stream.
        return Deflate(wbits=max(wbits, 9), no_context_takeover=fresh)
    return None


# --------------------------------------------------------------------------------------------
# one connection (inside a worker)
# --------------------------------------------------------------------------------------------
@dataclass
class Conn:
    """One WebSocket connection's identity and everything it received.

    ``frames`` holds ``(receive time ns, message bytes)`` after the connection is ready (the
    handshake-phase frames are consumed by the kind's handshake), inflated if compressed.
    """

    index: int
    user_id: str
    auth: str  # folio: "session=…" cookie; ws/sio: the peer token
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    start_seq: int | None = None
    epoch: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    closed_by_bench: bool = False
    error: str | None = None
    deflate: Deflate | None = None
    inflater: Any = None
    wire_bytes: int = 0
    compressed_msgs: int = 0
    transport: Any = None
    ready: asyncio.Future[None] | None = None
    handshake: Callable[[Conn, bytes], None] | None = None
    partial: list[bytes] | None = None
    partial_rsv1: bool = False
    disconnected: bool = False


def _send_text(conn: Conn, text: str) -> None:
    from picows import WSMsgType

    conn.transport.send(WSMsgType.TEXT, text.encode())


def _ready(conn: Conn, exc: BaseException | None = None) -> None:
    fut = conn.ready
    if fut is not None and not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
    if exc is None:
        conn.handshake = None


def _folio_handshake(conn: Conn, data: bytes) -> None:
    msg = json.loads(data)
    if msg.get("type") == "snapshot":
        conn.start_seq, conn.epoch = msg["seq"], msg.get("epoch")
        _ready(conn)
    elif msg.get("type") == "error":
        _ready(conn, RuntimeError(f"connection {conn.index}: {msg}"))


def _ws_handshake(conn: Conn, data: bytes) -> None:
    msg = json.loads(data)
    if msg.get("type") == "snapshot":
        conn.start_seq, conn.epoch = msg["seq"], msg.get("epoch")
        _ready(conn)


def _sio_handshake(conn: Conn, data: bytes) -> None:
    if data[:1] == b"0":  # Engine.IO open: {"sid", "pingInterval", …}; connect to namespace /
        _send_text(conn, "40" + json.dumps({"token": conn.auth}))
    elif data[:2] == b"40":
        pass  # connected; the peer emits "snapshot" next
    elif data[:2] == b"44":
        _ready(conn, RuntimeError(f"connection {conn.index}: refused {data[:200]!r}"))
    elif data[:2] == b"42":
        event, msg = json.loads(data[2:])
        if event == "snapshot":
            conn.start_seq, conn.epoch = msg["seq"], msg.get("epoch")
            _ready(conn)


def decode_message(kind: str) -> Callable[[bytes], Any]:
    """Raw frame → message dict (None for a frame that carries none), for ``kind``'s framing."""
    if kind != "sio":
        return json.loads

    def sio(data: bytes) -> Any:
        if data[:2] != b"42":
            return None  # Engine.IO ping/pong or other packets
        _, msg = json.loads(data[2:])
        return msg

    return sio


def _make_listener(conn: Conn, kind: str) -> Any:
    from picows import WSListener, WSMsgType

    text, binary, cont, close = (
        WSMsgType.TEXT,
        WSMsgType.BINARY,
        WSMsgType.CONTINUATION,
        WSMsgType.CLOSE,
    )
    time_ns = time.time_ns
    is_sio = kind == "sio"

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            conn.transport = transport
            if kind == "folio":
                channels = ["positions", "orders", "account", "trades"]
                _send_text(conn, json.dumps({"type": "subscribe", "channels": channels}))

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            t = time_ns()
            mt = frame.msg_type
            if mt == text or mt == binary:
                payload = frame.get_payload_as_bytes()
                compressed = frame.rsv1
                if not frame.fin:
                    conn.partial, conn.partial_rsv1 = [payload], compressed
                    return
            elif mt == cont:
                if conn.partial is None:
                    return
                conn.partial.append(frame.get_payload_as_bytes())
                if not frame.fin:
                    return
                payload, compressed = b"".join(conn.partial), conn.partial_rsv1
                conn.partial = None
            elif mt == close:
                conn.close_code = int(frame.get_close_code())
                conn.close_reason = frame.get_close_reason() or ""
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            else:
                return  # pings are answered by picows (enable_auto_pong), pongs ignored
            conn.wire_bytes += len(payload)
            if compressed:
                deflate = conn.deflate
                if deflate is None:
                    conn.error = "compressed frame without negotiated permessage-deflate"
                    transport.disconnect()
                    return
                inflater = conn.inflater
                if inflater is None or deflate.no_context_takeover:
                    inflater = conn.inflater = zlib.decompressobj(-deflate.wbits)
                payload = inflater.decompress(payload + _TAIL)
                conn.compressed_msgs += 1
            if is_sio and payload == b"2":
                transport.send(text, b"3")  # Engine.IO v4 heartbeat: pong at once
                return
            handshake = conn.handshake
            if handshake is not None:
                try:
                    handshake(conn, payload)
                except Exception as exc:  # noqa: BLE001 - fails this connection's open
                    _ready(conn, exc)
                return
            conn.frames.append((t, payload))

        def on_ws_disconnected(self, transport: Any) -> None:
            conn.disconnected = True
            if conn.ready is not None and not conn.ready.done():
                _ready(conn, RuntimeError(f"connection {conn.index}: closed during handshake"))

    return Listener()


async def _open(conn: Conn, cfg: dict[str, Any]) -> None:
    from picows import ws_connect

    kind, port = cfg["kind"], cfg["port"]
    headers: dict[str, str] = {}
    if cfg["compression"]:
        headers["Sec-WebSocket-Extensions"] = DEFLATE_OFFER
    if kind == "folio":
        url = f"ws://127.0.0.1:{port}/ws/portfolio"
        headers["Cookie"] = conn.auth
        conn.handshake = _folio_handshake
    elif kind == "ws":
        url = f"ws://127.0.0.1:{port}/?token={conn.auth}"
        conn.handshake = _ws_handshake
    else:
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        conn.handshake = _sio_handshake
    conn.ready = asyncio.get_running_loop().create_future()

    def factory(request: Any, response: Any) -> Any:
        conn.deflate = parse_extensions(response.headers.get("Sec-WebSocket-Extensions"))
        if cfg["compression"] and cfg.get("require_deflate", True) and conn.deflate is None:
            raise RuntimeError("permessage-deflate offered but not accepted")
        return _make_listener(conn, kind)

    await ws_connect(
        factory,
        url,
        extra_headers=headers,
        websocket_handshake_timeout=30,
        enable_auto_pong=True,
        max_frame_size=2**22,
        read_buffer_init_size=4096,
    )
    await asyncio.wait_for(conn.ready, 30)


# --------------------------------------------------------------------------------------------
# the worker process
# --------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.cfg: dict[str, Any] = {}

    async def open(self, cfg: dict[str, Any]) -> dict[str, Any]:
        self.cfg = cfg
        self.conns = [Conn(index=i, user_id=u, auth=a) for i, u, a in cfg["conns"]]
        sem = asyncio.Semaphore(int(cfg.get("concurrency", 25)))
        errors: list[str] = []

        async def one(conn: Conn) -> None:
            async with sem:
                for attempt in range(3):
                    try:
                        await _open(conn, cfg)
                        return
                    except Exception as exc:  # noqa: BLE001 - retried, then reported
                        if conn.transport is not None:
                            conn.transport.disconnect()
                        conn.transport, conn.start_seq = None, None
                        if attempt == 2:
                            errors.append(f"conn {conn.index}: {exc!r}")
                        await asyncio.sleep(0.5)

        t = time.monotonic()
        await asyncio.gather(*(one(c) for c in self.conns))
        # The run keeps every frame as a (time, bytes) tuple: hundreds of thousands of tracked
        # objects, none in a cycle. CPython's collector would walk them again and again while
        # frames arrive, and its pauses would be measured as the server's latency. Off until
        # the analysis (the same for every server measured).
        gc.collect()
        gc.freeze()
        gc.disable()
        deflated = sum(1 for c in self.conns if c.deflate is not None)
        fresh = sum(1 for c in self.conns if c.deflate and c.deflate.no_context_takeover)
        wbits = sorted({c.deflate.wbits for c in self.conns if c.deflate})
        return {
            "opened": sum(1 for c in self.conns if c.start_seq is not None),
            "errors": errors[:10],
            "error_count": len(errors),
            "connect_s": time.monotonic() - t,
            "deflate_negotiated": deflated,
            "server_no_context_takeover": fresh,
            "server_window_bits": wbits,
        }

    async def drain(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Wait until every connection saw each tag wanted for its user.

        Gives up after ``timeout`` seconds, or once no frame at all arrived on this worker's
        connections for ``quiet`` seconds (a server still working through a backlog keeps
        delivering, so what is missing then is lost, not late).
        """
        wanted = {u: [t.encode() for t in tags] for u, tags in cfg["wanted"].items()}
        now = time.monotonic()
        deadline, quiet = now + cfg["timeout"], cfg.get("quiet", 5.0)
        pending = {c.index: (c, set(wanted.get(c.user_id, []))) for c in self.conns}
        # Frames that arrived before the first wanted update was sent cannot carry it: skip
        # them, or the first pass scans every frame of the run while the last ones arrive,
        # and this process's own stall is measured as their latency.
        since_ns = cfg.get("since_ns", 0)
        seen_upto = {
            c.index: bisect.bisect_left(c.frames, since_ns, key=lambda f: f[0]) for c in self.conns
        }
        total, last_progress, went_quiet = -1, now, False
        while pending and time.monotonic() < deadline:
            received = sum(len(c.frames) for c in self.conns)
            if received != total:
                total, last_progress = received, time.monotonic()
            elif time.monotonic() - last_progress > quiet:
                went_quiet = True
                break
            for idx in list(pending):
                conn, tags = pending[idx]
                if conn.disconnected:
                    del pending[idx]
                    continue
                frames = conn.frames
                start, end = seen_upto[idx], len(frames)
                i = end - 1
                while tags and i >= start:  # newest first: the last updates are at the end
                    data = frames[i][1]
                    tags.difference_update([t for t in tags if t in data])
                    i -= 1
                seen_upto[idx] = end
                if not tags:
                    del pending[idx]
            if pending:
                await asyncio.sleep(0.1)
        return {"pending": len(pending), "quiet": went_quiet}

    async def close(self) -> dict[str, Any]:
        for c in self.conns:
            c.closed_by_bench = c.transport is not None and not c.disconnected
            if c.closed_by_bench:
                c.transport.send_close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
            c.disconnected for c in self.conns if c.transport is not None
        ):
            await asyncio.sleep(0.05)
        for c in self.conns:
            if c.transport is not None and not c.disconnected:
                c.transport.disconnect()
        return {}

    def analyse(self, cfg: dict[str, Any]) -> dict[str, Any]:
        from latency import analyse_raw, effective_timeline

        sent = [tuple(row) for row in cfg["sent"]]
        raw = analyse_raw(self.conns, sent, decode_message(self.cfg["kind"]))
        raw["raw_delivered_ms"] = array("d", raw["raw_delivered_ms"]).tobytes()
        effective = raw["raw_effective_ms"]
        raw["raw_effective_ms"] = array("d", effective).tobytes()
        raw["raw_batch_sizes"] = array("l", raw["raw_batch_sizes"]).tobytes()
        start_ns = min((row[3] for row in sent), default=0)
        raw["timeline"] = [
            effective_timeline(raw.pop("raw_effective_sent_ns"), effective, start_ns)
        ]
        raw["unexpected_closes"] = [
            {"conn": c.index, "user": c.user_id, "code": c.close_code, "reason": c.close_reason}
            for c in self.conns
            if c.start_seq is not None and not c.closed_by_bench
        ]
        raw["client_errors"] = [c.error for c in self.conns if c.error][:10]
        raw["frames_received"] = sum(len(c.frames) for c in self.conns)
        raw["wire_bytes"] = sum(c.wire_bytes for c in self.conns)
        raw["compressed_msgs"] = sum(c.compressed_msgs for c in self.conns)
        self.conns = []
        gc.unfreeze()
        gc.enable()
        return raw


def _worker_main(pipe: Connection, nice: int = 0, cpus: set[int] | None = None) -> None:
    if nice:
        os.nice(nice)  # below the server under test: it stands for browsers on other machines
    if cpus:
        os.sched_setaffinity(0, cpus)  # --pin: off the server's CPU
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is in the bench extra
        pass
    import logging

    logging.getLogger("picows").setLevel(logging.CRITICAL)

    async def serve() -> None:
        worker = _Worker()
        loop = asyncio.get_running_loop()
        while True:
            cmd, cfg = await loop.run_in_executor(None, pipe.recv)
            try:
                if cmd == "open":
                    reply: Any = await worker.open(cfg)
                elif cmd == "drain":
                    reply = await worker.drain(cfg)
                elif cmd == "close":
                    reply = await worker.close()
                elif cmd == "analyse":
                    reply = worker.analyse(cfg)
                elif cmd == "quit":
                    pipe.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                pipe.send(("ok", reply))
            except Exception as exc:  # noqa: BLE001 - sent back to the controller
                pipe.send(("error", repr(exc)))

    asyncio.run(serve())


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (from /proc/<pid>/stat); 0.0 if it is gone."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """``(utime, stime)`` of ``pid`` in seconds: user and kernel time; zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


# --------------------------------------------------------------------------------------------
# the controller (in the bench's own process)
# --------------------------------------------------------------------------------------------
class ClientPool:
    """``procs`` worker processes holding WebSocket connections, driven synchronously.

    Args:
        procs: worker processes (each one event loop); connections are dealt round-robin.
        nice: niceness added in each worker (``--client-nice``).
        cpus: CPUs the workers may run on (``--pin``), or None for any.
    """

    def __init__(self, procs: int, nice: int = 0, cpus: set[int] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(procs):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(theirs, nice, cpus), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def _all(self, cmds: list[tuple[str, Any]], timeout: float = 600.0) -> list[Any]:
        for pipe, cmd in zip(self.pipes, cmds, strict=True):
            pipe.send(cmd)
        replies: list[Any] = [None] * len(self.pipes)
        errors: list[str] = []

        def get(i: int) -> None:
            if not self.pipes[i].poll(timeout):
                errors.append(f"worker {i}: no answer in {timeout:g} s")
                return
            status, reply = self.pipes[i].recv()
            if status != "ok":
                errors.append(f"worker {i}: {reply}")
            replies[i] = reply

        threads = [threading.Thread(target=get, args=(i,)) for i in range(len(self.pipes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("; ".join(errors))
        return replies

    def cpu_s(self) -> float:
        """CPU seconds used so far by all workers."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def open(
        self,
        kind: str,
        port: int,
        conns: list[tuple[int, str, str]],
        compression: bool,
        concurrency: int = 25,
    ) -> dict[str, Any]:
        """Open ``conns`` (index, userId, auth) to a ``kind`` server; merged worker replies."""
        n = len(self.pipes)
        cmds = [
            (
                "open",
                {
                    "kind": kind,
                    "port": port,
                    "compression": compression,
                    "conns": conns[i::n],
                    "concurrency": concurrency,
                },
            )
            for i in range(n)
        ]
        replies = self._all(cmds)
        return {
            "opened": sum(r["opened"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:10],
            "error_count": sum(r["error_count"] for r in replies),
            "connect_s": max(r["connect_s"] for r in replies),
            "deflate_negotiated": sum(r["deflate_negotiated"] for r in replies),
            "server_no_context_takeover": sum(r["server_no_context_takeover"] for r in replies),
            "server_window_bits": sorted({b for r in replies for b in r["server_window_bits"]}),
        }

    def drain(
        self,
        wanted: dict[str, list[str]],
        timeout: float,
        quiet: float = 5.0,
        since_ns: int = 0,
    ) -> tuple[int, str]:
        """Wait for the tags ``wanted`` per user on every connection.

        Stops after ``timeout`` s, or ``quiet`` s without any frame arriving (see the worker).
        ``since_ns`` (``time.time_ns()``): when the earliest wanted update was sent; frames
        received before it are not searched.

        Returns:
            ``(connections still short, how it ended)``: ``"complete"``, ``"quiet"`` (nothing
            arrived any more: what is missing is lost) or ``"timeout"`` (still arriving: what is
            missing may only be late).
        """
        cfg = {"wanted": wanted, "timeout": timeout, "quiet": quiet, "since_ns": since_ns}
        replies = self._all([("drain", cfg)] * len(self.pipes))
        pending = sum(r["pending"] for r in replies)
        if not pending:
            return 0, "complete"
        return pending, "quiet" if any(r["quiet"] for r in replies) else "timeout"

    def close_and_analyse(self, sent: list[tuple[int, str, str, int]]) -> dict[str, Any]:
        """Close every connection, then match ``sent`` against what each received (merged)."""
        self._all([("close", None)] * len(self.pipes))
        replies = self._all([("analyse", {"sent": sent})] * len(self.pipes))
        merged: dict[str, Any] = {}
        for r in replies:
            for key, value in r.items():
                if key in ("raw_delivered_ms", "raw_effective_ms"):
                    merged.setdefault(key, array("d")).frombytes(value)
                elif key == "raw_batch_sizes":
                    merged.setdefault(key, array("l")).frombytes(value)
                elif key == "last_effective_ns":
                    merged[key] = max(merged.get(key, 0), value)
                elif isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
                elif isinstance(value, dict):
                    acc = merged.setdefault(key, {})
                    for k, v in value.items():
                        acc[k] = acc.get(k, 0) + v
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    merged[key] = merged.get(key, 0) + value
                else:
                    merged[key] = value
        for key in ("raw_delivered_ms", "raw_effective_ms", "raw_batch_sizes"):
            merged[key] = list(merged.get(key, []))
        merged["seq_gap_examples"] = merged.get("seq_gap_examples", [])[:5]
        return merged

    def stop(self) -> None:
        """Ask every worker to quit; kill those that do not."""
        for pipe in self.pipes:
            try:
                pipe.send(("quit", None))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
