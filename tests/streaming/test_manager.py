"""Unit tests for streaming.manager.StreamManager with a fake Client, a fake clock and a
MemoryBroker; every test runs its own event loop with asyncio.run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import pytest
import ujson

from streaming.broker import BrokerUnavailable, Publication
from streaming.closecodes import CloseCode
from streaming.events import Channel
from streaming.frames import PreparedMessage
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.protocol import ClientMessage
from streaming.session import Sent, Session
from streaming.subscription import Subscription

ALL = frozenset({Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT, Channel.TRADES})
EPOCH = "E1"

POS_AAPL = {"symbol": "AAPL", "quantity": "10", "currentPrice": "100.00"}
POS_MSFT = {"symbol": "MSFT", "quantity": "5", "currentPrice": "300.00"}
ACCOUNT = {"equity": "1000.00", "cash": "10.00"}
ORDER_AAPL = {"orderId": "o1", "symbol": "AAPL", "status": "new"}
ORDER_TSLA = {"orderId": "o2", "symbol": "TSLA", "status": "new"}
TRADE_AAPL = {"executionId": "x1", "symbol": "AAPL", "qty": "1"}


class Clock:
    """A clock the test moves by hand; ``step`` is added after every reading."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


class FakeClient(Session):
    """A session that is its own transport: records frames, pings and closes in one log."""

    def __init__(
        self,
        user_id: str = "1",
        sid: str = "s1",
        channels: frozenset[Channel] | None = None,
        symbols: set[str] | None = None,
        on_close: Callable[[FakeClient, int], None] | None = None,
    ) -> None:
        super().__init__(self, user_id, sid)
        self.subscription = Subscription(
            set(channels or ()), frozenset(symbols) if symbols is not None else None
        )
        self.last_seen = -1.0
        self.last_ping = -1.0
        self.on_close = on_close
        self.result = Sent.OK
        self.log: list[tuple[str, Any]] = []

    def send(self, message: PreparedMessage) -> Sent:
        self.log.append(("send", ujson.loads(message.text)))
        return self.result

    def ping(self) -> None:
        self.log.append(("ping", None))

    def close(self, code: int, reason: str) -> None:
        self.log.append(("close", (code, reason)))
        if self.on_close is not None:  # like the handler's on_close after the handshake
            self.on_close(self, code)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for kind, m in self.log if kind == "send"]

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]


