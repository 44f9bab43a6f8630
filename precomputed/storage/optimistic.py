"""Read-modify-write of one object without a lock server: read with a token, change, ``put_if``, retry.

Used by the catalog on bucket roots and by any other small shared JSON
object (reviews, users) whose writers may run on several hosts. Of many
concurrent writers each commit lands exactly once and none is lost: a writer
whose token went stale reads the newer object and applies its change again,
after a jittered exponential back-off ("full jitter": a random wait up to
``min(cap, base * 2**attempt)``) so that colliding writers spread out
instead of colliding again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import StoreError
from .base import Storage

__all__ = ["CommitConflict", "commit"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.005
MAX_DELAY_S = 0.5
TIMEOUT_S = 120.0


class CommitConflict(StoreError, TimeoutError):
    """Other writers kept changing the object for the whole timeout: nothing of this change was written."""


def commit(
    storage: Storage,
    key: str,
    change: Callable[[bytes | None], tuple[bytes | None, T]],
    *,
    content_type: str | None = None,
    timeout_s: float = TIMEOUT_S,
) -> T:
    """Apply ``change`` to the object at ``key`` until it lands on the version it read.

    Parameters
    ----------
    storage, key
        The object.
    change
        ``change(current bytes or None) -> (new bytes or None, result)``;
        ``None`` bytes means "nothing to write". Called again on every
        conflict, so it must depend on nothing but its argument (and not
        have effects outside). Exceptions it raises propagate, nothing written.
    content_type
        Of the object written.
    timeout_s
        Give up with :class:`CommitConflict` after this long.

    Returns
    -------
    The ``result`` of the call of ``change`` whose bytes were committed.
    """
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        current, token = storage.get_versioned(key)
        new, result = change(current)
        if new is None or storage.put_if(key, new, token=token, content_type=content_type):
            if attempt:
                log.debug("%s committed after %d conflicts", storage.url_for(key), attempt)
            return result
        attempt += 1
        delay = random.uniform(0.0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(attempt, 16)))
        if time.monotonic() + delay > deadline:
            raise CommitConflict(f"{storage.url_for(key)}: other writers changed it {attempt} times in {timeout_s:.0f} s; nothing written, try again")
        time.sleep(delay)
