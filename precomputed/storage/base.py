"""The storage interface: one root (a folder or a bucket prefix), keys under it, bytes in and out.

Keys are relative POSIX paths (``catalog.json``, ``precomputed/em/image/info``):
no leading or trailing ``/``, no empty, ``.`` or ``..`` segment, no NUL or
backslash. Anything else is allowed, spaces, ``#``, ``?``, ``%`` and non-ASCII
letters included; :func:`check_key` says why a key is refused.

Every backend keeps the same promises (the conformance tests in
``tests/precomputed/test_storage.py`` hold each one to them):

- a ``put`` lands whole or not at all; a reader sees the old bytes or the new;
- ``get`` of a key never written (or deleted) is ``None``, never an error;
  any other failure (permissions, network, a server error) is
  :class:`~precomputed.errors.StoreError` naming the key's URL;
- ``get_versioned`` / ``put_if`` give optimistic concurrency: of several
  writers holding the same token, exactly one ``put_if`` succeeds;
- ``delete`` of a missing key is not an error.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..errors import InvalidKey

__all__ = ["Storage", "check_key"]

log = logging.getLogger(__name__)


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid key under a root, else raise :class:`InvalidKey` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"storage key must be a non-empty string, got {key!r}")
    if "\x00" in key or "\\" in key:
        raise InvalidKey(f"storage key {key!r} holds a NUL or a backslash")
    if key.startswith("/") or key.endswith("/"):
        raise InvalidKey(f"storage key {key!r} must not start or end with '/'")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


class Storage(ABC):
    """Everything under one store root: the catalog, both stores, markers, reviews, users.

    Open one with :func:`precomputed.storage.open_root`. Implementations:
    :class:`~precomputed.storage.local.LocalStorage` (a folder),
    :class:`~precomputed.storage.s3.S3Storage` (``s3://``) and
    :class:`~precomputed.storage.gcs.GCSStorage` (``gs://``).

    Attributes
    ----------
    url
        The root as a URL: ``file:///abs/folder``, ``s3://bucket/prefix``,
        ``gs://bucket/prefix``.
    is_local
        True for a folder on this machine (:meth:`local_path` is then a path).
    """

    url: str
    is_local: bool

    # naming -------------------------------------------------------------
    def join(self, *parts: str) -> str:
        """The key of ``parts`` joined with ``/`` (each part may hold ``/``); validated."""
        return check_key("/".join(p.strip("/") for p in parts if p.strip("/")))

    @abstractmethod
    def url_for(self, key: str = "") -> str:
        """The URL CloudVolume and CloudFiles open for ``key`` (the root itself for ``""``).

        Locally ``file:///abs/path``; on S3 with an endpoint written into the
        root URL, a CloudFiles alias registered in this process (CloudVolume
        refuses the endpoint in the path). Call :func:`open_root` in every
        process (Dask workers too) before handing such a URL to CloudVolume.
        """

    def local_path(self, key: str = "") -> Path | None:
        """The file of ``key`` on this machine, or ``None`` for an object store."""
        return None

    # reading ------------------------------------------------------------
    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes of ``key`` exactly as stored (no decoding of a Content-Encoding), ``None`` if missing."""

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """``{key: bytes or None}`` for every key; object stores fetch them concurrently."""
        return {key: self.get(key) for key in keys}

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object (a folder locally is not one)."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix`` (a plain string prefix, as on S3), sorted.

        ``list("precomputed/em/")`` lists one dataset's layers;
        ``list("precomputed/em")`` would also list ``precomputed/em2/...``.
        """

    @abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """``(bytes, token)`` of ``key``, ``(None, None)`` if missing; pass the token to :meth:`put_if`.

        The token is opaque: an ETag on S3, a generation on GCS, a digest of
        the content locally.
        """

    # writing ------------------------------------------------------------
    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None, durable: bool = True) -> None:
        """Write ``data`` to ``key`` whole (atomic replace locally).

        ``durable=False`` skips the fsyncs on a local root (chunk writers whose
        rerun rewrites the file anyway); object stores are durable once the
        call returns either way.
        """

    def put_many(self, items: Mapping[str, bytes], *, content_type: str | None = None, durable: bool = True) -> None:
        """Write every ``{key: bytes}``; object stores upload them concurrently. Not atomic as a set."""
        for key, data in items.items():
            self.put(key, data, content_type=content_type, durable=durable)

    @abstractmethod
    def put_if(self, key: str, data: bytes, *, token: str | None, content_type: str | None = None) -> bool:
        """Write ``data`` only if ``key`` is still at ``token`` (``None``: only if it does not exist).

        Returns ``False``, writing nothing, when another writer got there
        first: read again with :meth:`get_versioned` and retry.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