class FakeSource:
    """Snapshot source returning a fixed full state."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def view(self, user_id: str) -> dict[str, Any]:
        self.calls.append(user_id)
        return {
            "positions": [POS_AAPL, POS_MSFT],
            "orders": [ORDER_AAPL, ORDER_TSLA],
            "account": ACCOUNT,
            "trades": [TRADE_AAPL],
        }


def make(window_ms: int = 0, **kwargs: Any) -> tuple[StreamManager, MemoryBroker, Clock]:
    clock = kwargs.pop("clock", None) or Clock()
    broker = kwargs.pop("broker", None) or MemoryBroker(epoch=EPOCH)
    manager = StreamManager(broker, batch_window_ms=window_ms, clock=clock, **kwargs)
    return manager, broker, clock


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def sub_msg(
    channels: frozenset[Channel] = ALL,
    symbols: set[str] | None = None,
    last_seq: int | None = None,
    epoch: str | None = None,
) -> ClientMessage:
    return ClientMessage(
        "subscribe",
        channels,
        frozenset(symbols) if symbols is not None else None,
        last_seq,
        epoch,
        symbols_given=symbols is not None,
    )


# -- emit and deliver --------------------------------------------------------------------------


def test_emit_delivers_with_consecutive_seq():
    async def main() -> None:
        manager, _, _ = make(window_ms=0)
        client = FakeClient(channels=ALL)
        assert manager.connect(client)
        manager.publisher.emit("1", "position_update", POS_AAPL)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        manager.publisher.emit("1", "account_update", ACCOUNT)
        manager.publisher.emit("1", "trade_executed", TRADE_AAPL)
        await manager.wait_idle()
        assert client.types() == [
            "position_update",
            "order_update",
            "account_update",
            "trade_executed",
        ]
        assert client.seqs() == [1, 2, 3, 4]
        first = client.messages[0]
        assert {k: v for k, v in first.items() if k != "timestamp"} == {
            "type": "position_update",
            "userId": "1",
            "seq": 1,
            "epoch": EPOCH,
            "data": POS_AAPL,
        }

    run(main)


def test_overloaded_tab_is_closed_after_the_loop_and_the_other_tabs_get_every_event():
    """A tab under back-pressure is closed with 4002 once delivery is done; its siblings lose
    nothing, even though closing unregisters it synchronously (it used to change the set the
    hub was iterating: "Set changed size during iteration")."""

    async def main() -> None:
        manager, _, _ = make()
        slow = FakeClient(channels=ALL, on_close=manager.disconnect)
        healthy = [FakeClient(channels=ALL, on_close=manager.disconnect) for _ in range(3)]
        for c in (slow, *healthy):
            assert manager.connect(c)
        slow.result = Sent.OVERLOADED
        for i in range(5):
            manager.publisher.emit("1", "order_update", {**ORDER_AAPL, "status": f"s{i}"})
        await manager.wait_idle()
        for c in healthy:
            assert c.seqs() == [1, 2, 3, 4, 5]
            assert ("close", (4002, "Too slow: reconnect and take a snapshot")) not in c.log
        assert slow.log.count(("close", (4002, "Too slow: reconnect and take a snapshot"))) == 1
        assert manager.hub.count() == 3
        assert manager.metrics.disconnects.labels(code="4002")._value.get() == 1

    run(main)


def test_emit_goes_only_to_that_user():
    async def main() -> None:
        manager, _, _ = make()
        alice, bob = FakeClient("1", channels=ALL), FakeClient("2", sid="s2", channels=ALL)
        manager.connect(alice)
        manager.connect(bob)
        manager.publisher.emit("2", "order_update", ORDER_AAPL)
        manager.publisher.emit("1", "order_update", ORDER_TSLA)
        await manager.wait_idle()
        assert [(m["userId"], m["seq"], m["data"]) for m in alice.messages] == [
            ("1", 1, ORDER_TSLA)
        ]
        assert [(m["userId"], m["seq"], m["data"]) for m in bob.messages] == [("2", 1, ORDER_AAPL)]

    run(main)


def test_filtered_connection_sees_seq_jumps():
    async def main() -> None:
        manager, _, _ = make()
        client = FakeClient(channels=frozenset({Channel.ORDERS}), symbols={"TSLA"})
        manager.connect(client)
        for data in (ORDER_AAPL, ORDER_TSLA, ORDER_AAPL, ORDER_TSLA):
            manager.publisher.emit("1", "order_update", data)
        manager.publisher.emit("1", "account_update", ACCOUNT)
        await manager.wait_idle()
        assert client.seqs() == [2, 4]

    run(main)


def test_batching_through_flush():
    async def main() -> None:
        manager, broker, _ = make(window_ms=250)
        client = FakeClient(channels=ALL)
        manager.connect(client)
        manager.publisher.emit("1", "position_update", {**POS_AAPL, "quantity": "1"}, at=1.0)
        manager.publisher.emit("1", "position_update", POS_MSFT, at=2.0)
        manager.publisher.emit("1", "position_update", POS_AAPL, at=3.0)
        manager.publisher.emit("1", "account_update", ACCOUNT, at=4.0)
        await manager.wait_idle()
        assert client.messages == []
        assert await broker.position("1") == (0, EPOCH)
        manager.publisher.flush()
        await manager.wait_idle()
        assert [(m["type"], m["seq"], m["data"]) for m in client.messages] == [
            ("batch", 1, {"positions": [POS_AAPL, POS_MSFT], "account": ACCOUNT})
        ]
        manager.publisher.flush()  # nothing pending: nothing new
        await manager.wait_idle()
        assert len(client.messages) == 1
        assert manager.stats()["batching"] == {
            "windowMs": 250,
            "updatesCoalesced": 4,
            "batchesSent": 1,
        }

    run(main)


def test_order_update_flushes_batch_first_through_manager():
    async def main() -> None:
        manager, _, _ = make(window_ms=250)
        client = FakeClient(channels=ALL)
        manager.connect(client)
        manager.publisher.emit("1", "position_update", POS_AAPL, at=1.0)
        manager.publisher.emit("1", "order_update", ORDER_AAPL, at=2.0)
        manager.publisher.emit("1", "position_update", POS_MSFT, at=3.0)
        await manager.wait_idle()
        assert [(m["type"], m["seq"]) for m in client.messages] == [
            ("batch", 1),
            ("order_update", 2),
        ]
        manager.publisher.flush()
        await manager.wait_idle()
        assert [(m["type"], m["seq"]) for m in client.messages][2:] == [("batch", 3)]

    run(main)


def test_latency_measured_with_injected_clock():
    async def main() -> None:
        manager, _, clock = make()
        manager.connect(FakeClient(channels=ALL))
        clock.now = 10.25
        manager.publisher.emit("1", "order_update", ORDER_AAPL, at=10.0)
        await manager.wait_idle()
        latency = manager.metrics.latency_ms()
        assert latency["count"] == 1.0
        assert latency["p50"] == pytest.approx(250.0)

    run(main)


def test_emit_default_at_is_the_clock():
    async def main() -> None:
        manager, broker, clock = make()
        seen: list[Publication] = []
        clock.now = 42.0
        broker.set_handler(seen.append)  # replaces the hub handler: only looks at the publication
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        assert [p.emitted_at for p in seen] == [42.0]

    run(main)


def test_publish_failure_drops_only_that_event(caplog):
    class FlakyBroker(MemoryBroker):
        async def publish(
            self, user_id: str, type_: str, data: Mapping[str, Any], *, emitted_at: float = 0.0
        ) -> Publication:
            if data.get("orderId") == "boom":
                raise RuntimeError("bus down")
            return await super().publish(user_id, type_, data, emitted_at=emitted_at)

    async def main() -> None:
        manager, _, _ = make(broker=FlakyBroker(epoch=EPOCH))
        client = FakeClient(channels=ALL)
        manager.connect(client)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        manager.publisher.emit("1", "order_update", {"orderId": "boom", "symbol": "AAPL"})
        manager.publisher.emit("1", "order_update", ORDER_TSLA)
        await manager.wait_idle()
        assert [(m["seq"], m["data"]["orderId"]) for m in client.messages] == [(1, "o1"), (2, "o2")]

    run(main)
    assert "publish failed for user 1 (order_update); event dropped" in caplog.text


def test_broadcast_status_flushes_held_updates_first():
    async def main() -> None:
        manager, broker, _ = make(window_ms=250)
        a, b = FakeClient("1", channels=frozenset()), FakeClient("2", sid="s2", channels=ALL)
        manager.connect(a)
        manager.connect(b)
        manager.publisher.emit(
            "1", "position_update", POS_AAPL, at=1.0
        )  # held; status flushes it first
        status = {"code": "broker_stale", "message": "no data for 30 s", "stale": True}
        for user_id in manager.hub.users():
            manager.publisher.emit(user_id, "status", status)
        await manager.wait_idle()
        assert [(m["type"], m["seq"], m["data"]) for m in a.messages] == [("status", 2, status)]
        assert [(m["type"], m["seq"], m["data"]) for m in b.messages] == [("status", 1, status)]
        assert await broker.position("3") == (0, EPOCH)

    run(main)


# -- client messages ---------------------------------------------------------------------------


def test_subscribe_sends_subscribed_then_filtered_snapshot():
    async def main() -> None:
        source = FakeSource()
        manager, _, _ = make(source=source)
        other = FakeClient(channels=ALL, sid="s0")
        manager.connect(other)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        client = FakeClient()
        manager.connect(client)
        await manager.handle(
            client, sub_msg(frozenset({Channel.POSITIONS, Channel.ACCOUNT}), {"AAPL"})
        )
        subscribed, snapshot = client.messages
        assert {k: v for k, v in subscribed.items() if k != "timestamp"} == {
            "type": "subscribed",
            "userId": "1",
            "seq": 2,
            "epoch": EPOCH,
            "data": {"channels": ["account", "positions"], "symbols": ["AAPL"], "recovered": False},
        }
        assert (snapshot["type"], snapshot["seq"], snapshot["epoch"]) == ("snapshot", 2, EPOCH)
        assert snapshot["data"] == {"positions": [POS_AAPL], "account": ACCOUNT}
        assert source.calls == ["1"]
        assert client.subscription == Subscription(
            {Channel.POSITIONS, Channel.ACCOUNT}, frozenset({"AAPL"})
        )

    run(main)


def test_subscribe_all_channels_snapshot_has_every_key():
    async def main() -> None:
        manager, _, _ = make(source=FakeSource())
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg())
        subscribed, snapshot = client.messages
        assert subscribed["data"] == {
            "channels": ["account", "orders", "positions", "trades"],
            "symbols": None,
            "recovered": False,
        }
        assert subscribed["seq"] == snapshot["seq"] == 0
        assert snapshot["data"] == {
            "positions": [POS_AAPL, POS_MSFT],
            "orders": [ORDER_AAPL, ORDER_TSLA],
            "account": ACCOUNT,
            "trades": [TRADE_AAPL],
        }

    run(main)


def test_default_source_gives_empty_snapshot():
    async def main() -> None:
        manager, _, _ = make()
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg())
        assert client.messages[1]["data"] == {
            "positions": [],
            "orders": [],
            "account": None,
            "trades": [],
        }

    run(main)


def test_subscribe_again_adds_channels_and_replaces_symbols_only_when_given():
    async def main() -> None:
        manager, _, _ = make(source=FakeSource())
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg(frozenset({Channel.ORDERS}), {"AAPL"}))
        await manager.handle(client, sub_msg(frozenset({Channel.TRADES})))
        assert client.messages[2]["data"] == {
            "channels": ["orders", "trades"],
            "symbols": ["AAPL"],
            "recovered": False,
        }
        assert client.messages[3]["data"] == {"orders": [ORDER_AAPL], "trades": [TRADE_AAPL]}
        await manager.handle(client, sub_msg(frozenset({Channel.TRADES}), {"TSLA", "MSFT"}))
        assert client.messages[4]["data"]["symbols"] == ["MSFT", "TSLA"]
        assert client.messages[5]["data"] == {"orders": [ORDER_TSLA], "trades": []}

    run(main)


def test_subscribe_with_last_seq_in_history_replays_with_original_seqs():
    async def main() -> None:
        source = FakeSource()
        manager, broker, _ = make()
        seen: list[Publication] = []
        for data in (ORDER_AAPL, ORDER_TSLA, ORDER_AAPL, ORDER_TSLA, ORDER_AAPL):
            seen.append(await broker.publish("1", "order_update", data))
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg(ALL, last_seq=2, epoch=EPOCH))
        assert client.types() == ["subscribed", "order_update", "order_update", "order_update"]
        assert client.messages[0]["data"] == {
            "channels": ["account", "orders", "positions", "trades"],
            "symbols": None,
            "recovered": True,
        }
        assert client.seqs() == [5, 3, 4, 5]
        assert client.messages[1:] == [p.message() for p in seen[2:]]  # original timestamps too
        assert source.calls == []  # no snapshot

    run(main)


def test_replay_is_filtered_by_the_new_subscription():
    async def main() -> None:
        manager, broker, _ = make()
        await broker.publish("1", "order_update", ORDER_AAPL)
        await broker.publish("1", "order_update", ORDER_TSLA)
        await broker.publish("1", "account_update", ACCOUNT)
        await broker.publish(
            "1", "batch", {"positions": [POS_AAPL, POS_MSFT], "orders": [], "account": None}
        )
        client = FakeClient()
        manager.connect(client)
        await manager.handle(
            client,
            sub_msg(frozenset({Channel.ORDERS, Channel.POSITIONS}), {"TSLA", "MSFT"}, 0, EPOCH),
        )
        assert [(m["type"], m["seq"], m["data"]) for m in client.messages[1:]] == [
            ("order_update", 2, ORDER_TSLA),
            ("batch", 4, {"positions": [POS_MSFT]}),
        ]

    run(main)


def test_subscribe_up_to_date_is_recovered_with_nothing_to_replay():
    async def main() -> None:
        manager, broker, _ = make(source=FakeSource())
        await broker.publish("1", "order_update", ORDER_AAPL)
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg(ALL, last_seq=1, epoch=EPOCH))
        assert [(m["type"], m["seq"], m["data"]["recovered"]) for m in client.messages] == [
            ("subscribed", 1, True)
        ]

    run(main)


@pytest.mark.parametrize(
    ("last_seq", "epoch", "history"),
    [(1, "OLD", 1000), (9, EPOCH, 1000), (0, EPOCH, 2)],
    ids=["other-epoch", "seq-ahead", "history-trimmed"],
)
def test_subscribe_not_recoverable_falls_back_to_snapshot(last_seq, epoch, history):
    async def main() -> None:
        manager, broker, _ = make(
            broker=MemoryBroker(history_size=history, epoch=EPOCH), source=FakeSource()
        )
        for _ in range(3):
            await broker.publish("1", "order_update", ORDER_AAPL)
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg(frozenset({Channel.ACCOUNT}), None, last_seq, epoch))
        assert [(m["type"], m["seq"], m["epoch"]) for m in client.messages] == [
            ("subscribed", 3, EPOCH),
            ("snapshot", 3, EPOCH),
        ]
        assert client.messages[0]["data"]["recovered"] is False
        assert client.messages[1]["data"] == {"account": ACCOUNT}

    run(main)


def test_unsubscribe_answers_subscribed_with_the_rest():
    async def main() -> None:
        manager, _, _ = make()
        client = FakeClient(channels=ALL, symbols={"AAPL"})
        manager.connect(client)
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        await manager.handle(
            client, ClientMessage("unsubscribe", frozenset({Channel.ORDERS, Channel.TRADES}))
        )
        last = client.messages[-1]
        assert (last["type"], last["seq"], last["data"]) == (
            "subscribed",
            1,
            {"channels": ["account", "positions"], "symbols": ["AAPL"], "recovered": False},
        )
        manager.publisher.emit("1", "order_update", ORDER_AAPL)
        await manager.wait_idle()
        assert client.types() == ["order_update", "subscribed"]  # no longer receives orders

    run(main)


def test_unsubscribe_channel_not_subscribed_is_harmless():
    async def main() -> None:
        manager, _, _ = make()
        client = FakeClient(channels=frozenset({Channel.ACCOUNT}))
        manager.connect(client)
        await manager.handle(client, ClientMessage("unsubscribe", frozenset({Channel.TRADES})))
        assert client.messages[0]["data"]["channels"] == ["account"]

    run(main)


def test_ping_answers_pong_with_current_seq():
    async def main() -> None:
        manager, broker, _ = make()
        client = FakeClient()
        manager.connect(client)
        await broker.publish("1", "order_update", ORDER_AAPL)
        await manager.handle(client, ClientMessage("ping"))
        (pong,) = client.messages
        assert {k: v for k, v in pong.items() if k != "timestamp"} == {
            "type": "pong",
            "userId": "1",
            "seq": 1,
            "epoch": EPOCH,
            "data": {},
        }
        assert await broker.position("1") == (1, EPOCH)  # control messages do not advance seq

    run(main)


def test_error_message_and_metric():
    async def main() -> None:
        manager, _, _ = make()
        client = FakeClient()
        manager.connect(client)
        await manager.error(client, "unknown_type", "unknown message type 'x'")
        (err,) = client.messages
        assert (err["type"], err["seq"], err["data"]) == (
            "error",
            0,
            {"code": "unknown_type", "message": "unknown message type 'x'"},
        )
        assert manager.metrics.client_errors.labels(code="unknown_type")._value.get() == 1

    run(main)


# -- connections and heartbeat -----------------------------------------------------------------


def test_connect_over_the_limit_returns_false():
    async def main() -> None:
        manager, _, _ = make(max_connections_per_user=2)
        clients = [FakeClient() for _ in range(3)]
        assert [manager.connect(c) for c in clients] == [True, True, False]
        assert manager.connect(FakeClient("2")) is True
        assert manager.hub.count() == 3
        assert manager.metrics.rejects.labels(reason="max_connections")._value.get() == 1
        assert clients[2].last_seen == -1.0  # untouched
        manager.disconnect(clients[0], 1000)
        assert manager.connect(clients[2]) is True

    run(main)


def test_connect_stamps_clock_and_stats():
    async def main() -> None:
        manager, _, clock = make()
        client = FakeClient()
        clock.now = 50.0
        manager.connect(client)
        assert (client.last_seen, client.last_ping) == (50.0, 50.0)
        clock.now = 60.0
        manager.connect(FakeClient("2"))
        clock.now = 70.0
        stats = manager.stats()
        assert stats["activeConnections"] == 2
        assert stats["activeUsers"] == 2
        assert stats["connectionsPerUser"] == {"1": 1, "2": 1}
        assert stats["averageConnectionSeconds"] == 15.0
        assert stats["connectsTotal"] == 2

    run(main)


def test_disconnect_is_idempotent_and_ignores_refused_clients():
    async def main() -> None:
        manager, _, _ = make(max_connections_per_user=1)
        a, refused = FakeClient(), FakeClient()
        manager.connect(a)
        manager.connect(refused)
        manager.disconnect(refused, 1008)  # never registered: must not remove anything
        assert manager.hub.count() == 1
        manager.disconnect(a, 1000)
        manager.disconnect(a, 1000)
        assert manager.hub.count() == 0
        assert manager.metrics.disconnects.labels(code="1000")._value.get() == 1
        assert manager.metrics.disconnects.labels(code="1008")._value.get() == 0

    run(main)


def test_sweep_pings_when_due_and_closes_after_timeout():
    """4000 only once a ping sent HEARTBEAT_TIMEOUT_S ago is still unanswered (issue 7)."""

    async def main() -> None:
        manager, _, clock = make(heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0)
        client = FakeClient()
        clock.now = 0.0
        manager.connect(client)
        events: list[tuple[float, list[tuple[str, Any]]]] = []

        def tick(at: float) -> None:
            clock.now = at
            before = len(client.log)
            manager.sweep()
            events.append((at, client.log[before:]))

        tick(14.9)
        tick(15.0)
        tick(20.0)
        clock.now = 25.0
        manager.seen(client)  # a pong: answers the ping of 15.0
        tick(29.9)
        tick(30.0)  # a new ping, unanswered from now on
        tick(45.0)
        tick(59.9)
        assert manager.hub.count() == 1
        tick(60.0)
        assert events == [
            (14.9, []),
            (15.0, [("ping", None)]),
            (20.0, []),
            (29.9, []),
            (30.0, [("ping", None)]),
            (45.0, [("ping", None)]),
            (59.9, []),
            (60.0, [("close", (CloseCode.HEARTBEAT_TIMEOUT, "Heartbeat timeout"))]),
        ]
        assert events[-1][1][0][1][0] == 4000
        # the slot is freed at once (a silent peer may never finish the close handshake)
        assert manager.hub.count() == 0
        assert manager.metrics.disconnects.labels(code="4000")._value.get() == 1
        tick(100.0)
        assert events[-1] == (100.0, [])  # not closed twice

    run(main)


def test_sweep_touches_only_silent_connections():
    async def main() -> None:
        manager, _, clock = make(heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0)
        quiet, chatty = FakeClient(), FakeClient("2", sid="s2")
        clock.now = 0.0
        manager.connect(quiet)
        manager.connect(chatty)
        clock.now = 29.0
        manager.sweep()  # both get a ping (last ping at 0)
        clock.now = 40.0
        manager.seen(chatty)
        clock.now = 59.0
        manager.sweep()
        assert quiet.log == [("ping", None), ("close", (4000, "Heartbeat timeout"))]
        assert chatty.log == [("ping", None), ("ping", None)]  # answered, so pinged again
        assert manager.hub.connections("2") == {chatty}
        assert manager.hub.connections("1") == set()

    run(main)


def test_pings_to_a_crowd_are_spread_over_the_interval_and_stay_spread():
    """1,000 tabs opened at the same instant are not all pinged in one tick: each 0.1 s tick
    sends at most the budget (100 here), and the next round keeps that spread instead of
    bunching again. Nobody times out, and a tick looks only at the sessions that are due."""

    async def main() -> None:
        manager, _, clock = make(
            heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0, max_connections_per_user=1000
        )
        assert manager.heartbeat_tick_s == 0.1
        clients = [FakeClient("1", sid=f"s{i}") for i in range(1000)]
        clock.now = 0.0
        for c in clients:
            manager.connect(c)
        assert manager.ping_budget() == 100  # max(100, ceil(2 × 1000 × 0.1 / 15))
        per_tick: list[int] = []
        for _ in range(10 * 45):
            clock.now += manager.heartbeat_tick_s  # as the timer does: a tick after the last
            before = sum(len(c.log) for c in clients)
            manager.sweep()
            per_tick.append(sum(len(c.log) for c in clients) - before)
            for c in clients:  # every tab answers at once
                if c.log and c.log[-1] == ("ping", None):
                    manager.seen(c)
        first = next(i for i, n in enumerate(per_tick) if n)
        assert first in (148, 149, 150)  # nothing before 15 s (a tick is 0.1 s)
        first_round, second_round = per_tick[first : first + 12], per_tick[first + 150 :][:12]
        assert max(per_tick) == 100
        assert first_round == [100] * 10 + [0, 0]  # 1,000 pings over 1 s, not one burst
        assert second_round == first_round  # 15 s later: the same spread, not bunched again
        assert all(("close", (4000, "Heartbeat timeout")) not in c.log for c in clients)
        assert manager.hub.count() == 1000
        assert len(manager._heartbeats) == 1000  # one live check per session, no pile-up

    run(main)


def test_a_loop_stall_is_not_blamed_on_clients():
    """A 35 s stall of the server (recorded by the lag probe) does not close anyone with 4000;
    the same silence without a stall does."""

    async def main() -> None:
        manager, _, clock = make(heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0)
        client = FakeClient()
        clock.now = 0.0
        manager.connect(client)
        clock.now = 15.0
        manager.sweep()  # ping, unanswered
        manager.loop_lag.record(0.0, 15.0)
        # the process stops from 16 s to 51 s; the probe wakes 35 s late
        manager.loop_lag.record(35.0, 51.0)
        clock.now = 51.0
        manager.sweep()
        assert ("close", (4000, "Heartbeat timeout")) not in client.log
        assert manager.hub.count() == 1
        clock.now = 52.0
        manager.seen(client)  # its pong, read after the stall
        clock.now = 60.0
        manager.sweep()
        assert manager.hub.count() == 1
        # a later, genuine silence is still detected
        clock.now = 66.0
        manager.sweep()  # ping at 66
        for at in (70.0, 80.0, 90.0, 95.9):
            manager.loop_lag.record(0.001, at)
            clock.now = at
            manager.sweep()
        assert manager.hub.count() == 1
        clock.now = 96.1  # 30 s after the ping of 66 s, minus the 1 ms lag samples
        manager.loop_lag.record(0.001, 96.1)
        manager.sweep()
        assert client.log[-1] == ("close", (4000, "Heartbeat timeout"))

    run(main)


def test_a_stall_still_in_progress_is_not_blamed_either():
    """The sweep may run before the lag probe reports the stall that just ended: the time since
    the probe's last wake-up counts as a stall."""

    async def main() -> None:
        manager, _, clock = make(heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0)
        client = FakeClient()
        manager.connect(client)
        clock.now = 15.0
        manager.sweep()
        manager.loop_lag.record(0.0, 15.5)  # last probe before the stall
        clock.now = 60.0  # 45 s later, no probe since
        manager.sweep()
        assert manager.hub.count() == 1

    run(main)


