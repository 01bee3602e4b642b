"""Unit tests for streaming.memory_broker.MemoryBroker and streaming.broker.Publication."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from streaming.broker import Broker, Publication
from streaming.memory_broker import MemoryBroker

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def publish_n(broker: MemoryBroker, user: str, n: int) -> list[Publication]:
    return [await broker.publish(user, "order_update", {"n": i}) for i in range(1, n + 1)]


def test_is_a_broker():
    assert isinstance(MemoryBroker(), Broker)


def test_random_epoch_by_default_and_fixed_when_given():
    a, b = MemoryBroker(), MemoryBroker()
    assert a.epoch != b.epoch
    assert len(a.epoch) == 8  # token_urlsafe(6): 6 bytes → 8 chars
    assert MemoryBroker(epoch="E1").epoch == "E1"


def test_seq_per_user_starts_at_one_and_increments():
    async def main() -> list[tuple[str, int]]:
        broker = MemoryBroker(epoch="E")
        out = []
        for user in ["1", "1", "2", "1", "2"]:
            pub = await broker.publish(user, "order_update", {})
            out.append((pub.user_id, pub.seq))
        return out

    assert run(main()) == [("1", 1), ("1", 2), ("2", 1), ("1", 3), ("2", 2)]


def test_publication_fields():
    async def main() -> Publication:
        broker = MemoryBroker(epoch="E")
        return await broker.publish("7", "position_update", {"symbol": "AAPL"}, emitted_at=12.5)

    pub = run(main())
    assert (pub.user_id, pub.seq, pub.epoch, pub.type, pub.data, pub.emitted_at) == (
        "7",
        1,
        "E",
        "position_update",
        {"symbol": "AAPL"},
        12.5,
    )
    assert ISO_Z.match(pub.timestamp)


def test_handler_called_in_order_synchronously():
    async def main() -> tuple[list[tuple[str, int]], list[Publication]]:
        broker = MemoryBroker(epoch="E")
        seen: list[Publication] = []
        broker.set_handler(seen.append)
        pubs = [
            await broker.publish("1", "order_update", {"i": 1}),
            await broker.publish("2", "order_update", {"i": 2}),
            await broker.publish("1", "trade_executed", {"i": 3}),
        ]
        assert seen == pubs
        return [(p.user_id, p.seq) for p in seen], seen

    order, _ = run(main())
    assert order == [("1", 1), ("2", 1), ("1", 2)]


def test_publish_without_handler_still_numbers_and_stores():
    async def main() -> list[Publication] | None:
        broker = MemoryBroker(epoch="E")
        await publish_n(broker, "1", 2)
        return await broker.recover("1", 0, "E")

    assert [p.seq for p in run(main()) or []] == [1, 2]


def test_position():
    async def main() -> list[tuple[int, str]]:
        broker = MemoryBroker(epoch="E")
        before = await broker.position("1")
        await publish_n(broker, "1", 3)
        return [before, await broker.position("1"), await broker.position("2")]

    assert run(main()) == [(0, "E"), (3, "E"), (0, "E")]


def test_recover_returns_missing_ones_in_order():
    async def main() -> tuple[list[Publication], list[Publication] | None]:
        broker = MemoryBroker(epoch="E")
        pubs = await publish_n(broker, "1", 5)
        await publish_n(broker, "2", 2)  # other users do not leak in
        return pubs, await broker.recover("1", 2, "E")

    pubs, got = run(main())
    assert got == pubs[2:]
    assert [p.seq for p in got or []] == [3, 4, 5]
    assert [p.data for p in got or []] == [{"n": 3}, {"n": 4}, {"n": 5}]


def test_recover_from_zero_returns_everything():
    async def main() -> list[Publication] | None:
        broker = MemoryBroker(epoch="E")
        await publish_n(broker, "1", 3)
        return await broker.recover("1", 0, "E")

    assert [p.seq for p in run(main()) or []] == [1, 2, 3]


def test_recover_up_to_date_returns_empty_list():
    async def main() -> list[list[Publication] | None]:
        broker = MemoryBroker(epoch="E")
        fresh = await broker.recover("1", 0, "E")  # no event yet
        await publish_n(broker, "1", 3)
        return [fresh, await broker.recover("1", 3, "E")]

    assert run(main()) == [[], []]


def test_recover_wrong_epoch_is_none():
    async def main() -> list[list[Publication] | None]:
        broker = MemoryBroker(epoch="E")
        await publish_n(broker, "1", 3)
        return [await broker.recover("1", 1, "OTHER"), await broker.recover("1", 3, "OTHER")]

    assert run(main()) == [None, None]


def test_recover_seq_ahead_is_none():
    async def main() -> list[list[Publication] | None]:
        broker = MemoryBroker(epoch="E")
        await publish_n(broker, "1", 3)
        return [await broker.recover("1", 4, "E"), await broker.recover("2", 1, "E")]

    assert run(main()) == [None, None]


@pytest.mark.parametrize(
    ("since", "expected"),
    [(0, None), (1, None), (2, [3, 4, 5]), (3, [4, 5]), (4, [5]), (5, [])],
)
def test_recover_with_trimmed_history(since, expected):
    """history_size=3 keeps seq 3..5; recovering from before seq 2 would skip events: None."""

    async def main() -> list[Publication] | None:
        broker = MemoryBroker(history_size=3, epoch="E")
        await publish_n(broker, "1", 5)
        return await broker.recover("1", since, "E")

    got = run(main())
    assert (None if got is None else [p.seq for p in got]) == expected


def test_history_is_per_user():
    async def main() -> list[Publication] | None:
        broker = MemoryBroker(history_size=2, epoch="E")
        await publish_n(broker, "1", 2)
        await publish_n(broker, "2", 5)  # does not push user 1's history out
        return await broker.recover("1", 0, "E")

    assert [p.seq for p in run(main()) or []] == [1, 2]


def test_start_and_close_are_no_ops():
    async def main() -> None:
        broker = MemoryBroker()
        await broker.start()
        await broker.close()

    run(main())


def test_publication_message_envelope():
    pub = Publication(
        "1", 42, "k3J9", "position_update", {"symbol": "AAPL"}, "2026-11-25T20:15:03.123456Z", 3.0
    )
    assert pub.message() == {
        "type": "position_update",
        "timestamp": "2026-11-25T20:15:03.123456Z",
        "userId": "1",
        "seq": 42,
        "epoch": "k3J9",
        "data": {"symbol": "AAPL"},
    }


def test_publication_message_with_filtered_data():
    pub = Publication("1", 3, "E", "batch", {"positions": [1], "account": {}}, "T")
    assert pub.message({"positions": [1]}) == {
        "type": "batch",
        "timestamp": "T",
        "userId": "1",
        "seq": 3,
        "epoch": "E",
        "data": {"positions": [1]},
    }
    assert pub.message({})["data"] == {}  # an empty mapping is used, not the original


def test_publication_equality_ignores_emitted_at():
    a = Publication("1", 1, "E", "status", {}, "T", emitted_at=1.0)
    b = Publication("1", 1, "E", "status", {}, "T", emitted_at=2.0)
    assert a == b
