"""Unit tests for streaming.subscription (what one connection receives)."""

from __future__ import annotations

from typing import Any

import pytest

from streaming.events import Channel
from streaming.subscription import Subscription, filter_data

ALL = {Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT, Channel.TRADES}
POS_AAPL = {"symbol": "AAPL", "quantity": "10"}
POS_MSFT = {"symbol": "MSFT", "quantity": "5"}
ORDER_AAPL = {"orderId": "o1", "symbol": "AAPL"}
ORDER_TSLA = {"orderId": "o2", "symbol": "TSLA"}
ACCOUNT = {"equity": "100.00"}
TRADE_AAPL = {"executionId": "e1", "symbol": "AAPL"}
STATUS = {"code": "broker_stale", "message": "no data", "stale": True}


def sub(*channels: Channel, symbols: set[str] | None = None) -> Subscription:
    return Subscription(set(channels), frozenset(symbols) if symbols is not None else None)


def batch(**parts: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"positions": [], "orders": [], "account": None}
    data.update(parts)
    return data


def test_default_subscription_receives_nothing_but_status():
    s = Subscription()
    for type_, data in [
        ("position_update", POS_AAPL),
        ("order_update", ORDER_AAPL),
        ("account_update", ACCOUNT),
        ("trade_executed", TRADE_AAPL),
        ("batch", batch(positions=[POS_AAPL], account=ACCOUNT)),
    ]:
        assert filter_data(s, type_, data) is None
    assert filter_data(s, "status", STATUS) is STATUS


@pytest.mark.parametrize(
    ("type_", "data", "channel"),
    [
        ("position_update", POS_AAPL, Channel.POSITIONS),
        ("order_update", ORDER_AAPL, Channel.ORDERS),
        ("account_update", ACCOUNT, Channel.ACCOUNT),
        ("trade_executed", TRADE_AAPL, Channel.TRADES),
    ],
)
def test_single_channel_events(type_: str, data: dict[str, Any], channel: Channel) -> None:
    """An event passes (unchanged, same object) only with its own channel subscribed."""
    assert filter_data(sub(channel), type_, data) is data
    others = ALL - {channel}
    assert filter_data(sub(*others), type_, data) is None


@pytest.mark.parametrize(
    ("type_", "data"),
    [("position_update", POS_AAPL), ("order_update", ORDER_AAPL), ("trade_executed", TRADE_AAPL)],
)
def test_symbol_filter(type_: str, data: dict[str, Any]) -> None:
    assert filter_data(sub(*ALL, symbols={"AAPL"}), type_, data) is data
    assert filter_data(sub(*ALL, symbols={"MSFT"}), type_, data) is None
    assert filter_data(sub(*ALL, symbols=set()), type_, data) is None


def test_symbol_filter_compares_upper_case():
    assert (
        filter_data(sub(Channel.POSITIONS, symbols={"AAPL"}), "position_update", {"symbol": "aapl"})
        is not None
    )


def test_event_without_symbol_is_filtered_out_by_a_symbol_filter():
    assert (
        filter_data(sub(Channel.ORDERS, symbols={"AAPL"}), "order_update", {"orderId": "x"}) is None
    )
    assert filter_data(sub(Channel.ORDERS), "order_update", {"orderId": "x"}) == {"orderId": "x"}


def test_account_never_symbol_filtered():
    s = sub(Channel.ACCOUNT, symbols={"AAPL"})
    assert filter_data(s, "account_update", ACCOUNT) is ACCOUNT
    assert filter_data(sub(Channel.ACCOUNT, symbols=set()), "account_update", ACCOUNT) is ACCOUNT


def test_status_always_passes_regardless_of_filter():
    assert filter_data(sub(Channel.TRADES, symbols=set()), "status", STATUS) is STATUS


def test_unknown_type_is_dropped():
    assert filter_data(sub(*ALL), "snapshot", {}) is None


def test_wants_symbol():
    assert Subscription().wants_symbol("anything")
    s = sub(symbols={"AAPL"})
    assert s.wants_symbol("AAPL") and s.wants_symbol("aapl")
    assert not s.wants_symbol("MSFT")


# -- batch ------------------------------------------------------------------------------------


def test_batch_all_channels_no_filter_keeps_non_empty_parts():
    """Empty parts are left out of the cut-down batch (orders is always empty from Batcher)."""
    data = batch(positions=[POS_AAPL, POS_MSFT], account=ACCOUNT)
    assert filter_data(sub(*ALL), "batch", data) == {
        "positions": [POS_AAPL, POS_MSFT],
        "account": ACCOUNT,
    }


def test_batch_with_orders_part():
    data = batch(positions=[POS_AAPL], orders=[ORDER_AAPL, ORDER_TSLA])
    assert filter_data(sub(Channel.ORDERS, symbols={"TSLA"}), "batch", data) == {
        "orders": [ORDER_TSLA]
    }


def test_batch_cut_to_symbol_filter():
    data = batch(positions=[POS_AAPL, POS_MSFT], account=ACCOUNT)
    assert filter_data(sub(*ALL, symbols={"MSFT"}), "batch", data) == {
        "positions": [POS_MSFT],
        "account": ACCOUNT,
    }


def test_batch_cut_to_channels():
    data = batch(positions=[POS_AAPL], account=ACCOUNT)
    assert filter_data(sub(Channel.ACCOUNT), "batch", data) == {"account": ACCOUNT}
    assert filter_data(sub(Channel.POSITIONS), "batch", data) == {"positions": [POS_AAPL]}


def test_batch_account_kept_with_symbol_filter_that_removes_all_positions():
    data = batch(positions=[POS_AAPL], account=ACCOUNT)
    assert filter_data(sub(Channel.POSITIONS, Channel.ACCOUNT, symbols={"ZZZ"}), "batch", data) == {
        "account": ACCOUNT
    }


@pytest.mark.parametrize(
    "s",
    [
        sub(Channel.TRADES),
        sub(Channel.POSITIONS, symbols={"ZZZ"}),
        sub(Channel.ACCOUNT),  # account is None in this batch
        Subscription(),
    ],
    ids=["trades-only", "filtered-out", "account-but-none", "nothing"],
)
def test_batch_dropped_when_nothing_left(s):
    data = batch(positions=[POS_AAPL], account=None)
    assert filter_data(s, "batch", data) is None


def test_batch_does_not_modify_original():
    data = batch(positions=[POS_AAPL, POS_MSFT], account=ACCOUNT)
    filter_data(sub(Channel.POSITIONS, symbols={"AAPL"}), "batch", data)
    assert data == batch(positions=[POS_AAPL, POS_MSFT], account=ACCOUNT)


def test_batch_tolerates_missing_or_null_parts():
    assert filter_data(sub(*ALL), "batch", {"positions": None}) is None
    assert filter_data(sub(*ALL), "batch", {}) is None