def test_sweep_closes_expired_sessions_with_4001():
    async def main() -> None:
        wall = Clock(1_000.0)
        manager, _, _ = make(wall_clock=wall)
        expiring, forever = FakeClient(sid="s1"), FakeClient(sid="s2")
        manager.connect(expiring)
        manager.connect(forever)
        expiring.expires_at = 1_060.0
        forever.expires_at = 0.0  # never expires
        wall.now = 1_059.9
        manager.sweep()
        assert expiring.log == [] and manager.hub.count() == 2
        wall.now = 1_060.0
        manager.sweep()
        assert expiring.log == [("close", (4001, "Session expired"))]
        assert forever.log == []
        assert manager.hub.connections("1") == {forever}
        assert manager.metrics.disconnects.labels(code="4001")._value.get() == 1

    run(main)


def test_close_session_uses_4001():
    async def main() -> None:
        manager, _, _ = make()
        a, b = FakeClient(sid="s1"), FakeClient(sid="s2")
        manager.connect(a)
        manager.connect(b)
        assert manager.close_session("s1") == 1
        assert a.log == [("close", (4001, "Session revoked"))]
        assert b.log == []

    run(main)


def test_stop_flushes_pending_batches_then_closes_with_1001():
    async def main() -> None:
        manager, _, _ = make(window_ms=250)
        a = FakeClient("1", channels=ALL, on_close=manager.disconnect)
        b = FakeClient("2", sid="s2", channels=ALL, on_close=manager.disconnect)
        manager.connect(a)
        manager.connect(b)
        manager.publisher.emit("1", "position_update", POS_AAPL, at=1.0)
        manager.publisher.emit("2", "account_update", ACCOUNT, at=1.0)
        await manager.stop()
        for client in (a, b):
            assert [(k, v["type"] if k == "send" else v) for k, v in client.log] == [
                ("send", "batch"),
                ("close", (1001, "Server shutting down")),
            ]
        assert a.messages[0]["data"] == {"positions": [POS_AAPL]}
        assert b.messages[0]["data"] == {"account": ACCOUNT}
        assert manager.publisher.batcher.pending_users() == 0
        assert manager.hub.count() == 0

    run(main)


