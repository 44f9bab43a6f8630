"""How a shared cache skips a failing server, and how often it says so.

:class:`Backoff` keeps the failure state of one kind of access: after a
failure the server is skipped for an interval (1 s, doubling up to 30 s), so
a dead server costs no per-read timeout; when the interval ends one caller
probes again and the first success restores normal service.
:class:`LogThrottle` logs at most one warning per interval and counts the
ones it held back. Neither takes a lock: the owner holds its own.
"""

from __future__ import annotations

import logging
import math
from typing import Any

__all__ = ["FIRST_BACKOFF_S", "MAX_BACKOFF_S", "WARN_EVERY_S", "Backoff", "LogThrottle"]

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
WARN_EVERY_S = 30.0


class Backoff:
    """Failure state of one kind of access; its owner holds the lock."""

    def __init__(self) -> None:
        self.failures = 0
        self.interval = FIRST_BACKOFF_S
        self.until = 0.0

    def allow(self, now: float) -> bool:
        """Whether a call may be made at monotonic time ``now``."""
        if self.failures == 0:
            return True
        if now < self.until:
            return False
        # this caller probes; the others keep skipping until it reports back
        self.until = now + self.interval
        return True

    def failed(self, now: float) -> float:
        """Record a failure; returns the seconds the server is now skipped for."""
        wait = self.interval
        self.failures += 1
        self.until = now + wait
        self.interval = min(wait * 2, MAX_BACKOFF_S)
        return wait

    def succeeded(self) -> int:
        """Record a success; returns how many failures came before it."""
        failures, self.failures, self.interval = self.failures, 0, FIRST_BACKOFF_S
        return failures


class LogThrottle:
    """One warning per ``every_s`` seconds; the rest go to debug and are counted."""

    def __init__(self, logger: logging.Logger, *, every_s: float = WARN_EVERY_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._warned_at = -math.inf
        self._suppressed = 0

    def admit(self, now: float) -> int:
        """``-1`` to hold a message back, else how many were held back since the last one.

        Call it under the owner's lock, then :meth:`emit` outside it.
        """
        if now - self._warned_at < self.every_s:
            self._suppressed += 1
            return -1
        self._warned_at, suppressed, self._suppressed = now, self._suppressed, 0
        return suppressed

    def emit(self, suppressed: int, message: str, *args: Any) -> None:
        """Log what :meth:`admit` decided."""
        if suppressed < 0:
            self.logger.debug(message, *args)
        elif suppressed:
            self.logger.warning(message + " (%d similar messages suppressed)", *args, suppressed)
        else:
            self.logger.warning(message, *args)
