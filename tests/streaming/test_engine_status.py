"""The stream manager tells its own connections when the engine fan-out goes down and comes back
(``notice`` ``engine_down``/``engine_ok``, issue 9 item 3), with a fake engine whose
``connected`` the test sets; no Redis here (tests/test_redis_outage.py runs the real thing)."""

from __future__ import annotations

from typing import Any

from streaming.closecodes import CloseCode
from streaming.events import NoticeCode
from streaming.memory_broker import MemoryBroker
from streaming.session import Sent
from tests.streaming.test_manager import (
    ALL,
    EPOCH,
    ORDER_AAPL,
    FakeClient,
    FakeSource,
    make,
    run,
    sub_msg,
)


class SwitchedEngine(MemoryBroker):
    """A memory engine whose fan-out the test switches off and on (``connected``)."""

    def __init__(self) -> None:
        super().__init__(epoch=EPOCH)
        self.connected = True


def notices(client: FakeClient) -> list[dict[str, Any]]:
    return [m for m in client.messages if m["type"] == "notice"]


def test_engine_down_then_back_is_told_once_each_to_every_connection():
    """One ``engine_down`` at the first tick after the fan-out drops, one ``engine_ok`` after."""

    async def main() -> None:
        engine = SwitchedEngine()
        manager, _, _ = make(broker=engine)
        alice, alice2, bob = FakeClient("1", "s1"), FakeClient("1", "s2"), FakeClient("2", "s3")
        for client in (alice, alice2, bob):
            assert manager.connect(client)

        await manager.sweep_paced()
        assert [notices(c) for c in (alice, alice2, bob)] == [[], [], []]

        engine.connected = False
        await manager.sweep_paced()
        await manager.sweep_paced()  # still down: not repeated
        for client in (alice, alice2, bob):
            (down,) = notices(client)
            assert {k: v for k, v in down.items() if k != "timestamp"} == {
                "type": "notice",
                "userId": client.user_id,
                "seq": 0,
                "epoch": "",
                "data": {
                    "code": NoticeCode.ENGINE_DOWN,
                    "message": down["data"]["message"],
                    "degraded": True,
                },
            }
            assert "Redis" in down["data"]["message"]

        engine.connected = True
        await manager.sweep_paced()
        await manager.sweep_paced()
        for client in (alice, alice2, bob):
            assert [(n["data"]["code"], n["data"]["degraded"]) for n in notices(client)] == [
                ("engine_down", True),
                ("engine_ok", False),
            ]
            assert "lastSeq" in notices(client)[1]["data"]["message"]

    run(main)


def test_the_memory_engine_never_sends_a_notice():
    async def main() -> None:
        manager, _, _ = make(source=FakeSource())
        client = FakeClient(channels=ALL)
        assert manager.connect(client)
        await manager.handle(client, sub_msg())
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        for _ in range(3):
            await manager.sweep_paced()
        assert client.types() == ["subscribed", "snapshot", "order_update"]

    run(main)


def test_a_subscribe_while_the_engine_is_down_is_told_first():
    """Told at once, before ``subscribed`` (whose answer waits on the engine)."""

    async def main() -> None:
        engine = SwitchedEngine()
        manager, _, _ = make(broker=engine, source=FakeSource())
        client = FakeClient()
        assert manager.connect(client)
        engine.connected = False
        await manager.handle(client, sub_msg())
        assert client.types() == ["notice", "subscribed", "snapshot"]
        assert client.messages[0]["data"]["code"] == "engine_down"

        # The tick then states the change to everyone (a repeat for this one: idempotent) ...
        await manager.sweep_paced()
        assert [n["data"]["code"] for n in notices(client)] == ["engine_down", "engine_down"]
        # ... and a subscribe once the engine is back is not told anything.
        engine.connected = True
        later = FakeClient("1", "s2")
        assert manager.connect(later)
        await manager.handle(later, sub_msg())
        assert later.types() == ["subscribed", "snapshot"]

    run(main)


def test_a_subscribe_with_the_engine_up_gets_no_notice():
    async def main() -> None:
        engine = SwitchedEngine()
        manager, _, _ = make(broker=engine, source=FakeSource())
        client = FakeClient()
        assert manager.connect(client)
        await manager.handle(client, sub_msg())
        assert client.types() == ["subscribed", "snapshot"]

    run(main)


def test_a_connection_not_reading_the_notice_is_closed_and_the_others_still_get_it():
    async def main() -> None:
        engine = SwitchedEngine()
        manager, _, _ = make(broker=engine)
        closed: list[int] = []
        stuck = FakeClient("1", "s1", on_close=lambda c, code: closed.append(code))
        stuck.result = Sent.OVERLOADED
        other = FakeClient("1", "s2")
        for client in (stuck, other):
            assert manager.connect(client)
        engine.connected = False
        await manager.sweep_paced()
        assert closed == [CloseCode.SLOW_CONSUMER]
        assert manager.hub.count() == 1
        assert [n["data"]["code"] for n in notices(other)] == ["engine_down"]

    run(main)


def test_a_notice_is_not_a_stream_event_and_does_not_move_the_stream():
    """Events after a notice keep their consecutive seqs; replay by lastSeq never includes it."""

    async def main() -> None:
        engine = SwitchedEngine()
        manager, _, _ = make(broker=engine)
        client = FakeClient(channels=ALL)
        assert manager.connect(client)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        engine.connected = False
        await manager.sweep_paced()
        engine.connected = True
        await manager.sweep_paced()
        manager.publisher.emit("1", "order_update", {**ORDER_AAPL, "status": "filled"})
        await manager.wait_idle()
        assert client.types() == ["order_update", "notice", "notice", "order_update"]
        assert [m["seq"] for m in client.messages if m["type"] == "order_update"] == [1, 2]
        replay = await engine.recover("1", 0, EPOCH)
        assert replay is not None and [p.type for p in replay] == ["order_update"] * 2

    run(main)