def test_stop_gives_up_waiting_for_close_handshakes_after_grace():
    """Clients that never complete the close are left behind after grace_s (clock-driven)."""

    async def main() -> None:
        clock = Clock(0.0, step=0.5)  # every reading advances the clock by 0.5 s
        manager, _, _ = make(clock=clock)
        stubborn = FakeClient()  # close() does not lead to disconnect
        manager.connect(stubborn)
        await asyncio.wait_for(manager.stop(grace_s=1.0), timeout=5)
        assert stubborn.log == [("close", (1001, "Server shutting down"))]
        assert manager.hub.count() == 1

    run(main)


def test_start_then_stop_manages_timers():
    async def main() -> None:
        manager, _, _ = make(window_ms=250)
        manager.start()
        assert manager.publisher._timer is None  # nothing held: no batch timer armed
        manager.publisher.emit("1", "position_update", {"symbol": "AAPL"})
        assert manager.publisher._timer is not None  # armed for that batch's window end
        timers = list(manager._timers)
        assert len(timers) == 1 and timers[0].is_running()
        await manager.stop()
        assert manager._timers == [] and manager.publisher._timer is None
        assert not any(t.is_running() for t in timers)

    run(main)


def test_start_without_batching_only_runs_heartbeat():
    async def main() -> None:
        manager, _, _ = make(window_ms=0, heartbeat_interval_s=15.0, heartbeat_timeout_s=30.0)
        manager.start()
        (timer,) = manager._timers
        assert timer.callback_time == 100.0  # min(15, 30) / 150 seconds, in ms
        await manager.stop()

    run(main)


