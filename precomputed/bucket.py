"""What writers share on a bucket root: the root opened once per process, versioned store prefixes.

Tasks of a run on ``s3://`` or ``gs://`` carry the root's URL and keys under it,
never local paths: a Dask worker on another host shares nothing but the
bucket. :func:`root_storage` opens the root once per process (which also
registers its endpoint alias and credential guards there, see
:mod:`precomputed.storage.endpoints`), so CloudVolume can then open
:meth:`~precomputed.storage.Storage.url_for` URLs in that process.

**Publishing without renames.** An object store cannot move a folder, and
copying one object by one would let readers see half a layer. A writer on a
bucket therefore writes a layer's objects straight to a prefix no record
names yet, ``precomputed/<id>/<layer>~<tag>`` and ``zarr/<id>~<tag>.zarr``
(``~`` is in no dataset id or layer name, so no such prefix is ever
another layer's), and publishes them with one conditional catalog write that
points the record's ``path`` there. Readers follow the record, so they see
the old layer or the new one, whole. The prefix the record named before is
deleted afterwards; a kill before that leaves garbage, never a torn layer.
``<tag>`` is chosen when a run is planned and kept in its staging plan, so a
resumed run writes the same keys again (bit-identical objects).
"""

from __future__ import annotations

import os
import secrets
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["delete_prefix", "new_tag", "root_storage", "upload_folder", "versioned"]

_opened: dict[tuple[int, str], Storage] = {}
_lock = threading.Lock()
SEPARATOR = "~"


def root_storage(url: str) -> Storage:
    """The :class:`~precomputed.storage.Storage` of root ``url``, opened once per process."""
    key = (os.getpid(), url)
    with _lock:
        found = _opened.get(key)
        if found is None:
            from .storage import open_root

            found = _opened[key] = open_root(url)
        return found


def new_tag() -> str:
    """A fresh version tag for a run's store prefixes (12 hex digits)."""
    return secrets.token_hex(6)


def versioned(key: str, tag: str, suffix: str = "") -> str:
    """``<key>~<tag><suffix>``: the store prefix of one run (``zarr/em`` -> ``zarr/em~1a2b.zarr``)."""
    return f"{key}{SEPARATOR}{tag}{suffix}"


def delete_prefix(storage: Storage, prefix: str) -> int:
    """Delete every object under ``prefix/``; returns how many."""
    keys = list(storage.list(prefix.rstrip("/") + "/"))
    if not keys:
        return 0
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(storage.delete, keys))
    return len(keys)


def upload_folder(storage: Storage, folder: str | os.PathLike[str], prefix: str) -> int:
    """Put every file under the local ``folder`` at ``prefix/<its relative path>``, concurrently; returns how many.

    For the writers whose format code writes files (meshes, segment
    properties): they write into a temporary folder, which is then uploaded.
    """
    from pathlib import Path

    base = Path(folder)
    items = {f"{prefix}/{p.relative_to(base).as_posix()}": p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
    storage.put_many(items, durable=False)
    return len(items)
