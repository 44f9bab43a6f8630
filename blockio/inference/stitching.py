"""Stitching the tasks' components into segments with ids independent of the task grid.

Each segment task leaves, per core, its component map's six face slices, each
component's class and its first voxel in the (z, y, x) raster order of the
whole volume (``p1-<task>.npz``). Union-find joins components that touch
across a face of two neighbouring cores (both non-zero, same class); the
segments are then numbered 1, 2, ... by their first voxel in raster order,
which depends on the volume and the model's answer, not on the block size.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest
from blockio.inference.plan import RunPlan
from precomputed.geometry import xyz

__all__ = ["global_ids"]

_MAX_ID = np.iinfo(np.uint32).max


def _find(parent: npt.NDArray[np.int64], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = int(parent[a])
    return a


def _face(plan: RunPlan, index: int, face: str) -> npt.NDArray[np.int64]:
    with plan.load(f"p1-{index}.npz") as m:
        return np.asarray(m[face], dtype=np.int64).ravel()


def global_ids(plan: RunPlan) -> tuple[npt.NDArray[np.uint32], list[int], int]:
    """Final ids of every (task, local id) as one lookup table.

    Returns
    -------
    lut
        ``lut[offsets[i] + k]`` is the final id of component ``k`` of task ``i`` (0 stays 0).
    offsets
        Where each task's slice of ``lut`` starts (``tasks + 1`` entries).
    segments
        How many segments the layer has.

    Raises
    ------
    InvalidRequest
        More segments than a uint32 layer holds.
    """
    per_task = []
    for i in range(plan.tasks):
        with plan.load(f"p1-{i}.npz") as m:
            per_task.append((m["firsts"], m["classes"]))
    offsets = np.concatenate([[0], np.cumsum([len(c) for _, c in per_task])]).astype(np.int64)
    total = int(offsets[-1])
    parent = np.arange(total, dtype=np.int64)
    firsts = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
    classes = np.zeros(total, dtype=np.int64)
    for i, (f, c) in enumerate(per_task):
        firsts[offsets[i] + 1 : offsets[i + 1]] = f
        classes[offsets[i] : offsets[i + 1]] = c
    del per_task
    for i in range(plan.tasks):
        ijk = plan.ijk(i)
        for axis, (hi_face, lo_face) in enumerate((("x1", "x0"), ("y1", "y0"), ("z1", "z0"))):
            nb = list(ijk)
            nb[axis] += 1
            if nb[axis] >= plan.counts[axis]:
                continue
            j = plan.index(xyz(nb))
            a, b = _face(plan, i, hi_face), _face(plan, j, lo_face)
            keep = (a > 0) & (b > 0)
            a = a[keep] + offsets[i]
            b = b[keep] + offsets[j]
            keep = classes[a] == classes[b]
            pairs = np.unique(np.stack([a[keep], b[keep]]), axis=1)
            for u, v in pairs.T.tolist():
                ru, rv = _find(parent, u), _find(parent, v)
                if ru != rv:
                    parent[max(ru, rv)] = min(ru, rv)
    roots = parent
    while True:  # pointer jumping: every root is its set's smallest index
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            break
        roots = jumped
    background = np.zeros(total, dtype=bool)
    background[offsets[:-1]] = True
    first_of_root = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_of_root, roots[~background], firsts[~background])
    live = np.flatnonzero(first_of_root < np.iinfo(np.int64).max)
    order = live[np.argsort(first_of_root[live], kind="stable")]
    if len(order) > _MAX_ID:
        raise InvalidRequest(f"the prediction has {len(order)} segments, more than a uint32 layer holds")
    rank = np.zeros(total, dtype=np.uint32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    lut = rank[roots]
    lut[background] = 0
    return lut, offsets.tolist(), len(order)
