"""Unit tests for streaming.batching.Batcher (coalescing position/account updates)."""

from __future__ import annotations

from typing import Any

from streaming.batching import Batcher
from streaming.events import EventType


def pos(symbol: str, qty: str = "10", price: str = "100.00") -> dict[str, Any]:
    return {"symbol": symbol, "quantity": qty, "currentPrice": price}


def acct(equity: str) -> dict[str, Any]:
    return {"equity": equity, "cash": "1.00"}


def order(order_id: str, symbol: str = "AAPL") -> dict[str, Any]:
    return {"orderId": order_id, "symbol": symbol, "status": "new"}


def test_position_update_is_held():
    b = Batcher(250)
    assert b.add("1", "position_update", pos("AAPL"), at=1.0) == []
    assert b.pending_users() == 1


def test_account_update_is_held():
    b = Batcher(250)
    assert b.add("1", "account_update", acct("10.00"), at=1.0) == []
    assert b.pending_users() == 1


def test_latest_per_symbol_wins_and_positions_sorted():
    """Several updates for one symbol become its latest snapshot; symbols come out sorted."""
    b = Batcher(250)
    b.add("1", "position_update", pos("MSFT", "1"), at=1.0)
    b.add("1", "position_update", pos("AAPL", "1"), at=1.1)
    b.add("1", "position_update", pos("MSFT", "2"), at=1.2)
    b.add("1", "position_update", pos("MSFT", "0"), at=1.3)
    assert b.drain() == [
        (
            "1",
            "batch",
            {"positions": [pos("AAPL", "1"), pos("MSFT", "0")]},
            1.0,
        )
    ]


def test_account_latest_wins():
    b = Batcher(250)
    b.add("1", "account_update", acct("1.00"), at=5.0)
    b.add("1", "account_update", acct("2.00"), at=6.0)
    assert b.drain() == [("1", "batch", {"account": acct("2.00")}, 5.0)]


def test_positions_and_account_in_one_batch():
    b = Batcher(250)
    b.add("1", "account_update", acct("1.00"), at=2.0)
    b.add("1", "position_update", pos("AAPL"), at=3.0)
    assert b.drain() == [("1", "batch", {"positions": [pos("AAPL")], "account": acct("1.00")}, 2.0)]


def test_emitted_at_is_the_first_held_update():
    """The batch's emitted_at is the time of the oldest update it carries."""
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=7.5)
    b.add("1", "position_update", pos("AAPL", "2"), at=9.0)
    b.add("1", "account_update", acct("1.00"), at=9.5)
    assert [o[3] for o in b.drain()] == [7.5]


def test_enum_type_is_coalesced_like_its_string():
    b = Batcher(250)
    assert b.add("1", EventType.POSITION_UPDATE, pos("AAPL"), at=1.0) == []
    assert b.add("1", EventType.ACCOUNT_UPDATE, acct("1.00"), at=1.0) == []
    assert b.pending_users() == 1


def test_held_data_is_copied():
    """Mutating the caller's dict after add does not change the batch."""
    b = Batcher(250)
    data = pos("AAPL", "1")
    b.add("1", "position_update", data, at=1.0)
    data["quantity"] = "999"
    assert b.drain()[0][2]["positions"] == [pos("AAPL", "1")]


def test_order_update_flushes_pending_batch_first():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.add("1", "account_update", acct("3.00"), at=1.5)
    out = b.add("1", "order_update", order("o1"), at=2.0)
    assert out == [
        ("1", "batch", {"positions": [pos("AAPL")], "account": acct("3.00")}, 1.0),
        ("1", "order_update", order("o1"), 2.0),
    ]
    assert b.pending_users() == 0
    assert b.drain() == []


def test_trade_executed_flushes_pending_batch_first():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    trade = {"executionId": "e1", "symbol": "AAPL"}
    out = b.add("1", "trade_executed", trade, at=2.0)
    assert [(o[1], o[3]) for o in out] == [("batch", 1.0), ("trade_executed", 2.0)]
    assert out[1][2] == trade


def test_order_update_without_pending_goes_out_alone():
    b = Batcher(250)
    assert b.add("1", "order_update", order("o1"), at=4.0) == [
        ("1", "order_update", order("o1"), 4.0)
    ]
    assert b.batches == 0


def test_status_is_not_held_and_flushes_pending():
    b = Batcher(250)
    b.add("1", "account_update", acct("1.00"), at=1.0)
    status = {"code": "broker_ok", "message": "", "stale": False}
    out = b.add("1", "status", status, at=2.0)
    assert [o[1] for o in out] == ["batch", "status"]


def test_passed_through_type_is_a_plain_string():
    b = Batcher(250)
    (out,) = b.add("1", EventType.ORDER_UPDATE, order("o1"), at=1.0)
    assert out[1] == "order_update"
    assert type(out[1]) is str


def test_order_preserved_across_interleaving():
    """pos, order, pos, trade → batch, order, batch, trade, each batch with its own updates."""
    b = Batcher(250)
    out = []
    out += b.add("1", "position_update", pos("AAPL", "1"), at=1.0)
    out += b.add("1", "order_update", order("o1"), at=2.0)
    out += b.add("1", "position_update", pos("AAPL", "2"), at=3.0)
    out += b.add("1", "trade_executed", {"executionId": "e1", "symbol": "AAPL"}, at=4.0)
    assert [(o[1], o[3]) for o in out] == [
        ("batch", 1.0),
        ("order_update", 2.0),
        ("batch", 3.0),
        ("trade_executed", 4.0),
    ]
    assert out[0][2]["positions"] == [pos("AAPL", "1")]
    assert out[2][2]["positions"] == [pos("AAPL", "2")]


