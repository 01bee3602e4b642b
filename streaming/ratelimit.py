"""Rate limits: a token bucket (per WebSocket connection, per address) and login throttling.

- :class:`TokenBucket`: ``rate`` tokens a second up to ``burst``; each message takes one. The
  classic algorithm (e.g. RFC 2697's single-rate meter without colours). Used for the
  per-connection message limit (``WS_MESSAGE_RATE``/``WS_MESSAGE_BURST``) and the per-address
  WebSocket upgrade limit.
- :class:`KeyedBuckets`: one bucket per key (client address), bounded in memory.
- :class:`FailureBackoff`: exponential backoff after repeated failures of one key — from the
  ``free``-th failure on, each one doubles the wait before the next attempt (``base_s``,
  ``2*base_s``, … up to ``max_s``); a success clears the key. Used per client address and per
  username at login.
- :class:`LoginThrottle`: the two backoffs of the login endpoint together.

Everything is synchronous, O(1) per call and runs on the event loop; memory is bounded by
``max_keys`` (least recently used keys are forgotten first). Times are monotonic seconds.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TokenBucket", "KeyedBuckets", "FailureBackoff", "LoginThrottle", "retry_after_header"]

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket capacity, and its content at start (>= 1).
        clock: monotonic clock in seconds.
    """

    __slots__ = ("rate", "burst", "_tokens", "_at", "_clock")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens; True when there were enough (nothing is taken otherwise)."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait_s(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available (0.0 when they are now)."""
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)


class KeyedBuckets:
    """One :class:`TokenBucket` per key (e.g. client address), at most ``max_keys`` kept.

    Args:
        rate: tokens per second of each bucket.
        burst: capacity of each bucket.
        max_keys: buckets kept; the least recently used is dropped beyond (it restarts full).
        clock: monotonic clock in seconds.
    """

    def __init__(
        self, rate: float, burst: float, *, max_keys: int = 100_000, clock: Clock = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; True when allowed."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()


@dataclass
class _Failures:
    count: int
    blocked_until: float
    last: float


class FailureBackoff:
    """Exponential backoff per key after repeated failures.

    ``free`` failures are free; the ``free``-th and every later failure block the key: failure
    number ``free + k`` (k >= 0) for ``min(max_s, base_s * 2**k)`` seconds, so with ``free=5``
    the 6th attempt waits 1 s, the 7th 2 s, and so on. A key with no failure for ``forget_s``
    seconds starts afresh; :meth:`success` clears it at once.

    Args:
        free: failures allowed before any wait.
        base_s: first wait in seconds.
        max_s: longest wait in seconds.
        forget_s: seconds after the last failure when the key is forgotten.
        max_keys: keys kept (least recently failed dropped first).
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        base_s: float = 1.0,
        max_s: float = 300.0,
        forget_s: float = 900.0,
        max_keys: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free, self.base_s, self.max_s, self.forget_s = free, base_s, max_s, forget_s
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def _get(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and now - entry.last >= self.forget_s and now >= entry.blocked_until:
            del self._keys[key]
            return None
        return entry

    def retry_after(self, key: str) -> float:
        """Seconds ``key`` must still wait (0.0 when it may try now)."""
        now = self._clock()
        entry = self._get(key, now)
        return max(0.0, entry.blocked_until - now) if entry else 0.0

    def failure(self, key: str) -> float:
        """Record a failure of ``key``; return the wait it now has (seconds, 0.0 for none)."""
        now = self._clock()
        entry = self._get(key, now)
        if entry is None:
            entry = self._keys[key] = _Failures(0, 0.0, now)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        if over >= 0:
            wait = min(self.max_s, self.base_s * 2 ** min(over, 40))
            entry.blocked_until = max(entry.blocked_until, now + wait)
        return max(0.0, entry.blocked_until - now)

    def success(self, key: str) -> None:
        """Forget ``key``'s failures (a successful login)."""
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


class LoginThrottle:
    """Login throttling per client address and per username (case-folded).

    A login attempt is refused before any password hashing while either key is blocked.
    Failures are counted on both keys; a success clears the username and the address.
    The username backoff stops slow password guessing spread over many addresses; the
    address backoff stops one address spraying many usernames.

    Args:
        per_address: backoff of client addresses.
        per_username: backoff of usernames.
    """

    def __init__(self, per_address: FailureBackoff, per_username: FailureBackoff) -> None:
        self.per_address = per_address
        self.per_username = per_username

    @staticmethod
    def _user_key(username: str) -> str:
        return username.casefold()[:128]

    def retry_after(self, address: str, username: str) -> float:
        """Seconds to wait before this address may try this username (0.0: go ahead)."""
        return max(
            self.per_address.retry_after(address),
            self.per_username.retry_after(self._user_key(username)),
        )

    def failure(self, address: str, username: str) -> None:
        """Count a wrong password (or unknown user) for both keys."""
        self.per_address.failure(address)
        self.per_username.failure(self._user_key(username))

    def success(self, address: str, username: str) -> None:
        """Clear both keys after a successful login."""
        self.per_address.success(address)
        self.per_username.success(self._user_key(username))


def retry_after_header(wait_s: float) -> str:
    """Format a wait in seconds as an HTTP ``Retry-After`` value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))
