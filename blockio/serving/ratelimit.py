"""A token bucket per user, in one process.

Each key (a user name, or an address for requests without a user) gets
``burst`` tokens that refill at ``rate`` per second; a request takes one.
The buckets live in the process, so with W workers a user may make up to W
times the rate in all: a limit against runaway clients and floods, not an
exact quota (that would need a shared store such as Redis).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_KEYS = 10_000


class RateLimiter:
    """``allow(key)`` is ``True`` while ``key`` stays within ``rate`` per second with bursts of ``burst``."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; ``False`` (and nothing taken) when it is empty."""
        if self.rate <= 0:
            return True
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
                # full buckets are the same as none: forget them first
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * self.rate < self.burst}
            self._buckets[key] = (tokens - 1.0, now)
            return True
