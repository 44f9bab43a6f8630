"""Neuroglancer segment properties of a segmentation layer (``segment_properties/info``).

The inline format: every non-zero id present in the layer, as base-10
strings, with a ``label`` (the class name, else ``segment N``) and a numeric
``voxels`` property (the mip-0 voxel count). Counts are made per task with
``fastremap.unique`` and merged, never from the whole volume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import fastremap
import numpy as np
import numpy.typing as npt

from .atomic import replace_file
from .errors import InvalidOption

__all__ = ["PROPERTIES_DIR", "check_class_names", "count_labels", "merge_counts", "properties_info", "write_properties"]

PROPERTIES_DIR = "segment_properties"
Counts = tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]


def count_labels(block: npt.NDArray[Any]) -> Counts:
    """Sorted non-zero ids of a block and their voxel counts."""
    ids, counts = fastremap.unique(block, return_counts=True)
    keep = ids != 0
    return ids[keep].astype(np.uint64), counts[keep].astype(np.uint64)


def merge_counts(parts: Iterable[Counts]) -> Counts:
    """Sum the counts of the same ids over several blocks; ids sorted."""
    parts = list(parts)
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    ids = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    unique, inverse = np.unique(ids, return_inverse=True)
    total = np.zeros(len(unique), dtype=np.uint64)
    np.add.at(total, inverse.ravel(), counts)
    return unique, total


def properties_info(ids: npt.NDArray[np.uint64], counts: npt.NDArray[np.uint64], class_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The ``segment_properties/info`` JSON for these ids (sorted) and voxel counts."""
    names = class_names or {}
    # Neuroglancer's numeric properties are at most 32-bit; float32 beyond uint32's range
    big = len(counts) and int(counts.max()) > np.iinfo(np.uint32).max
    voxels: list[Any] = [float(np.float32(c)) for c in counts] if big else [int(c) for c in counts]
    return {
        "@type": "neuroglancer_segment_properties",
        "inline": {
            "ids": [str(int(i)) for i in ids],
            "properties": [
                {"id": "label", "type": "label", "values": [names.get(int(i), f"segment {int(i)}") for i in ids]},
                {
                    "id": "voxels",
                    "type": "number",
                    "data_type": "float32" if big else "uint32",
                    "description": "voxel count at mip 0",
                    "values": voxels,
                },
            ],
        },
    }


def write_properties(layer_path: str, info: dict[str, Any]) -> None:
    """Write ``<layer>/segment_properties/info`` atomically."""
    folder = os.path.join(layer_path, PROPERTIES_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "info")
    replace_file(path, json.dumps(info, separators=(",", ":")))


def check_class_names(class_names: Mapping[int, str] | None) -> dict[int, str]:
    """Class names keyed by positive segment ids; anything else is an InvalidOption."""
    out: dict[int, str] = {}
    for key, value in (class_names or {}).items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key <= 0:
            raise InvalidOption(f"class_names keys must be positive segment ids, got {key!r}")
        out[int(key)] = str(value)
    return out
