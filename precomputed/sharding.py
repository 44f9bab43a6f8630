"""Sharded precomputed scales: choosing a sharding spec per scale, writing whole shards.

A sharded scale (``"sharding"`` in its ``info`` entry, Neuroglancer's
``neuroglancer_uint64_sharded_v1``) stores its chunks in ``<key>/<n>.shard``
files instead of one file per chunk: a chunk's key is its compressed Morton
code, shifted by ``preshift_bits``; with the ``identity`` hash, the low
``minishard_bits`` pick its minishard and the next ``shard_bits`` its shard, so
a shard holds an aligned box of ``2^a x 2^b x 2^c`` chunks (:func:`shard_shape`).
CloudVolume supplies the format (``ShardingSpecification``,
``synthesize_shard_file``, ``compressed_morton_code``); this module decides the
layout and writes files atomically.

Choosing a spec (:func:`choose_spec`) follows igneous' ``create_sharded_image_info``:
as many chunks per shard as a target size allows (:data:`DEFAULT_SHARD_BYTES`
of uncompressed chunk data), at most 4000 chunks per minishard and a shard
index of at most 8 KiB, and every remaining bit of the Morton code in
``shard_bits`` so that no two boxes share a shard file. Unlike igneous, the
shard is also kept inside the box of the task that writes it (``within``):
ingest and segmentation tasks then write whole shards, each task its own, so
tasks stay independent and a killed run resumes (a shard is written to a temp
file and renamed, :func:`precomputed.atomic.replace_bytes`).

Checksums stay per chunk (the digest of each chunk's payload, recorded in the
scale's manifest as for unsharded scales): readers fetch one chunk by a Range
read and can verify it without reading its whole shard, and a damaged shard
or minishard index that points at the wrong bytes fails that check too.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from .atomic import replace_bytes, replace_file
from .checksums import digest
from .geometry import Xyz, ceil_div, xyz

if TYPE_CHECKING:
    from .chunk_writer import ScaleWriter
    from .pyramid import Mip
    from .tasks import Pass

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "SHARD_TYPE",
    "apply_specs",
    "chunk_codes",
    "choose_spec",
    "is_sharded",
    "pack_scale",
    "pass_specs",
    "scale_sharding",
    "shard_shape",
    "spec_for_scale",
    "widen_passes",
    "write_shards",
]

log = logging.getLogger(__name__)

SHARD_TYPE = "neuroglancer_uint64_sharded_v1"
#: target uncompressed chunk bytes per shard (igneous' default is 3.5 GB; tasks cap it lower)
DEFAULT_SHARD_BYTES = 1 << 30
MAX_LABELS_PER_MINISHARD = 4000  # igneous: minishard indices of at most ~100 KiB
MAX_MINISHARD_BITS = 9  # a shard index of 2^9 x 16 bytes = 8 KiB, as igneous keeps it
SUFFIX = ".shard"


def _bits(n: int) -> int:
    """Bits of a Morton code an axis of ``n`` chunks uses: ``ceil(log2(n))``."""
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def shard_shape(spec: Mapping[str, Any], grid: Xyz) -> Xyz:
    """Chunks per shard along (x, y, z) for an ``identity``-hashed spec on a ``grid`` of chunks.

    The low ``preshift_bits + minishard_bits`` of a compressed Morton code
    interleave the axes' low bits round-robin (an axis drops out once its
    bits are used up), so a shard is an aligned box of that shape.
    """
    n = int(spec["preshift_bits"]) + int(spec["minishard_bits"])
    shape = [0, 0, 0]
    limit = [_bits(g) for g in grid]
    while n > 0 and any(s < m for s, m in zip(shape, limit)):
        for axis in range(3):
            if n > 0 and shape[axis] < limit[axis]:
                shape[axis] += 1
                n -= 1
    return (1 << shape[0], 1 << shape[1], 1 << shape[2])


def choose_spec(grid: Xyz, *, chunk_bytes: int, target_bytes: int = DEFAULT_SHARD_BYTES, within: Xyz | None = None, compress: bool = False) -> dict[str, Any]:
    """A sharding spec for a scale of ``grid`` (x, y, z) chunks of ``chunk_bytes`` each.

    Parameters
    ----------
    grid
        Chunks along (x, y, z).
    chunk_bytes
        Uncompressed bytes of one chunk (all channels).
    target_bytes
        Upper bound on a shard's uncompressed chunk bytes.
    within
        Upper bound on the shard's shape in chunks along (x, y, z) (a task's
        box); ``None``: none.
    compress
        ``data_encoding`` gzip (else raw); minishard indices are always gzip.
    """
    max_bits = sum(_bits(g) for g in grid)
    per_shard = max(1, target_bytes // max(1, chunk_bytes))
    inside = min(max_bits, int(math.floor(math.log2(per_shard))))
    if within is not None:
        while inside > 0 and any(s > w for s, w, g in zip(shard_shape({"preshift_bits": inside, "minishard_bits": 0}, grid), within, grid) if w < g):
            inside -= 1
    # igneous: split a shard into minishards of at most 4000 chunks, with a shard index of at most 8 KiB
    minishard = 0
    while minishard < min(inside, MAX_MINISHARD_BITS) and (1 << (inside - minishard)) > MAX_LABELS_PER_MINISHARD:
        minishard += 1
    return {
        "@type": SHARD_TYPE,
        "preshift_bits": inside - minishard,
        "minishard_bits": minishard,
        "shard_bits": max_bits - inside,
        "hash": "identity",
        "minishard_index_encoding": "gzip",
        "data_encoding": "gzip" if compress else "raw",
    }


def widen_passes(passes: Sequence[Pass], mips: Sequence[Mip], chunk_size: Xyz, *, voxel_bytes: int, task_bytes: int) -> list[Pass]:
    """The passes with each box doubled along its axis of fewest chunks while it fits ``task_bytes``.

    A shard is a box of ``2^a x 2^b x 2^c`` chunks whose exponents differ by
    at most one (the Morton code interleaves the axes) unless an axis runs
    out, so a task box one chunk deep in z (usual for anisotropic EM) could
    only hold shards of 2 x 2 x 1 chunks. The boxes stay multiples of the
    ones planned, so every mip is still written in whole chunks by one task.
    """
    from dataclasses import replace

    from .geometry import tile_boxes

    out = []
    for p in passes:
        shape = mips[p.read_mip].shape
        box = list(p.box_size)
        while True:
            open_axes = [d for d in range(3) if box[d] < shape[d]]
            if not open_axes:
                break
            axis = min(open_axes, key=lambda d: (box[d] / chunk_size[d], d))
            grown = box.copy()
            grown[axis] = min(2 * box[axis], shape[axis])
            if grown[0] * grown[1] * grown[2] * voxel_bytes > task_bytes:
                break
            box = grown
        size: Xyz = (box[0], box[1], box[2])
        out.append(p if size == p.box_size else replace(p, box_size=size, boxes=tile_boxes(shape, size)))
    return out


def pass_specs(mips: Sequence[Mip], passes: Iterable[Pass], chunk_size: Xyz, *, voxel_bytes: int, compress: bool, target_bytes: int = DEFAULT_SHARD_BYTES, skip: Iterable[int] = ()) -> dict[int, dict[str, Any]]:
    """``{mip: spec}`` for every mip the passes write (but ``skip``), each shard inside one task's box.

    A pass's box at mip ``k`` is its read box divided by the factors from the
    read mip to ``k``; a box that spans an axis of the volume puts no bound on that axis.
    """
    chunk_bytes = chunk_size[0] * chunk_size[1] * chunk_size[2] * voxel_bytes
    specs: dict[int, dict[str, Any]] = {}
    for p in passes:
        box = list(p.box_size)
        read_shape = mips[p.read_mip].shape
        whole = [b >= n for b, n in zip(box, read_shape)]
        factor = [1, 1, 1]
        for level in range(p.read_mip, max(p.write_mips) + 1):
            if level > p.read_mip:
                factor = [f * m for f, m in zip(factor, mips[level].factor)]
            if level not in p.write_mips or level in skip:
                continue
            shape = mips[level].shape
            grid = xyz(ceil_div(n, c) for n, c in zip(shape, chunk_size))
            within = xyz(g if w else ceil_div(b // f, c) for g, w, b, f, c in zip(grid, whole, box, factor, chunk_size))
            specs[level] = choose_spec(grid, chunk_bytes=chunk_bytes, target_bytes=target_bytes, within=within, compress=compress)
    return specs


def spec_for_scale(layer: str | os.PathLike[str], mip: int, *, target_bytes: int = DEFAULT_SHARD_BYTES, compress: bool = False) -> dict[str, Any]:
    """A spec for scale ``mip`` of a local layer as its ``info`` describes it, with no task box to fit."""
    info = _info(layer)
    scale = info["scales"][mip]
    chunk = [int(v) for v in scale["chunk_sizes"][0]]
    grid: Xyz = xyz(ceil_div(int(n), c) for n, c in zip(scale["size"], chunk))
    chunk_bytes = chunk[0] * chunk[1] * chunk[2] * int(info["num_channels"]) * np.dtype(info["data_type"]).itemsize
    return choose_spec(grid, chunk_bytes=chunk_bytes, target_bytes=target_bytes, compress=compress)


def scale_sharding(layer: str | os.PathLike[str], key: str) -> dict[str, Any] | None:
    """The ``sharding`` spec of the scale ``key`` in a local layer's ``info``; None when unsharded."""
    for scale in _info(layer)["scales"]:
        if str(scale["key"]) == key:
            return scale.get("sharding") or None
    raise RuntimeError(f"internal: layer {layer} has no scale {key!r}")


