"""Legacy (unsharded) precomputed meshes of a segmentation layer, made with zmesh.

Layout, inside the layer folder::

    mesh/info                              {"@type": "neuroglancer_legacy_mesh"}
    mesh/<id>:0                            manifest: {"fragments": [names, sorted]}
    mesh/<id>:0:<x0>-<x1>_<y0>-<y1>_<z0>-<z1>   one fragment per segment per task box
    mesh/<id>:0:empty                      a zero-vertex fragment (segments too small to mesh)

Fragments are meshed at mip 1 (mip 0 when the pyramid has one level), one
per segment per task box (named by its mip-0 voxels ``[x0, x1)`` ...), from
the box plus one voxel of that mip on its high sides, so the surfaces of
neighbouring boxes share their vertices on the seam; Neuroglancer and
CloudVolume concatenate the fragments of a manifest, which makes each mesh
whole across box boundaries. Sides on the volume's edge are closed (zero
padding), inner sides are left open for the neighbour. Vertices are in nm,
voxel-centred (voxel ``i`` spans ``[i, i + 1) * voxel_size``, as Neuroglancer
draws it). Fragment files are CloudVolume's ``Mesh.to_precomputed`` bytes,
stored uncompressed.

Every segment listed in the segment properties has a manifest. A segment of
a few voxels can vanish from mip 1 (the mode pyramid keeps the majority of
each 2x2x1 window) and so have no surface; it gets a manifest naming one
zero-vertex fragment (``<uint32 0>``), which Neuroglancer draws as nothing
and CloudVolume's ``mesh.get`` returns as an empty ``Mesh``. A manifest of
``{"fragments": []}`` would not do: CloudVolume then fails concatenating no
meshes, and a missing manifest fails both readers.

Mip 1 and not mip 0: zmesh's quadric simplification dominates the cost and
scales with the faces; at mip 1 (2x2x1 for serial-section EM) it was ~4x
faster on a 512x512x128 volume, at a resolution still finer than z.

Why legacy and not multi-resolution sharded meshes: it is a handful of plain
files that Neuroglancer and CloudVolume both read, each task writes its own
fragments with no coordination, and a manifest is a small JSON list. The
multi-resolution format needs per-segment octrees of LODs merged across tasks,
Draco encoding and sharded indices (igneous-level machinery); it pays off at
millions of segments, not for the prediction layers written here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .atomic import replace_bytes

__all__ = ["EMPTY_FRAGMENT", "MESH_DIR", "empty_fragment_name", "fragment_name", "mesh_box", "write_manifests", "write_mesh_info"]

log = logging.getLogger(__name__)

MESH_DIR = "mesh"
# zmesh's quadric simplification: aim for 1/REDUCTION of the faces, moving no vertex
# further than about one voxel (zmesh's default bound), which keeps seams closed
REDUCTION = 100

Xyz = tuple[int, int, int]
EMPTY_FRAGMENT = np.zeros(1, dtype="<u4").tobytes()
"""A legacy mesh fragment of no vertices and no triangles."""


def fragment_name(segid: int, start: Xyz, stop: Xyz) -> str:
    """``<id>:0:<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`` for the task box ``[start, stop)`` (x, y, z)."""
    return f"{segid}:0:" + "_".join(f"{a}-{b}" for a, b in zip(start, stop))


def empty_fragment_name(segid: int) -> str:
    """``<id>:0:empty``: the zero-vertex fragment of a segment too small to mesh."""
    return f"{segid}:0:empty"


def _atomic_write(path: str, data: bytes) -> None:
    # no fsync: like chunks, fragments are rewritten by a rerun, and the rename keeps readers whole
    replace_bytes(path, data, durable=False)


def mesh_box(
    mesh_dir: str,
    labels_zyx: npt.NDArray[Any],
    *,
    start: Xyz,
    stop: Xyz,
    volume_shape: Xyz,
    voxel_size: tuple[float, float, float],
    name_box: tuple[Xyz, Xyz] | None = None,
) -> list[int]:
    """Mesh every non-zero segment of one task box and write its fragments.

    Parameters
    ----------
    labels_zyx
        C-order ``[z, y, x]`` labels of the box ``[start, stop)`` (x, y, z,
        voxels of the mip meshed) plus one voxel on each high side that is inside the
        volume.
    volume_shape, voxel_size
        (x, y, z) shape and voxel size (nm) of the mip meshed; sides on the
        volume's edge are closed.
    name_box
        The box that names the fragments (the task's mip-0 box); default the box.

    Returns
    -------
    The sorted ids that have a fragment from this box.
    """
    import zmesh  # local: only mesh tasks pay for the import

    # close the surfaces on the volume's edge: a zero voxel on each side that touches it
    low = [1 if a == 0 else 0 for a in start]
    high = [1 if b >= n else 0 for b, n in zip(stop, volume_shape)]
    if any(low) or any(high):
        labels_zyx = np.pad(labels_zyx, [(lo, hi) for lo, hi in zip(reversed(low), reversed(high))])
    mesher = zmesh.Mesher(tuple(float(v) for v in voxel_size))
    mesher.mesh(labels_zyx.T, close=False)  # .T: zmesh takes (x, y, z), the Fortran view
    origin = np.array([(a - lo) * v for a, lo, v in zip(start, low, voxel_size)], dtype=np.float64)
    ids = sorted(int(i) for i in mesher.ids() if i != 0)
    first, last = name_box or (start, stop)
    from cloudvolume import Mesh

    for segid in ids:
        mesh = mesher.get(segid, normals=False, reduction_factor=REDUCTION, voxel_centered=True)
        mesher.erase(segid)
        vertices = (mesh.vertices + origin).astype(np.float32)
        data = Mesh(vertices, mesh.faces.astype(np.uint32), None, segid=segid).to_precomputed()
        _atomic_write(os.path.join(mesh_dir, fragment_name(segid, first, last)), data)
    mesher.clear()
    return ids


def write_mesh_info(mesh_dir: str) -> None:
    """``mesh/info``: the legacy (unsharded) format."""
    os.makedirs(mesh_dir, exist_ok=True)
    _atomic_write(os.path.join(mesh_dir, "info"), json.dumps({"@type": "neuroglancer_legacy_mesh"}).encode())


def write_manifests(mesh_dir: str, fragments: Mapping[int, Iterable[str]], *, segments: Iterable[int] = ()) -> list[int]:
    """One ``<id>:0`` manifest per segment listing its fragments (sorted, so reruns are identical).

    Parameters
    ----------
    fragments
        ``{id: fragment names}`` of the segments that were meshed.
    segments
        Every id of the layer (those of the segment properties); an id
        without fragments gets the zero-vertex fragment, so each has a mesh.

    Returns
    -------
    The sorted ids given an empty mesh.
    """
    empty = sorted({int(s) for s in segments} - {int(s) for s in fragments})
    for segid in empty:
        _atomic_write(os.path.join(mesh_dir, empty_fragment_name(segid)), EMPTY_FRAGMENT)
    manifests: dict[int, list[str]] = {int(k): sorted(v) for k, v in fragments.items()}
    manifests.update({segid: [empty_fragment_name(segid)] for segid in empty})
    for segid, names in manifests.items():
        _atomic_write(os.path.join(mesh_dir, f"{segid}:0"), json.dumps({"fragments": names}).encode())
    if empty:
        log.info("%d segments too small to mesh at the mesh mip get an empty mesh", len(empty))
    return empty
