"""A zarr-python 3 store over :mod:`precomputed.storage`: OME-Zarr on ``s3://`` and ``gs://`` roots.

``StorageStore(storage, "zarr/em~1a2b.zarr")`` is a :class:`zarr.abc.store.Store`
whose keys live under that prefix of a store root. Every request goes through
the root's :class:`~precomputed.storage.Storage` (CloudFiles with the root's
endpoint and credentials, on any backend), so OME-Zarr and the precomputed
layer share one credential path; s3fs/gcsfs are not needed. The storage calls
are blocking: they run in worker threads (:func:`asyncio.to_thread`), so the
chunks of one write or read still travel concurrently. Byte ranges are cut
from the whole object (our arrays are not sharded, so zarr asks for whole
chunks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["StorageStore"]


def _cut(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :] if byte_range.suffix else b""
    raise TypeError(f"unexpected byte range {byte_range!r}")


class StorageStore(Store):
    """The keys under ``prefix`` of a store root, as a zarr store.

    Parameters
    ----------
    storage
        The root (:func:`precomputed.storage.open_root`).
    prefix
        The group's key under the root (``zarr/em.zarr``); ``""`` for the root itself.
    read_only
        Refuse writes.
    """

    supports_writes = True
    supports_deletes = True
    supports_listing = True

    def __init__(self, storage: Storage, prefix: str, *, read_only: bool = False) -> None:
        super().__init__(read_only=read_only)
        self.storage = storage
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def with_read_only(self, read_only: bool = False) -> StorageStore:
        return type(self)(self.storage, self.prefix, read_only=read_only)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageStore) and other.storage.url == self.storage.url and other.prefix == self.prefix

    def __str__(self) -> str:
        return self.storage.url_for(self.prefix) if self.prefix else self.storage.url

    def __repr__(self) -> str:
        return f"StorageStore({self.storage.url!r}, {self.prefix!r})"

    # reading ------------------------------------------------------------
    async def get(self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        data = await asyncio.to_thread(self.storage.get, self._key(key))
        return None if data is None else prototype.buffer.from_bytes(_cut(data, byte_range))

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        wanted = list(key_ranges)
        found = await asyncio.to_thread(self.storage.get_many, {self._key(k) for k, _ in wanted})
        out: list[Buffer | None] = []
        for key, byte_range in wanted:
            data = found.get(self._key(key))
            out.append(None if data is None else prototype.buffer.from_bytes(_cut(data, byte_range)))
        return out

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.storage.exists, self._key(key))

    # writing ------------------------------------------------------------
    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        content_type = "application/json" if key.endswith("zarr.json") else None
        await asyncio.to_thread(self.storage.put, self._key(key), value.to_bytes(), content_type=content_type, durable=False)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await asyncio.to_thread(self.storage.delete, self._key(key))

    # listing ------------------------------------------------------------
    async def _keys(self, prefix: str) -> list[str]:
        base = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        found = await asyncio.to_thread(lambda: list(self.storage.list(base)))
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [k[cut:] for k in found]

    async def list(self) -> AsyncIterator[str]:
        for key in await self._keys(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await self._keys(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        folder = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
        seen: set[str] = set()
        for key in await self._keys(folder):
            child = key[len(folder) :].split("/", 1)[0]
            if child and child not in seen:
                seen.add(child)
                yield child
