"""Unit tests for streaming.hub.Hub with a fake Client (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
import ujson

import streaming.hub as hub_module
from streaming.broker import Publication
from streaming.events import Channel, encode
from streaming.frames import PreparedMessage
from streaming.hub import Hub
from streaming.session import Sent, Session
from streaming.subscription import Subscription

ALL = {Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT, Channel.TRADES}
TS = "2026-11-25T20:15:03.123456Z"


class FakeClient(Session):
    """A session that is its own transport: records what the hub does to it."""

    def __init__(
        self,
        user_id: str = "1",
        sid: str = "s1",
        channels: set[Channel] | None = None,
        symbols: set[str] | None = None,
        accept: bool = True,
    ) -> None:
        super().__init__(self, user_id, sid)
        self.subscription = Subscription(
            set(ALL if channels is None else channels),
            frozenset(symbols) if symbols is not None else None,
        )
        self.accept = accept
        self.sent: list[str] = []
        self.frames: list[PreparedMessage] = []
        self.pings = 0
        self.closed: list[tuple[int, str]] = []

    def send(self, message: PreparedMessage) -> Sent:
        self.sent.append(message.text)
        self.frames.append(message)
        return Sent.OK if self.accept else Sent.OVERLOADED

    def ping(self) -> None:
        self.pings += 1

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def messages(self) -> list[dict[str, Any]]:
        return [ujson.loads(t) for t in self.sent]


def pub(user_id: str, type_: str, data: dict[str, Any], seq: int = 1) -> Publication:
    return Publication(user_id, seq, "E", type_, data, TS)


POS_AAPL = {"symbol": "AAPL", "quantity": "1"}
POS_MSFT = {"symbol": "MSFT", "quantity": "2"}
ACCOUNT = {"equity": "10.00"}


# -- registry ----------------------------------------------------------------------------------


def test_add_up_to_the_limit_then_refuse():
    hub = Hub(max_per_user=2)
    a, b, c = FakeClient(), FakeClient(), FakeClient()
    assert hub.add(a) is True
    assert hub.add(b) is True
    assert hub.add(c) is False
    assert hub.connections("1") == {a, b}
    assert hub.count() == 2


def test_limit_is_per_user():
    hub = Hub(max_per_user=1)
    assert hub.add(FakeClient("1"))
    assert hub.add(FakeClient("2"))
    assert not hub.add(FakeClient("1"))
    assert sorted(hub.users()) == ["1", "2"]


def test_refused_client_registers_nothing():
    """A refused client is not in the session index: close_session does not reach it."""
    hub = Hub(max_per_user=1)
    hub.add(FakeClient(sid="s1"))
    refused = FakeClient(sid="s2")
    assert not hub.add(refused)
    assert hub.close_session("s2", 4001, "x") == 0
    assert refused.closed == []


def test_zero_limit_leaves_no_empty_user_entry():
    hub = Hub(max_per_user=0)
    assert not hub.add(FakeClient())
    assert hub.users() == []
    assert hub.count() == 0


def test_remove_frees_the_slot():
    hub = Hub(max_per_user=1)
    a = FakeClient()
    hub.add(a)
    hub.remove(a)
    assert hub.users() == [] and hub.count() == 0
    assert hub.add(FakeClient()) is True


def test_remove_is_idempotent_and_ignores_unknown():
    hub = Hub(max_per_user=2)
    a, b = FakeClient(), FakeClient()
    hub.add(a)
    hub.remove(a)
    hub.remove(a)
    hub.remove(b)
    assert hub.count() == 0


def test_connections_returns_a_copy():
    hub = Hub(max_per_user=2)
    a = FakeClient()
    hub.add(a)
    conns = hub.connections("1")
    conns.clear()
    assert hub.connections("1") == {a}
    assert hub.connections("nobody") == set()


def test_all_and_count():
    hub = Hub(max_per_user=5)
    clients = [FakeClient("1"), FakeClient("1"), FakeClient("2")]
    for c in clients:
        hub.add(c)
    assert sorted(map(id, hub.all())) == sorted(map(id, clients))
    assert hub.count() == 3


# -- deliver -----------------------------------------------------------------------------------


def test_deliver_only_to_that_users_connections():
    hub = Hub(max_per_user=5)
    a1, a2, b = FakeClient("1"), FakeClient("1", sid="s2"), FakeClient("2")
    for c in (a1, a2, b):
        hub.add(c)
    p = pub("1", "position_update", POS_AAPL, seq=7)
    assert hub.deliver(p) == (2, [])
    expected = {
        "type": "position_update",
        "timestamp": TS,
        "userId": "1",
        "seq": 7,
        "epoch": "E",
        "data": POS_AAPL,
    }
    assert a1.messages() == [expected]
    assert a2.messages() == [expected]
    assert b.sent == []
    assert hub.delivered == 2


def test_deliver_to_user_without_connections():
    hub = Hub(max_per_user=5)
    hub.add(FakeClient("2"))
    assert hub.deliver(pub("1", "order_update", {"symbol": "AAPL"})) == (0, [])
    assert hub.delivered == 0


def test_deliver_applies_each_connections_filter():
    hub = Hub(max_per_user=5)
    aapl = FakeClient(symbols={"AAPL"})
    msft = FakeClient(symbols={"MSFT"})
    orders_only = FakeClient(channels={Channel.ORDERS})
    for c in (aapl, msft, orders_only):
        hub.add(c)
    assert hub.deliver(pub("1", "position_update", POS_AAPL)) == (1, [])
    assert [m["data"] for m in aapl.messages()] == [POS_AAPL]
    assert msft.sent == [] and orders_only.sent == []


def test_deliver_batch_cut_per_connection():
    """Two connections, two cuts (kept to two: see the id() reuse bug below)."""
    hub = Hub(max_per_user=5)
    aapl = FakeClient(symbols={"AAPL"})
    account_only = FakeClient(channels={Channel.ACCOUNT})
    for c in (aapl, account_only):
        hub.add(c)
    data = {"positions": [POS_AAPL, POS_MSFT], "orders": [], "account": ACCOUNT}
    assert hub.deliver(pub("1", "batch", data)) == (2, [])
    assert [m["data"] for m in aapl.messages()] == [{"positions": [POS_AAPL], "account": ACCOUNT}]
    assert [m["data"] for m in account_only.messages()] == [{"account": ACCOUNT}]


def test_deliver_batch_skips_connection_with_nothing_left():
    hub = Hub(max_per_user=5)
    positions_only = FakeClient(channels={Channel.POSITIONS})
    trades_only = FakeClient(channels={Channel.TRADES})
    hub.add(positions_only)
    hub.add(trades_only)
    data = {"positions": [POS_AAPL], "orders": [], "account": ACCOUNT}
    assert hub.deliver(pub("1", "batch", data)) == (1, [])
    assert [m["data"] for m in positions_only.messages()] == [{"positions": [POS_AAPL]}]
    assert trades_only.sent == []


def test_status_reaches_every_connection_of_the_user():
    hub = Hub(max_per_user=5)
    nothing = FakeClient(channels=set())
    hub.add(nothing)
    status = {"code": "broker_ok", "message": "ok", "stale": False}
    assert hub.deliver(pub("1", "status", status)) == (1, [])
    assert nothing.messages()[0]["data"] == status


def test_refused_send_is_not_counted():
    hub = Hub(max_per_user=5)
    ok, full = FakeClient(), FakeClient(accept=False)
    hub.add(ok)
    hub.add(full)
    assert hub.deliver(pub("1", "order_update", {"symbol": "AAPL"})) == (1, [full])
    assert len(full.sent) == 1  # it was offered the frame
    assert full.closed == []  # the hub never closes: the caller does, after the loop
    assert hub.delivered == 1


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    def counting(message: Any) -> str:
        calls.append(message["data"])
        return encode(message)

    monkeypatch.setattr(hub_module, "encode", counting)
    return calls


def test_encoded_once_for_unfiltered_event(encode_calls):
    hub = Hub(max_per_user=5)
    clients = [FakeClient() for _ in range(4)]
    for c in clients:
        hub.add(c)
    assert hub.deliver(pub("1", "order_update", {"symbol": "AAPL"})) == (4, [])
    assert len(encode_calls) == 1
    assert len({c.sent[0] for c in clients}) == 1
    assert len({id(c.frames[0]) for c in clients}) == 1  # one prepared message, shared


def test_identical_batch_payloads_encoded_once(encode_calls):
    hub = Hub(max_per_user=5)
    for _ in range(3):
        hub.add(FakeClient())
    data = {"positions": [POS_AAPL], "account": ACCOUNT}  # as the Batcher builds it
    assert hub.deliver(pub("1", "batch", data)) == (3, [])
    assert len(encode_calls) == 1


def test_each_connection_gets_its_own_filtered_batch():
    """Six connections with six different cuts of one batch each get their own cut."""
    hub = Hub(max_per_user=10)
    pos, acc = Channel.POSITIONS, Channel.ACCOUNT
    pos_tsla = {"symbol": "TSLA", "quantity": "3"}
    subs = {
        "positions": FakeClient(channels={pos}),
        "account": FakeClient(channels={acc}),
        "aapl+account": FakeClient(channels={pos, acc}, symbols={"AAPL"}),
        "msft": FakeClient(channels={pos}, symbols={"MSFT"}),
        "tsla": FakeClient(channels={pos}, symbols={"TSLA"}),
        "aapl+msft": FakeClient(channels={pos}, symbols={"AAPL", "MSFT"}),
    }
    for c in subs.values():
        hub.add(c)
    data = {"positions": [POS_AAPL, POS_MSFT, pos_tsla], "orders": [], "account": ACCOUNT}
    assert hub.deliver(pub("1", "batch", data)) == (6, [])
    got = {name: [m["data"] for m in c.messages()] for name, c in subs.items()}
    assert got == {
        "positions": [{"positions": [POS_AAPL, POS_MSFT, pos_tsla]}],
        "account": [{"account": ACCOUNT}],
        "aapl+account": [{"positions": [POS_AAPL], "account": ACCOUNT}],
        "msft": [{"positions": [POS_MSFT]}],
        "tsla": [{"positions": [pos_tsla]}],
        "aapl+msft": [{"positions": [POS_AAPL, POS_MSFT]}],
    }


# -- closing -----------------------------------------------------------------------------------


def test_close_session_closes_only_that_sessions_connections():
    hub = Hub(max_per_user=5)
    a, b = FakeClient("1", sid="s1"), FakeClient("1", sid="s1")
    other = FakeClient("1", sid="s2")
    for c in (a, b, other):
        hub.add(c)
    assert hub.close_session("s1", 4001, "Session revoked") == 2
    assert a.closed == [(4001, "Session revoked")]
    assert b.closed == [(4001, "Session revoked")]
    assert other.closed == []
    assert hub.close_session("unknown", 4001, "x") == 0


def test_session_index_cleared_on_remove():
    hub = Hub(max_per_user=5)
    a = FakeClient(sid="s1")
    hub.add(a)
    hub.remove(a)
    assert hub.close_session("s1", 4001, "x") == 0
    assert a.closed == []


def test_close_all_default_and_subset():
    hub = Hub(max_per_user=5)
    a, b = FakeClient("1"), FakeClient("2")
    hub.add(a)
    hub.add(b)
    hub.close_all(1001, "bye", [b])
    assert (a.closed, b.closed) == ([], [(1001, "bye")])
    hub.close_all(1001, "bye")
    assert a.closed == [(1001, "bye")]
    assert b.closed == [(1001, "bye"), (1001, "bye")]


# -- the per-publication shortcut agrees with filter_data ---------------------------------------


def _subsets(items: list[Any]) -> list[set[Any]]:
    return [{x for i, x in enumerate(items) if mask >> i & 1} for mask in range(1 << len(items))]


@pytest.mark.parametrize(
    "type_,data",
    [
        ("position_update", POS_AAPL),
        ("order_update", {"symbol": "MSFT", "orderId": "o1"}),
        ("account_update", ACCOUNT),
        ("trade_executed", {"symbol": "AAPL", "executionId": "e1"}),
        ("status", {"broker": "connected"}),
        ("batch", {"positions": [POS_AAPL, POS_MSFT], "orders": [POS_AAPL], "account": ACCOUNT}),
        ("batch", {"positions": [POS_AAPL], "account": ACCOUNT}),  # no orders part
        ("batch", {"positions": [POS_AAPL], "orders": [], "account": ACCOUNT}),  # an empty part
        ("batch", {"positions": [POS_MSFT], "orders": [POS_AAPL], "account": None}),
        ("snapshot", {"positions": []}),  # not a stream type: nobody gets it
    ],
)
def test_deliver_sends_what_filter_data_allows_for_every_subscription(type_, data):
    """Every channel set × symbol filter: the hub sends filter_data's answer, no more, no less.

    The hub decides once per publication what unfiltered connections get; this checks that
    shortcut against filter_data (the one definition of the rules) for all 16 channel sets
    with no filter, an AAPL filter, an MSFT filter and an empty filter.
    """
    from streaming.subscription import filter_data

    hub = Hub(max_per_user=1000)
    clients = []
    for channels in _subsets(sorted(ALL)):
        for symbols in (None, {"AAPL"}, {"MSFT"}, set()):
            client = FakeClient(channels=channels, symbols=symbols)
            hub.add(client)
            clients.append(client)
    sent, overloaded = hub.deliver(pub("1", type_, data))
    expected = 0
    for client in clients:
        want = filter_data(client.subscription, type_, data)
        got = [m["data"] for m in client.messages()]
        assert got == ([] if want is None else [ujson.loads(encode(want))]), (
            client.subscription,
            got,
        )
        expected += want is not None
    assert (sent, overloaded) == (expected, [])
    # every connection that gets the data uncut shares one prepared message
    whole = {id(c.frames[0]) for c in clients if filter_data(c.subscription, type_, data) is data}
    assert len(whole) <= 1
