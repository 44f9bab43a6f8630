"""An embedding set's entry in the catalog, and the signature that tells a stale set.

Each dataset record gets ``embeddings: {name: entry}``; an entry says what
the set is (kind, granularity ``cell`` | ``segment``, dimension, dtype,
metric), where its copies live (the Zarr array, the index: engine, version,
location, table), what made it (model name, version, weights hash; source
layer, mip, cell size in voxels and nm, halo) and the *input signature*: the
versions of the layers it was computed from. When a layer is rewritten its
version changes and :func:`stale_reasons` names it.
"""

from __future__ import annotations

import copy
from typing import Any

from blockio.errors import InvalidRequest
from precomputed.catalog import layer_version

__all__ = ["input_signature", "set_entry", "stale_reasons", "with_entry", "without_entry"]


def input_signature(record: dict[str, Any], layers: list[str]) -> dict[str, str]:
    """``{layer: version}`` of the layers a set is computed from."""
    return {layer: layer_version(record, layer) for layer in layers}


def stale_reasons(record: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    """Why a set no longer matches its inputs (empty: it is current)."""
    out = []
    for layer, version in (entry.get("input", {}).get("signature") or {}).items():
        if layer not in record["layers"]:
            out.append(f"layer {layer!r} is gone")
        elif layer_version(record, layer) != version:
            out.append(f"layer {layer!r} was rewritten (version {layer_version(record, layer)}, the set was computed from {version})")
    return out


def set_entry(record: dict[str, Any], name: str) -> dict[str, Any]:
    """The catalog entry of set ``name`` of a dataset record."""
    from blockio.errors import LayerNotFound

    sets = record.get("embeddings") or {}
    if name not in sets:
        raise LayerNotFound(f"dataset {record['id']!r} has no embedding set {name!r} (sets: {', '.join(sorted(sets)) or 'none'}; blockio embed makes one)")
    return dict(sets[name])


def with_entry(name: str, entry: dict[str, Any]) -> Any:
    """A pure change for :meth:`Catalog.update`: the record with ``embeddings[name] = entry`` (it may run twice on a bucket)."""

    def change(record: dict[str, Any] | None) -> dict[str, Any]:
        if record is None:
            raise InvalidRequest(f"the dataset of embedding set {name!r} was removed from the catalog")
        new = copy.deepcopy(record)
        new.setdefault("embeddings", {})[name] = copy.deepcopy(entry)
        return new

    return change


def without_entry(name: str) -> Any:
    """A pure change removing set ``name`` from a record."""

    def change(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is None:
            return None
        new = copy.deepcopy(record)
        (new.get("embeddings") or {}).pop(name, None)
        return new

    return change