def test_window_zero_passes_everything_through():
    b = Batcher(0)
    assert b.add("1", "position_update", pos("AAPL", "1"), at=1.0) == [
        ("1", "position_update", pos("AAPL", "1"), 1.0)
    ]
    assert b.add("1", "position_update", pos("AAPL", "2"), at=2.0) == [
        ("1", "position_update", pos("AAPL", "2"), 2.0)
    ]
    assert b.add("1", "account_update", acct("1.00"), at=3.0) == [
        ("1", "account_update", acct("1.00"), 3.0)
    ]
    assert b.pending_users() == 0
    assert b.drain() == []
    assert (b.absorbed, b.batches) == (0, 0)


def test_drain_across_users_and_isolation():
    """Each user gets their own batch; one user's order does not flush another's."""
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.add("2", "position_update", pos("MSFT"), at=2.0)
    b.add("2", "account_update", acct("5.00"), at=2.5)
    assert b.add("1", "order_update", order("o1"), at=3.0)[0][0] == "1"
    assert b.pending_users() == 1
    b.add("1", "account_update", acct("9.00"), at=4.0)
    out = b.drain()
    assert sorted(out) == [
        ("1", "batch", {"account": acct("9.00")}, 4.0),
        ("2", "batch", {"positions": [pos("MSFT")], "account": acct("5.00")}, 2.0),
    ]
    assert b.pending_users() == 0
    assert b.drain() == []


def test_take_one_user():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.add("2", "position_update", pos("MSFT"), at=2.0)
    assert [o[0] for o in b.take("2")] == ["2"]
    assert b.take("2") == []
    assert b.take("nobody") == []
    assert b.pending_users() == 1


def test_counters():
    """absorbed counts updates that went into batches; batches counts batch events."""
    b = Batcher(250)
    for i in range(3):
        b.add("1", "position_update", pos("AAPL", str(i)), at=1.0)
    b.add("1", "account_update", acct("1.00"), at=1.0)
    b.add("2", "position_update", pos("MSFT"), at=1.0)
    assert (b.absorbed, b.batches) == (0, 0)  # counted when the batch is released
    b.add("1", "order_update", order("o1"), at=2.0)
    assert (b.absorbed, b.batches) == (4, 1)
    b.drain()
    assert (b.absorbed, b.batches) == (5, 2)
    b.drain()
    assert (b.absorbed, b.batches) == (5, 2)


def test_new_window_after_drain_uses_new_first_time():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.drain()
    b.add("1", "position_update", pos("AAPL"), at=8.0)
    assert b.drain()[0][3] == 8.0


def _due_of(b: Batcher, user_id: str, at: float) -> float:
    """When the batch ``user_id`` holds from ``at`` is released (drain_due in 1 ms steps)."""
    b.add(user_id, "position_update", pos("AAPL"), at=at)
    now = at
    while not b.drain_due(now):
        now = round(now + 0.001, 6)
        assert now <= at + 1.0, "never released"
    return now


def test_a_held_update_waits_at_most_one_window():
    b = Batcher(250)
    for i in range(200):
        at = 100.0 + i * 0.0137
        waited = _due_of(b, str(i), at) - at
        assert 0.0 < waited <= 0.251, (i, waited)


def test_a_user_s_windows_keep_their_phase():
    """The same user's batches end on one grid: window ends differ by whole windows."""
    b = Batcher(250)
    first = _due_of(b, "42", 10.0)
    for at in (10.31, 11.07, 12.5):
        due = _due_of(b, "42", at)
        windows = (due - first) / 0.25
        assert abs(windows - round(windows)) < 0.01, (at, due, windows)


def test_users_windows_are_spread_over_the_window_not_aligned():
    """1,000 users holding an update at the same instant are released over the whole window
    (one shared tick would release them all at once: a burst of every tab's frame)."""
    b = Batcher(250)
    for i in range(1000):
        b.add(str(i), "position_update", pos("AAPL"), at=50.0)
    released: list[int] = []
    for step in range(1, 252):
        released.append(len(b.drain_due(50.0 + step / 1000.0)))
    assert sum(released) == 1000
    assert max(released) < 50  # no step releases more than ~5 % of the users
    assert sum(1 for n in released[:125] if n) > 100 and sum(1 for n in released[125:] if n) > 100


def test_drain_due_skips_a_batch_an_order_already_released():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    out = b.add("1", "order_update", order("o1"), at=1.01)  # the batch goes first, now
    assert [o[1] for o in out] == ["batch", "order_update"]
    assert b.drain_due(2.0) == []


def test_drain_releases_everything_due_or_not():
    b = Batcher(250)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.add("2", "position_update", pos("AAPL"), at=100.0)
    assert [o[0] for o in b.drain()] == ["1", "2"]


def test_next_due_is_the_earliest_batch_still_held():
    b = Batcher(250)
    assert b.next_due() is None
    due_1 = b._next_due("1", 1.0)
    due_2 = b._next_due("2", 1.0)
    b.add("1", "position_update", pos("AAPL"), at=1.0)
    b.add("2", "position_update", pos("AAPL"), at=1.0)
    assert b.next_due() == min(due_1, due_2)
    first, second = ("1", "2") if due_1 < due_2 else ("2", "1")
    b.add(first, "order_update", order("o1"), at=1.001)  # its batch leaves early
    assert b.next_due() == max(due_1, due_2)  # the stale entry is skipped
    assert [o[0] for o in b.drain_due(max(due_1, due_2))] == [second]
    assert b.next_due() is None