# -- broker status -----------------------------------------------------------------------------

STALE = {"code": "broker_stale", "message": "no data for 30 s", "stale": True}
OK = {"code": "broker_ok", "message": "live", "stale": False}


class StaleSource(FakeSource):
    """The view of a trader whose broker feed is stale (PortfolioService.current_view)."""

    async def view(self, user_id: str) -> dict[str, Any]:
        return {**await super().view(user_id), "status": STALE}


def test_late_subscriber_told_feed_is_stale_after_snapshot():
    async def main() -> None:
        manager, _, _ = make(source=StaleSource())
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg(frozenset({Channel.ORDERS})))
        await manager.wait_idle()
        assert client.types() == ["subscribed", "snapshot", "status"]
        assert client.messages[2]["data"] == STALE

    run(main)


def test_late_subscriber_status_has_a_seq_after_the_snapshot():
    """Protocol: a snapshot with seq N is the state after event N; the next event is N+1."""

    async def main() -> None:
        manager, _, _ = make(source=StaleSource())
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg())
        await manager.wait_idle()
        snapshot = next(m for m in client.messages if m["type"] == "snapshot")
        status = next(m for m in client.messages if m["type"] == "status")
        assert status["seq"] == snapshot["seq"] + 1

    run(main)


class NoAccountSource(StaleSource):
    async def view(self, user_id: str) -> dict[str, Any]:
        return {**await super().view(user_id), "account": None}


