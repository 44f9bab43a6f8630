"""Folding a bucket layer's checksum fragments into manifests (the bucket side of :mod:`precomputed.checksum_writes`).

The same rules as on a local root: every chunk object of every scale must be
listed by a fragment, a chunk listed with two digests gets the digest of
the object stored, and the manifests are the same bytes a local merge
writes. Rerunning it (a resumed finalize) is harmless: the fragments are
deleted only after every manifest is written.
"""

from __future__ import annotations

import json
import zlib

from .bucket import root_storage
from .checksums import FOLDER, Manifest, digest
from .errors import StoreError
from .storage import Storage

__all__ = ["merge_bucket_fragments", "stored_digest"]

PARTS = "parts"


def stored_digest(data: bytes, accepted: set[str]) -> str:
    """The digest of a stored chunk's payload: its bytes, or their gunzipped form (gzip layers on object stores)."""
    raw = digest(data)
    if raw in accepted or data[:2] != b"\x1f\x8b":
        return raw
    try:
        return digest(zlib.decompress(data, 16 + zlib.MAX_WBITS))
    except zlib.error:
        return raw


def _manifest(storage: Storage, key: str) -> Manifest | None:
    data = storage.get(key)
    return None if data is None else Manifest.parse(data, source=storage.url_for(key))


def merge_bucket_fragments(root: str, layer: str) -> dict[str, int]:
    """Merge the fragments of the layer at key ``layer`` of bucket root ``root``; returns the entries per scale."""
    storage = root_storage(root)
    info = storage.get(f"{layer}/info")
    if info is None:
        raise StoreError(f"{storage.url_for(layer)}: the layer has no info")
    keys = [str(s["key"]) for s in json.loads(info)["scales"]]
    merged: dict[str, dict[str, set[str]]] = {k: {} for k in keys}
    for key in keys:
        old = _manifest(storage, f"{layer}/{FOLDER}/{key}.json")
        for name, accepted in (old.chunks.items() if old else ()):
            merged[key].setdefault(name, set()).update(accepted)
    fragments = list(storage.list(f"{layer}/{FOLDER}/{PARTS}/"))
    for data in storage.get_many(fragments).values():
        for key, listed in json.loads(data or b"{}").items():
            for name, value in listed.items():
                merged.setdefault(key, {}).setdefault(name, set()).add(value)
    counts = {}
    for key in keys:
        prefix = f"{layer}/{key}/"
        stored = {k[len(prefix) :].removesuffix(".gz") for k in storage.list(prefix)}
        unlisted = stored - merged[key].keys()
        if unlisted:
            raise StoreError(f"layer {storage.url_for(layer)}: chunk {key}/{min(unlisted)} and {len(unlisted) - 1} more were written without a checksum")
        chunks: dict[str, tuple[str, ...]] = {}
        for name, digests in merged[key].items():
            if name not in stored:
                continue
            if len(digests) == 1:
                chunks[name] = (next(iter(digests)),)
            else:
                chunks[name] = (stored_digest(storage.get(prefix + name) or b"", digests),)
        storage.put(f"{layer}/{FOLDER}/{key}.json", Manifest(key, chunks).to_json().encode(), content_type="application/json")
        counts[key] = len(chunks)
    for fragment in fragments:
        storage.delete(fragment)
    return counts
