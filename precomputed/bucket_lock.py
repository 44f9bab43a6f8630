"""A lease on a bucket root: one lock object, taken with a create-only conditional PUT.

An object store has no file locks. :class:`BucketLock` writes
``{"owner", "expires"}`` to its key with ``put_if(..., token=None)`` (S3
``If-None-Match: *``, GCS ``ifGenerationMatch=0``), so of several writers
exactly one gets it; the others poll until it is released or ``timeout_s``
passes. A holder killed without releasing leaves the object behind: once
its ``expires`` (the holder's clock plus ``ttl_s``) has passed, the next
writer takes it over with a conditional PUT on the stale object's token,
so two waiters cannot both take over; a lease whose holder was a process
of this host that no longer exists is stale at once (a killed run resumed
on the same machine need not wait out the TTL). With ``renew=True`` a thread
re-writes the lease every ``ttl_s / 3`` (for runs longer than the TTL); a
holder that could not renew in time logs that it lost the lease.

Clocks of different hosts must agree to within the TTL. On a backend that
ignores the precondition (gcp-storage-emulator) the lock excludes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["BucketLock"]

log = logging.getLogger(__name__)


def _stale(data: bytes) -> bool:
    """Whether a lease has expired, or its holder was a process of this host that is gone."""
    try:
        doc = json.loads(data)
        expires, host, pid = float(doc["expires"]), str(doc.get("host", "")), int(doc.get("pid", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return True  # an unreadable lease is nobody's
    if expires <= time.time():
        return True
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class BucketLock:
    """A lease object at ``key`` of ``storage``; use as a context manager.

    Raises :class:`TimeoutError` from :meth:`acquire` when another holder
    keeps it past ``timeout_s`` (``0``: try once).
    """

    def __init__(self, storage: Storage, key: str, *, ttl_s: float = 120.0, timeout_s: float = 60.0, renew: bool = False) -> None:
        self.storage = storage
        self.key = key
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.renew = renew
        self.owner = secrets.token_hex(8)
        self._token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "expires": time.time() + self.ttl_s}).encode()

    def _take(self) -> bool:
        if self.storage.put_if(self.key, self._body(), token=None, content_type="application/json"):
            return True
        data, token = self.storage.get_versioned(self.key)
        if data is None:
            return False  # released meanwhile: the next try creates it
        if not _stale(data):
            return False
        log.warning("taking over the stale lock %s", self.storage.url_for(self.key))
        return self.storage.put_if(self.key, self._body(), token=token, content_type="application/json")

    def acquire(self) -> None:
        """Take the lease, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        pause = 0.02
        while not self._take():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.storage.url_for(self.key)} is held by another writer")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        self._token = self.storage.get_versioned(self.key)[1]
        if self.renew:
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name=f"lease {self.key}", daemon=True)
            self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.storage.put_if(self.key, self._body(), token=self._token, content_type="application/json"):
                    log.error("lost the lock %s to another writer", self.storage.url_for(self.key))
                    return
                self._token = self.storage.get_versioned(self.key)[1]
            except OSError as exc:  # a network hiccup: try again at the next beat, the lease has time left
                log.warning("cannot renew the lock %s: %s", self.storage.url_for(self.key), exc)

    def release(self) -> None:
        """Give the lease back (only when it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        data, _ = self.storage.get_versioned(self.key)
        try:
            ours = data is not None and json.loads(data).get("owner") == self.owner
        except (ValueError, AttributeError):
            ours = False
        if ours:
            self.storage.delete(self.key)

    def __enter__(self) -> BucketLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
