"""Replacing a file atomically: temp file in the same folder, rename (fsync when durable).

A reader sees the old file or the new one, never a mix; a crash leaves one of
the two (and at worst a hidden ``.<name>.*.tmp`` file, which
:func:`remove_leftovers` clears). Callers that read-modify-write hold their
own lock around it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["TMP_SUFFIX", "remove_leftovers", "replace_bytes", "replace_file"]

TMP_SUFFIX = ".tmp"


def replace_file(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    replace_bytes(path, text.encode("utf-8"), durable=True)


def replace_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; with ``durable``, fsync the file and its folder too.

    Chunk writers pass ``durable=False``: the rename alone keeps readers from
    ever seeing part of a chunk, and an fsync per chunk would cost more than
    writing it (their done markers are not fsynced either).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_leftovers(folder: str | os.PathLike[str]) -> int:
    """Delete the temp files that killed writers left in ``folder``; returns how many."""
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                count += 1
    return count