def is_sharded(layer: str | os.PathLike[str], mip: int) -> bool:
    """Whether scale ``mip`` of a local layer's ``info`` is sharded."""
    return bool(_info(layer)["scales"][mip].get("sharding"))


def _info(layer: str | os.PathLike[str]) -> dict[str, Any]:
    with open(os.path.join(layer, "info"), encoding="utf-8") as fh:
        return cast(dict[str, Any], json.load(fh))


def apply_specs(layer: str | os.PathLike[str], specs: Mapping[int, Mapping[str, Any]]) -> None:
    """Set the ``sharding`` of the given scales (by mip) in a local layer's ``info``, atomically."""
    info = _info(layer)
    for mip, spec in specs.items():
        info["scales"][mip]["sharding"] = dict(spec)
    replace_file(Path(layer) / "info", json.dumps(info, indent=2))


def chunk_codes(indices: npt.NDArray[Any], grid: Xyz) -> npt.NDArray[np.uint64]:
    """Compressed Morton codes of chunk grid indices ``[n, (x, y, z)]`` (CloudVolume's)."""
    from cloudvolume.datasource.precomputed.common import compressed_morton_code

    if len(indices) == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.atleast_1d(np.asarray(compressed_morton_code(np.asarray(indices), grid), dtype=np.uint64))


