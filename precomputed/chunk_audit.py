"""The full pass of ``blockio catalog validate --chunks``: every chunk of every layer read and checked.

Precomputed chunks go through :class:`~precomputed.integrity.ChunkVerifier`
(inflate with a cap, the layer's checksum manifest, the structural check,
decode), as one more check of :func:`~precomputed.layer_scan.scan_layer`.
OME-Zarr chunks are decoded by zarr itself, whose ``crc32c`` codec refuses a
flipped bit. Each bad chunk is named; nothing is repaired.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import CorruptChunk
from .layer_scan import DEFAULT_CHECKS, ChunkCheck, ChunkFile

__all__ = ["ChunkAudit", "audit_zarr", "full_checks"]


class ChunkAudit:
    """A :data:`~precomputed.layer_scan.ChunkCheck` that reads, checksums and decodes a chunk file."""

    def __init__(self) -> None:
        self._verifiers: dict[Path, Any] = {}

    def __call__(self, file: ChunkFile) -> str | None:
        from .integrity import ChunkVerifier

        verifier = self._verifiers.get(file.layer)
        if verifier is None:
            verifier = self._verifiers[file.layer] = ChunkVerifier(str(file.layer))
        try:
            verifier.decode(file.chunk, file.path.read_bytes(), gzipped=file.gzipped)
        except CorruptChunk as exc:
            return str(exc)
        except OSError as exc:
            return f"chunk {file.chunk} cannot be read: {exc.strerror or exc}"
        return None


def full_checks() -> tuple[ChunkCheck, ...]:
    """The size check, then the full read of every chunk."""
    return (*DEFAULT_CHECKS, ChunkAudit())


def _arrays(group: Path) -> list[Path]:
    """Every Zarr v3 array under ``group`` (levels of the image and of ``labels/<name>``)."""
    found = []
    for folder, dirs, files in os.walk(group):
        dirs[:] = sorted(d for d in dirs if d != "c")  # chunk folders hold no arrays
        if "zarr.json" in files and folder != str(group):
            try:
                meta = json.loads((Path(folder) / "zarr.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("node_type") == "array":
                found.append(Path(folder))
    return found


def audit_zarr(group: str | os.PathLike[str]) -> list[str]:
    """One problem per unreadable chunk of every array of an OME-Zarr group; empty when all read."""
    import zarr

    root = Path(group)
    problems: list[str] = []
    for path in _arrays(root):
        where = path.relative_to(root).as_posix()
        try:
            array = zarr.open_array(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for bad metadata
            problems.append(f"{root.name}/{where}: cannot be opened: {exc}")
            continue
        grid = [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks)]
        for index in itertools.product(*grid):
            try:
                array.get_block_selection(index)
            except Exception as exc:  # codecs raise ValueError, crc32c mismatches, blosc errors ...
                problems.append(f"chunk {root.name}/{where}/c/{'/'.join(map(str, index))} is corrupt: {exc}")
    return problems
