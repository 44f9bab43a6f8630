"""The segments a view selects when it opens, so its 3-D panel shows meshes from the start."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from blockio.errors import BlockioError
from blockio.store import Store

__all__ = ["MAX_OPENING_SEGMENTS", "central_segments"]

log = logging.getLogger(__name__)

#: meshes a view loads before the reviewer picks any
MAX_OPENING_SEGMENTS = 8
# the xy window around the centre that is read (voxels of mip 0): one small read per view
_WINDOW = 256


def central_segments(store: Store, record: dict[str, Any], layer: str, *, centre: Sequence[int] | None = None, limit: int = MAX_OPENING_SEGMENTS) -> list[int]:
    """Segment ids of ``layer`` around ``centre`` (x, y, z voxels; default the volume's centre voxel).

    The segment under the centre comes first, then the others of the xy
    section around it by their area there, at most ``limit``. A layer that
    cannot be read gives none (logged): the view still opens, with an empty
    3-D panel.
    """
    shape = [int(v) for v in record["shape"]]
    cx, cy, cz = (int(v) for v in centre) if centre is not None else (s // 2 for s in shape)
    wx, wy = min(_WINDOW, shape[0]), min(_WINDOW, shape[1])
    ox, oy = min(max(0, cx - wx // 2), shape[0] - wx), min(max(0, cy - wy // 2), shape[1] - wy)
    try:
        section = np.asarray(store.read_block(record["id"], (ox, oy, cz), (wx, wy, 1), layer=layer, boundary="zero"))[0]  # [y, x]
    except BlockioError as exc:
        log.warning("no opening segments for %s/%s: %s", record["id"], layer, exc)
        return []
    ids, counts = np.unique(section, return_counts=True)
    by_area = [int(i) for i, _c in sorted(zip(ids.tolist(), counts.tolist(), strict=True), key=lambda ic: (-ic[1], ic[0])) if i != 0]
    first = int(section[min(max(cy - oy, 0), wy - 1), min(max(cx - ox, 0), wx - 1)])
    ordered = ([first] if first else []) + [i for i in by_area if i != first]
    return ordered[:limit]