def _spec(spec: Mapping[str, Any]) -> Any:
    from cloudvolume.datasource.precomputed.sharding import ShardingSpecification

    return ShardingSpecification.from_dict(dict(spec))


def _shard_files(spec: Mapping[str, Any], codes: Sequence[int], payloads: Sequence[bytes]) -> dict[str, bytes]:
    """``{file name: shard bytes}`` of the chunks ``{code: payload}``."""
    from cloudvolume.datasource.precomputed.sharding import synthesize_shard_file

    spec_obj = _spec(spec)
    groups: dict[str, dict[int, bytes]] = defaultdict(dict)
    for code, payload in zip(codes, payloads):
        groups[str(spec_obj.compute_shard_location(code).shard_number) + SUFFIX][int(code)] = payload
    return {name: bytes(synthesize_shard_file(spec_obj, group)) for name, group in groups.items()}


def _check_whole_shards(writer: ScaleWriter, start: Xyz, stop: Xyz, grid: Xyz, shape: Xyz) -> None:
    end = tuple(o + n for o, n in zip(writer.offset, writer.size))
    for s, b, o, c, k, e in zip(start, stop, writer.offset, writer.chunk_size, shape, end):
        span = c * k
        if (s - o) % span or ((b - o) % span and b != e):
            raise RuntimeError(f"internal: box [{start}, {stop}) cuts shards of {shape} chunks in scale {writer.key} of {writer.layer}")


