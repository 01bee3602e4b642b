"""Token buckets and login backoff (streaming/ratelimit.py) with an injected clock."""

from __future__ import annotations

import pytest

from streaming.ratelimit import (
    FailureBackoff,
    KeyedBuckets,
    LoginThrottle,
    TokenBucket,
    retry_after_header,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=50, burst=200, clock=clock)
    assert sum(bucket.take() for _ in range(300)) == 200
    assert bucket.wait_s() == pytest.approx(0.02)
    clock.now = 1.0
    assert sum(bucket.take() for _ in range(300)) == 50
    clock.now = 100.0
    assert sum(bucket.take() for _ in range(300)) == 200  # never above the burst


def test_keyed_buckets_are_independent_and_bounded() -> None:
    clock = Clock()
    buckets = KeyedBuckets(rate=1, burst=2, max_keys=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [True, True, False]
    assert buckets.take("b") and buckets.take("c") and buckets.take("d")
    assert len(buckets._buckets) == 3  # "a" (least recently used) was dropped
    assert buckets.take("a")  # and restarts full


def test_failure_backoff_doubles_caps_forgets_and_clears() -> None:
    clock = Clock()
    backoff = FailureBackoff(free=3, base_s=1, max_s=8, forget_s=60, clock=clock)
    waits = [backoff.failure("k") for _ in range(7)]
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    assert backoff.retry_after("k") == 8
    clock.now = 8.0
    assert backoff.retry_after("k") == 0
    clock.now = 68.0  # a minute without failures: forgotten
    assert backoff.failure("k") == 0
    backoff.success("k")
    assert len(backoff) == 0


def test_failure_backoff_memory_is_bounded() -> None:
    backoff = FailureBackoff(max_keys=100)
    for n in range(1000):
        backoff.failure(f"10.0.{n // 256}.{n % 256}")
    assert len(backoff) == 100


def test_login_throttle_keys_and_case_folding() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        FailureBackoff(free=2, clock=clock), FailureBackoff(free=2, clock=clock)
    )
    throttle.failure("1.1.1.1", "Alice")
    throttle.failure("2.2.2.2", "ALICE")
    assert throttle.retry_after("3.3.3.3", "alice") > 0  # per username, any address
    assert throttle.retry_after("3.3.3.3", "bob") == 0
    throttle.success("3.3.3.3", "alice")
    assert throttle.retry_after("3.3.3.3", "alice") == 0


@pytest.mark.parametrize(
    ("wait", "header"), [(0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (300, "300")]
)
def test_retry_after_header(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header
