"""A scan of a precomputed layer's chunk files against its grid.

For every scale the layer's ``info`` lists, one directory listing gives
every chunk file and its size; each chunk of the grid is then checked:

- a chunk with no file is *missing* (unless the layer reads never-written
  chunks as background, ``fill_missing``);
- every file goes through the scan's *checks*, each a function of a
  :class:`ChunkFile` returning a problem or ``None``. The default,
  :func:`check_size`, reads no chunk: a ``raw`` chunk must have exactly the
  bytes of its shape, a ``.gz`` one must say so in its gzip trailer (4
  bytes), a ``compressed_segmentation`` one must hold at least its headers.

A full pass that reads and checksums every chunk plugs in as one more check
(``scan_layer(path, checks=(check_size, verify_checksum))``).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import VoxelBox, Xyz, chunk_grid, xyz

__all__ = ["ChunkCheck", "ChunkFile", "DEFAULT_CHECKS", "check_size", "scan_layer"]

#: how many chunks a problem of one scale names before it only counts them
EXAMPLES = 5


@dataclass(frozen=True)
class ChunkFile:
    """One chunk file of a layer, as the scan found it."""

    layer: Path
    scale: dict[str, Any]
    name: str  # grid name x0-x1_y0-y1_z0-z1 (without .gz)
    path: Path
    size: int  # bytes of the file
    gzipped: bool
    shape: Xyz  # (x, y, z) voxels, clipped to the volume
    dtype: np.dtype[Any]
    channels: int

    @property
    def chunk(self) -> str:
        """``<scale key>/<grid name>``, as errors name chunks."""
        return f"{self.scale['key']}/{self.name}"


ChunkCheck = Callable[[ChunkFile], "str | None"]


def _gzip_length(path: Path) -> int | None:
    """The uncompressed length a gzip file's trailer records (mod 2^32); None when it has none."""
    with open(path, "rb") as fh:
        if fh.seek(0, os.SEEK_END) < 18:  # a gzip header and trailer alone take 18 bytes
            return None
        fh.seek(-4, os.SEEK_END)
        return int(struct.unpack("<I", fh.read(4))[0])


def check_size(file: ChunkFile) -> str | None:
    """The file's length against what its encoding and shape allow, reading at most 4 bytes."""
    x, y, z = file.shape
    encoding = file.scale.get("encoding", "raw")
    if file.size == 0:
        return f"chunk {file.chunk} is empty"
    if encoding == "raw":
        want = x * y * z * file.channels * file.dtype.itemsize
        if file.gzipped:
            got = _gzip_length(file.path)
            if got is None or got != want % (1 << 32):
                return f"chunk {file.chunk}.gz is truncated or damaged: its gzip trailer {'is missing' if got is None else f'says {got} bytes'}, a raw chunk of this shape has {want}"
        elif file.size != want:
            return f"chunk {file.chunk} is truncated: {file.size} bytes, a raw {x}x{y}x{z} (x, y, z) chunk of {file.channels} x {file.dtype.name} has {want}"
    elif encoding == "compressed_segmentation" and not file.gzipped:
        bx, by, bz = (int(v) for v in file.scale.get("compressed_segmentation_block_size", (8, 8, 8)))
        blocks = -(-x // bx) * -(-y // by) * -(-z // bz)
        least = 4 * file.channels * (1 + 2 * blocks)  # per channel an offset and a 2-word header per block
        if file.size % 4 or file.size < least:
            return f"chunk {file.chunk} is truncated: {file.size} bytes, a compressed_segmentation chunk of this shape holds at least {least} in whole uint32 words"
    return None


DEFAULT_CHECKS: tuple[ChunkCheck, ...] = (check_size,)


def _listing(folder: Path) -> dict[str, tuple[Path, int, bool]]:
    """``{grid name: (path, size, gzipped)}`` of the chunk files in one scale folder."""
    out: dict[str, tuple[Path, int, bool]] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue  # temp files of writers, not chunks
        gz = entry.name.endswith(".gz")
        name = entry.name[: -len(".gz")] if gz else entry.name
        out.setdefault(name, (Path(entry.path), entry.stat().st_size, gz))
    return out


def _summary(what: str, names: list[str], where: str) -> str:
    shown = ", ".join(names[:EXAMPLES]) + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")
    return f"{where}: {len(names)} chunk(s) {what}: {shown}"


def scan_layer(layer: str | os.PathLike[str], *, fill_missing: bool = False, checks: Sequence[ChunkCheck] = DEFAULT_CHECKS) -> list[str]:
    """Problems of one local precomputed layer's chunks; empty when every chunk is there and passes.

    Parameters
    ----------
    layer
        The layer's folder (holding ``info``).
    fill_missing
        Chunks never written read as background: a chunk without a file is fine.
    checks
        Run on every chunk file; each returns a one-line problem or ``None``.
    """
    root = Path(layer)
    info = json.loads((root / "info").read_text(encoding="utf-8"))
    dtype = np.dtype(info["data_type"])
    channels = int(info.get("num_channels", 1))
    problems: list[str] = []
    for scale in info["scales"]:
        if scale.get("sharding"):
            continue  # one file holds many chunks: only a full pass can see them
        key = str(scale["key"])
        bounds = VoxelBox.from_offset_size(xyz(int(v) for v in scale["voxel_offset"]), xyz(int(v) for v in scale["size"]))
        chunk: Xyz = xyz(int(v) for v in scale["chunk_sizes"][0])
        files = _listing(root / key)
        missing: list[str] = []
        bad: list[str] = []
        for _, box in chunk_grid(bounds, chunk, bounds):
            name = "_".join(f"{a}-{b}" for a, b in zip(box.start, box.stop))
            found = files.get(name)
            if found is None:
                if not fill_missing:
                    missing.append(name)
                continue
            file = ChunkFile(root, scale, name, found[0], found[1], found[2], box.size, dtype, channels)
            bad.extend(f"{root}: {p}" for check in checks if (p := check(file)) is not None)
        if missing:
            problems.append(_summary("missing (never written, and the layer does not read them as background)", missing, f"{root}/{key}"))
        problems.extend(bad[:EXAMPLES])
        if len(bad) > EXAMPLES:
            problems.append(f"{root}/{key}: and {len(bad) - EXAMPLES} more damaged chunk(s)")
    return problems
