"""Replacing a file atomically: temp file in the same folder, rename (fsync when durable).

The one place every writer of a whole file goes through (catalog, reviews,
thumbnails, chunks, manifests, task markers, mesh fragments). A reader sees
the old file or the new one, never a mix; a crash leaves one of the two (and
at worst a hidden ``.<name>.*.tmp`` file, which :func:`remove_leftovers`
clears). Callers that read-modify-write hold their own lock around it.

Permissions: the file is created the way ``open(path, "w")`` creates one,
mode ``0o666`` less the process umask (``0o644`` under the usual ``022``), so
whoever may read the store's chunks may read its catalog too; pass ``mode``
for an exact mode instead (``0o600`` for a secret).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_SUFFIX", "atomic_write", "remove_leftovers", "replace_bytes", "replace_file"]

TMP_SUFFIX = ".tmp"
_CREATE_MODE = 0o666  # the kernel takes the umask off, as for any new file
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _open_temp(target: Path, mode: int | None) -> tuple[int, Path]:
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, _FLAGS, _CREATE_MODE)
        except FileExistsError:  # pragma: no cover - 48 random bits colliding
            continue
        break
    if mode is not None:
        try:
            os.fchmod(fd, mode)  # exact: the umask does not apply to chmod
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
    return fd, tmp


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, durable: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` whole when the ``with`` block ends.

    Parameters
    ----------
    path
        The file to replace; its folder must exist.
    durable
        Also fsync the file before the rename and the folder after it, so
        the new file survives a machine crash. Writers of many small files
        whose rerun rewrites them anyway (chunks, task markers) pass
        ``False``: the rename alone keeps readers from seeing part of a file.
    mode
        Exact permission bits of the new file (e.g. ``0o600``); default
        ``0o666`` less the umask.

    An exception inside the block leaves ``path`` as it was and removes the
    temp file.

    >>> with atomic_write("marker.npz", durable=False) as fh:  # doctest: +SKIP
    ...     np.savez(fh, counts=counts)
    """
    target = Path(path)
    fd, tmp = _open_temp(target, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(target.parent)


def replace_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, durable: bool = True, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write` for ``durable`` and ``mode``).

    Chunk writers pass ``durable=False``: the rename alone keeps readers from
    ever seeing part of a chunk, and an fsync per chunk would cost more than
    writing it (their done markers are not fsynced either).
    """
    with atomic_write(path, durable=durable, mode=mode) as fh:
        fh.write(data)


def replace_file(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    replace_bytes(path, text.encode("utf-8"), durable=True, mode=mode)


def remove_leftovers(folder: str | os.PathLike[str]) -> int:
    """Delete the temp files that killed writers left in ``folder``; returns how many."""
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                count += 1
    return count