def write_shards(writer: ScaleWriter, spec: Mapping[str, Any], start: Xyz, block: npt.NDArray[Any]) -> dict[str, str]:
    """Write the whole shards a C-order ``[c, z, y, x]`` block at ``start`` (x, y, z) covers.

    Returns ``{chunk grid name: digest}`` of every chunk written, as the
    unsharded writer does. The block must cover whole shards (clipped at the
    volume's edge): a shard is written once, whole, by one task.
    """
    _, z, y, x = block.shape
    stop: Xyz = (start[0] + x, start[1] + y, start[2] + z)
    grid: Xyz = xyz(ceil_div(n, c) for n, c in zip(writer.size, writer.chunk_size))
    _check_whole_shards(writer, start, stop, grid, shard_shape(spec, grid))
    cx, cy, cz = writer.chunk_size
    indices: list[Xyz] = []
    payloads: list[bytes] = []
    digests: dict[str, str] = {}
    for z0 in range(start[2], stop[2], cz):
        for y0 in range(start[1], stop[1], cy):
            for x0 in range(start[0], stop[0], cx):
                a, b, c = x0 - start[0], y0 - start[1], z0 - start[2]
                payload = writer.encode(block[:, c : c + cz, b : b + cy, a : a + cx])
                digests[writer.chunk_name((x0, y0, z0))] = digest(payload)
                indices.append(((x0 - writer.offset[0]) // cx, (y0 - writer.offset[1]) // cy, (z0 - writer.offset[2]) // cz))
                payloads.append(payload)
    folder = Path(writer.layer) / writer.key
    folder.mkdir(parents=True, exist_ok=True)
    codes = [int(v) for v in chunk_codes(np.array(indices), grid)]
    for name, data in _shard_files(spec, codes, payloads).items():
        replace_bytes(folder / name, data, durable=False)
    return digests


def pack_scale(layer: str | os.PathLike[str], mip: int, spec: Mapping[str, Any]) -> int:
    """Turn an unsharded scale of a local layer into shards of ``spec``; returns the shard files written.

    Every chunk file's bytes go into its shard unchanged (so the checksum
    manifest's per-chunk digests stay valid), the ``info`` then says the
    scale is sharded, and only then are the chunk files removed: a run killed
    anywhere is finished by the next call (a scale that is sharded already
    only loses its leftover chunk files).
    """
    from .checksums import read_payload

    info = _info(layer)
    scale = info["scales"][mip]
    key = str(scale["key"])
    folder = Path(layer) / key
    written = 0
    if not scale.get("sharding"):
        chunk: Xyz = xyz(int(v) for v in scale["chunk_sizes"][0])
        offset: Xyz = xyz(int(v) for v in scale["voxel_offset"])
        size: Xyz = xyz(int(v) for v in scale["size"])
        grid: Xyz = xyz(ceil_div(n, c) for n, c in zip(size, chunk))
        names = sorted(_chunk_names(folder))
        indices = [tuple((int(part.split("-")[0]) - o) // c for part, o, c in zip(name.split("_"), offset, chunk)) for name in names]
        spec_obj = _spec(spec)
        by_shard: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for name, code in zip(names, chunk_codes(np.array(indices, dtype=np.int64).reshape(-1, 3), grid)):
            by_shard[str(spec_obj.compute_shard_location(int(code)).shard_number) + SUFFIX].append((int(code), name))
        for members in by_shard.values():  # one shard's chunks in memory at a time
            payloads = [(code, read_payload(layer, key, name)) for code, name in members]
            present = [(code, data) for code, data in payloads if data is not None]
            for shard_name, data in _shard_files(spec, [c for c, _ in present], [d for _, d in present]).items():
                replace_bytes(folder / shard_name, data, durable=False)
                written += 1
        apply_specs(layer, {mip: spec})
    for name in _chunk_names(folder):
        for suffix in ("", ".gz"):
            (folder / (name + suffix)).unlink(missing_ok=True)
    log.info("scale %s of %s: %d shard file(s) written", key, layer, written)
    return written


def _chunk_names(folder: Path) -> set[str]:
    """Grid names of the unsharded chunk files in a scale folder."""
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return set()
    return {n.removesuffix(".gz") for n in entries if not n.startswith(".") and not n.endswith(SUFFIX) and n.count("_") == 2}