class OkSource(FakeSource):
    async def view(self, user_id: str) -> dict[str, Any]:
        return {**await super().view(user_id), "status": OK}


@pytest.mark.parametrize(
    ("status", "source"),
    [(None, FakeSource()), (OK, OkSource()), (STALE, NoAccountSource())],
    ids=["no-status-yet", "feed-ok", "no-broker-account"],
)
def test_late_subscriber_not_told_when_not_stale_or_no_account(status, source):
    async def main() -> None:
        manager, _, _ = make(source=source)
        client = FakeClient()
        manager.connect(client)
        await manager.handle(client, sub_msg())
        assert client.types() == ["subscribed", "snapshot"]

    run(main)


# -- the outbox while the engine is unreachable -------------------------------------------------


class FlakyBroker(MemoryBroker):
    """A memory engine that is "unreachable" while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__(epoch=EPOCH)
        self.down = False
        self.attempts = 0

    async def publish(self, user_id: str, type_: str, data: Any, *, emitted_at: float = 0.0) -> Any:
        self.attempts += 1
        if self.down:
            raise BrokerUnavailable("down")
        return await super().publish(user_id, type_, data, emitted_at=emitted_at)


def test_events_wait_in_order_while_the_engine_is_down():
    async def main() -> None:
        broker = FlakyBroker()
        manager, _, _ = make(broker=broker)
        client = FakeClient(channels=ALL)
        assert manager.connect(client)
        broker.down = True
        for i in range(5):
            manager.publisher.emit("1", "order_update", {**ORDER_AAPL, "orderId": f"o{i}"})
        while broker.attempts < 3:  # retried, not dropped
            await asyncio.sleep(0.01)
        assert client.messages == [] and manager.stats()["outbox"]["events"] == 5
        assert manager.stats()["outbox"]["engineDown"] is True
        broker.down = False
        await manager.wait_idle()
        assert [m["data"]["orderId"] for m in client.messages] == [f"o{i}" for i in range(5)]
        assert client.seqs() == [1, 2, 3, 4, 5]
        assert manager.stats()["outbox"] == {"events": 0, "dropped": 0, "engineDown": False}

    run(main)


def test_full_outbox_drops_snapshots_first_and_announces_the_user_again():
    async def main() -> None:
        broker = FlakyBroker()
        manager, _, _ = make(broker=broker, source=FakeSource(), outbox_max_events=100)
        client = FakeClient(channels=ALL)
        assert manager.connect(client)
        broker.down = True
        # The producer gives the user's whole view with each event (PortfolioService does).
        full = {
            "positions": [POS_AAPL, POS_MSFT],
            "orders": [ORDER_AAPL],
            "account": ACCOUNT,
            "trades": [],
        }
        publisher = manager.publisher
        publisher.emit("1", "order_update", {**ORDER_AAPL, "orderId": "keep-0"}, view=lambda: full)
        for i in range(150):
            position = {**POS_AAPL, "quantity": str(i)}
            publisher.emit("1", "position_update", position, view=lambda: full)
        publisher.emit("1", "order_update", {**ORDER_AAPL, "orderId": "keep-1"}, view=lambda: full)
        assert manager.stats()["outbox"]["events"] == 100
        assert manager.publisher.outbox_dropped == 52
        broker.down = False
        await manager.wait_idle()
        orders = [m["data"]["orderId"] for m in client.messages if m["type"] == "order_update"]
        assert orders == ["keep-0", "keep-1"]  # orders and executions are kept
        # The queued snapshots were replaced by the user's state announced again (FakeSource).
        assert [(m["type"], m["data"]) for m in client.messages[2:]] == [
            ("position_update", POS_AAPL),
            ("position_update", POS_MSFT),
            ("account_update", ACCOUNT),
        ]
        assert client.seqs() == [1, 2, 3, 4, 5]
        assert manager.stats()["outbox"] == {"events": 0, "dropped": 52, "engineDown": False}

    run(main)
