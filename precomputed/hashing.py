"""Content hashes of raw sources, for the catalog's ``source.sha256``.

A single file hashes to its own SHA-256. Several files (a TIFF stack, the
files of a Zarr store) hash to the SHA-256 of a manifest with one line per
file, ``<sha256>  <path relative to the common folder>``, sorted by path, as
``sha256sum`` prints it: ``sha256sum`` over the same files reproduces it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["expand_files", "file_sha256", "manifest_sha256"]

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def expand_files(paths: Iterable[str]) -> list[Path]:
    """Every regular file under the given files and folders, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        else:
            out.append(p)
    return out


def manifest_sha256(files: Sequence[Path], digests: Sequence[str]) -> str:
    """Combine per-file digests (see module docstring)."""
    if len(files) == 1:
        return digests[0]
    common = Path(os.path.commonpath([str(f) for f in files]))
    lines = sorted(f"{d}  {f.relative_to(common).as_posix()}\n" for f, d in zip(files, digests))
    return hashlib.sha256("".join(lines).encode()).hexdigest()
