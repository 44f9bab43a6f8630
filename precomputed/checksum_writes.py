"""Recording chunk checksums as layers are written (see :mod:`precomputed.checksums`).

Tasks run in parallel in any process, so each writes its own *fragment*,
``<layer>/checksums/parts/<task>.json`` holding ``{scale key: {chunk:
digest}}``, before its done marker; :func:`merge_fragments` folds them into
one manifest per scale when the staged layer is finalised. A later write into
a live layer goes through :func:`updating_checksums`, which accepts the old
and the new digest while the chunks are replaced, so a reader never sees a
good chunk as corrupt.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from .atomic import remove_leftovers, replace_bytes, replace_file
from .checksums import FOLDER, Manifest, digest, load_manifest, manifest_path, read_payload, scale_keys
from .errors import StoreError

__all__ = ["PARTS", "merge_fragments", "update_checksums", "updating_checksums", "write_fragment"]

PARTS = "parts"
Entries = Mapping[str, Mapping[str, str]]  # {scale key: {chunk name: digest}}


def write_fragment(layer: str | os.PathLike[str], name: str | None, entries: Entries, *, root: str | None = None) -> None:
    """Record the digests one task or block write produced (``name`` unique per task; None: a fresh one).

    ``root``: the bucket root URL when ``layer`` is a key under it.
    """
    if not any(entries.values()):
        return
    text = json.dumps({k: dict(sorted(v.items())) for k, v in sorted(entries.items())}, sort_keys=True)
    if root is not None:
        from .bucket import root_storage

        root_storage(root).put(f"{layer}/{FOLDER}/{PARTS}/{name or uuid.uuid4().hex}.json", text.encode(), content_type="application/json")
        return
    parts = Path(layer) / FOLDER / PARTS
    parts.mkdir(parents=True, exist_ok=True)
    replace_bytes(parts / f"{name or uuid.uuid4().hex}.json", text.encode(), durable=False)


def merge_fragments(layer: str | os.PathLike[str], *, root: str | None = None) -> dict[str, int]:
    """Fold a staged layer's fragments into one manifest per scale; returns the entries per scale.

    A chunk listed by two fragments with different digests (a block written
    twice) gets the digest of the file on disk. Every chunk file of every
    scale must be listed, and temp files of killed writers are removed,
    before the layer goes live. Rerunning it (a resumed finalize) is harmless.

    Raises
    ------
    StoreError
        A chunk file no fragment lists (it was written outside the writers).
    """
    if root is not None:
        from .checksum_bucket import merge_bucket_fragments

        return merge_bucket_fragments(root, str(layer))
    keys = scale_keys(layer)
    base = Path(layer)
    parts = base / FOLDER / PARTS
    merged: dict[str, dict[str, set[str]]] = {k: {} for k in keys}
    for key in keys:
        old = load_manifest(base, key)
        for name, accepted in (old.chunks.items() if old else ()):
            merged[key].setdefault(name, set()).update(accepted)
    fragments = sorted(parts.glob("*.json")) if parts.is_dir() else []
    for frag in fragments:
        for key, chunks in json.loads(frag.read_text()).items():
            for name, value in chunks.items():
                merged.setdefault(key, {}).setdefault(name, set()).add(value)
    counts = {}
    sharded = _sharded_keys(base)
    for key in keys:
        folder = base / key
        on_disk: set[str] = set()
        if folder.is_dir():
            remove_leftovers(folder)
            on_disk = {n[: -len(".gz")] if n.endswith(".gz") else n for n in os.listdir(folder)}
        if key in sharded:
            # chunks live inside shard files, each written whole by the one task that listed its chunks
            chunks = {name: tuple(sorted(v)) for name, v in merged[key].items()}
            replace_file(manifest_path(base, key), Manifest(key, chunks).to_json())
            counts[key] = len(chunks)
            continue
        unlisted = on_disk - merged[key].keys()
        if unlisted:
            raise StoreError(f"layer {layer}: chunk {key}/{min(unlisted)} and {len(unlisted) - 1} more were written without a checksum")
        chunks = {name: (next(iter(v)),) if len(v) == 1 else (digest(read_payload(base, key, name) or b""),) for name, v in merged[key].items() if name in on_disk}
        replace_file(manifest_path(base, key), Manifest(key, chunks).to_json())
        counts[key] = len(chunks)
    shutil.rmtree(parts, ignore_errors=True)
    return counts


def _sharded_keys(layer: Path) -> set[str]:
    info = json.loads((layer / "info").read_text())
    return {str(s["key"]) for s in info["scales"] if s.get("sharding")}


@contextmanager
def _manifest_lock(layer: str | os.PathLike[str], key: str) -> Iterator[None]:
    from filelock import FileLock

    folder = Path(layer) / FOLDER
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder / f".{key}.lock"), timeout=60):
        yield


def update_checksums(layer: str | os.PathLike[str], key: str, entries: Mapping[str, str | Sequence[str]]) -> None:
    """Set the accepted digests of some chunks of a scale, atomically (read-modify-write under a lock)."""
    with _manifest_lock(layer, key):
        old = load_manifest(layer, key)
        chunks = dict(old.chunks) if old else {}
        chunks.update({k: (v,) if isinstance(v, str) else tuple(v) for k, v in entries.items()})
        replace_file(manifest_path(layer, key), Manifest(key, chunks).to_json())


@contextmanager
def updating_checksums(layer: str | os.PathLike[str], key: str, entries: Mapping[str, str], *, payload: Callable[[str], bytes | None] | None = None) -> Iterator[None]:
    """Replace chunks of a live layer inside this block, their new digests in ``entries``.

    Before the block the manifest accepts the old and the new digest of each
    chunk, after it only the new; if the block fails, each chunk gets the
    digest of what is on disk (``payload(name)``, None for no file; default
    the local chunk file), since atomic chunk writes leave either version whole.

    Callers hold the layer's write lock: two overlapping updates would each
    drop the other's pending digests.
    """
    read = payload or (lambda name: read_payload(layer, key, name))
    old = load_manifest(layer, key)
    both = {name: tuple(dict.fromkeys((*(old.chunks.get(name, ()) if old else ()), new))) for name, new in entries.items()}
    update_checksums(layer, key, both)
    try:
        yield
    except BaseException:
        actual = {name: data for name in entries if (data := read(name)) is not None}
        update_checksums(layer, key, {name: digest(data) for name, data in actual.items()})
        raise
    update_checksums(layer, key, dict(entries))
