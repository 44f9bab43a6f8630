"""Block writes into a live segmentation layer on an ``s3://`` or ``gs://`` root.

The bucket side of :mod:`precomputed.block_writes`. An object store has no
rename and no file lock, so:

- **the lock** is a lease object, ``.locks/<id>.<layer>.lock``
  (:class:`~precomputed.bucket_lock.BucketLock`: create-only conditional PUT);
- **the swap** (:class:`ObjectSwap`) keeps every new chunk in memory until
  all of them are encoded, reads the old objects it will replace, saves
  those that exist as backup objects under ``.staging/<id>/<layer>-write/``
  with a journal listing them and the layer version the write will give,
  then PUTs the new chunks **in place** (each PUT is atomic: a chunk object
  is always whole, old or new);
- any failure before the catalog write puts every old object back (from
  memory) and deletes the ones that did not exist; a writer killed
  mid-write is undone by the next writer of the layer from the journal,
  unless the catalog already holds the journal's version (the write landed:
  only the backups go).

Readers may see some chunks new and some old while a PUT is in flight;
each chunk is whole and passes its checksum (the manifest accepts both
digests meanwhile). The layer's version changes with the one conditional
catalog write at the end, which retires cached chunks.
"""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import Any

from .checksums import FOLDER, Manifest
from .storage import Storage

__all__ = ["BucketLayer", "ObjectSwap", "recover_objects"]

log = logging.getLogger(__name__)


def write_folder(dataset_id: str, layer: str) -> str:
    """``.staging/<id>/<layer>-write``: the journal and backups of a block write."""
    return f".staging/{dataset_id}/{layer}-write"


class ObjectSwap:
    """Stage new objects, PUT them together in place, put the old ones back on failure."""

    def __init__(self, storage: Storage, folder: str, version: str) -> None:
        self.storage = storage
        self.folder = folder
        self.version = version
        self._staged: dict[str, bytes] = {}
        self._old: dict[str, bytes | None] = {}  # every key this write changed or will change: its bytes before
        self._committed = False

    def __len__(self) -> int:
        return len(self._staged)

    @property
    def journal(self) -> str:
        return f"{self.folder}/journal.json"

    def stage(self, key: str, data: bytes) -> None:
        """Keep ``data`` for ``key`` until :meth:`commit`."""
        if self._committed:
            raise RuntimeError("internal: ObjectSwap.stage after commit")
        self._staged[key] = bytes(data)

    def protect(self, key: str) -> None:
        """Remember the current bytes of ``key`` (an object the caller rewrites) to restore it on failure."""
        if key not in self._old:
            self._old[key] = self.storage.get(key)

    def commit(self) -> None:
        """Back up the old objects, journal them, PUT every staged object."""
        missing = [k for k in self._staged if k not in self._old]
        self._old.update(self.storage.get_many(missing))
        backups = {key: f"{self.folder}/old/{i}" for i, key in enumerate(sorted(self._staged)) if self._old.get(key) is not None}
        self.storage.put_many({b: self._old[k] or b"" for k, b in backups.items()}, durable=False)
        entries = [[key, backups.get(key)] for key in sorted(self._staged)]
        self.storage.put(self.journal, json.dumps({"version": self.version, "restore": entries}).encode(), content_type="application/json")
        self.storage.put_many(self._staged, durable=False)
        self._staged = {}
        self._committed = True

    def rollback(self) -> None:
        """Every changed object back to its old bytes (a new one deleted), backups and journal gone."""
        self._staged = {}
        restore = {k: v for k, v in self._old.items() if v is not None}
        try:
            self.storage.put_many(restore, durable=False)
            for key, old in self._old.items():
                if old is None:
                    self.storage.delete(key)
        except OSError as exc:  # the journal stays: the next writer restores from the backups
            log.error("cannot roll back a block write under %s (the next write of the layer will): %s", self.storage.url_for(self.folder), exc)
            raise
        _clear(self.storage, self.folder)

    def __enter__(self) -> ObjectSwap:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None and not self._staged:
            _clear(self.storage, self.folder)  # from here on the new objects stand
        else:
            self.rollback()


def _clear(storage: Storage, folder: str) -> None:
    """The journal first: without it, leftover backups are garbage, never restored."""
    storage.delete(f"{folder}/journal.json")
    from .bucket import delete_prefix

    delete_prefix(storage, folder)


def recover_objects(storage: Storage, folder: str, version: str | None) -> int:
    """Undo a block write whose process died mid-write (caller holds the layer's lock); the objects restored.

    ``version`` is the layer's version in the catalog now: when it is the
    journal's, the write was committed and only its backups are removed.
    """
    data = storage.get(f"{folder}/journal.json")
    if data is None:
        return 0
    doc = json.loads(data)
    if doc.get("version") == version:
        _clear(storage, folder)
        return 0
    restored = 0
    for key, backup in doc["restore"]:
        if backup is None:
            storage.delete(key)
            continue
        old = storage.get(backup)
        if old is None:
            raise OSError(f"the block-write journal {storage.url_for(folder)}/journal.json names a backup that is gone: {backup}")
        storage.put(key, old, durable=False)
        restored += 1
    _clear(storage, folder)
    log.warning("rolled back an interrupted block write: %d object(s) restored from %s", restored, storage.url_for(folder))
    return restored


class BucketLayer:
    """What :func:`precomputed.block_writes.write_block` needs of a layer that lives in a bucket."""

    def __init__(self, storage: Storage, dataset_id: str, layer: str, layer_key: str) -> None:
        self.storage = storage
        self.layer_key = layer_key
        self.folder = write_folder(dataset_id, layer)

    def target(self, key: str) -> str:
        return key

    def lock(self, dataset_id: str, layer: str, timeout_s: float) -> Any:
        from .bucket_lock import BucketLock

        return BucketLock(self.storage, f".locks/{dataset_id}.{layer}.lock", ttl_s=60.0, timeout_s=timeout_s, renew=True)

    def recover(self, version: str | None) -> None:
        recover_objects(self.storage, self.folder, version)

    def swap(self, version: str) -> ObjectSwap:
        return ObjectSwap(self.storage, self.folder, version)

    def _manifest_key(self, scale: str) -> str:
        return f"{self.layer_key}/{FOLDER}/{scale}.json"

    def manifest(self, scale: str) -> Manifest | None:
        data = self.storage.get(self._manifest_key(scale))
        return None if data is None else Manifest.parse(data, source=self.storage.url_for(self._manifest_key(scale)))

    def protect_manifest(self, swap: ObjectSwap, scale: str) -> None:
        swap.protect(self._manifest_key(scale))

    def set_checksums(self, scale: str, entries: dict[str, tuple[str, ...] | str]) -> None:
        """Set the accepted digests of some chunks (read-modify-write; the caller holds the layer lock)."""
        old = self.manifest(scale)
        chunks = dict(old.chunks) if old else {}
        chunks.update({k: (v,) if isinstance(v, str) else tuple(v) for k, v in entries.items()})
        self.storage.put(self._manifest_key(scale), Manifest(scale, chunks).to_json().encode(), content_type="application/json")
