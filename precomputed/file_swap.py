"""Replacing a set of files all at once or not at all.

A write that touches many chunks (every mip of a pyramid update, in two
stores) must not leave some of them new and some old. :class:`FileSwap`
stages every new file under a hidden temporary name beside its target
(``.<name>.<tag>.tmp``, what :func:`precomputed.atomic.remove_leftovers`
clears), so running out of space or any other I/O error happens before a
single live file changed. :meth:`FileSwap.commit` then keeps a hard link to
each old file (no data is copied, no space is needed) and renames the new
ones into place; any failure up to the end of the ``with`` block puts every
old file back and removes the new ones::

    with FileSwap() as swap:
        for path, data in chunks:
            swap.stage(path, data)      # disk full here: nothing changed
        swap.protect(manifest)          # a file changed in place, restored on failure
        swap.commit()                   # renames
        catalog.update(...)             # fails: every file is put back

Each rename is atomic, so a reader in another process sees every chunk
whole, old or new. Callers hold the lock of what they write.

A process killed between the first and the last rename cannot undo itself,
so with a ``journal`` path :meth:`FileSwap.commit` first writes the list of
(target, old file kept) pairs there; :func:`recover` (run by the next writer
under the same lock) puts every old file back and removes the journal. The
journal is removed as soon as the ``with`` block ends well.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from types import TracebackType

from .atomic import TMP_SUFFIX, replace_bytes

__all__ = ["FileSwap", "recover"]

log = logging.getLogger(__name__)


class FileSwap:
    """Stage new files, swap them in together, undo everything on failure."""

    def __init__(self, *, journal: str | os.PathLike[str] | None = None) -> None:
        self._journal = None if journal is None else Path(journal)
        self._tag = uuid.uuid4().hex[:12]
        self._staged: list[tuple[Path, Path]] = []  # (temporary file, target)
        self._protected: list[tuple[Path, Path | None]] = []  # (target, hard link to the old file or None)
        self._swapped: list[tuple[Path, Path | None]] = []  # (target, hard link to the old file or None)
        self._committed = False

    def __len__(self) -> int:
        return len(self._staged)

    def _hidden(self, target: Path, what: str) -> Path:
        return target.with_name(f".{target.name}.{self._tag}.{what}{TMP_SUFFIX}")

    def stage(self, target: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` under a temporary name beside ``target`` (its folder is created if needed)."""
        path = Path(target)
        if self._committed:
            raise RuntimeError("internal: FileSwap.stage after commit")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._hidden(path, "new")
        self._staged.append((tmp, path))
        with open(tmp, "wb") as fh:
            fh.write(data)

    def _keep(self, target: Path) -> Path | None:
        """A hard link to the current ``target`` (None when there is none), to put it back later."""
        if not target.exists():
            return None
        backup = self._hidden(target, "old")
        try:
            os.link(target, backup)
        except OSError:
            # a file system without hard links: a copy costs space, but still restores the old bytes
            import shutil

            shutil.copy2(target, backup)
        return backup

    def protect(self, target: str | os.PathLike[str]) -> None:
        """Keep the current ``target`` (a file the caller rewrites in place) to restore it on failure."""
        path = Path(target)
        self._protected.append((path, self._keep(path)))

    def commit(self) -> None:
        """Rename every staged file into place, keeping the old ones until the block ends."""
        staged = self._staged
        self._swapped = [(target, self._keep(target)) for _, target in staged]
        if self._journal is not None:
            entries = [[str(t), None if b is None else str(b)] for t, b in self._protected + self._swapped]
            replace_bytes(self._journal, json.dumps({"tag": self._tag, "restore": entries}).encode())
        for (tmp, target), _ in zip(staged, self._swapped):
            os.replace(tmp, target)
        self._staged = []
        self._committed = True

    def rollback(self) -> None:
        """Put every old file back, remove the new ones and every temporary file."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []
        for target, backup in reversed(self._protected + self._swapped):
            try:
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            except OSError as exc:  # keep restoring the others; the caller's error propagates
                log.error("cannot restore %s (its old version is %s): %s", target, backup, exc)
        self._swapped = []
        self._protected = []
        if self._journal is not None:
            self._journal.unlink(missing_ok=True)

    def _discard(self) -> None:
        for _, backup in self._swapped + self._protected:
            if backup is not None:
                try:
                    backup.unlink()
                except OSError as exc:  # a leftover hidden .tmp file, nothing worse
                    log.warning("cannot remove %s: %s", backup, exc)
        self._swapped = []
        self._protected = []

    def __enter__(self) -> FileSwap:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None and not self._staged:
            if self._journal is not None:
                self._journal.unlink(missing_ok=True)  # from here on the new files stand
            self._discard()
        else:
            self.rollback()


def recover(journal: str | os.PathLike[str]) -> int:
    """Undo a swap whose process died mid-commit: every old file back, the journal gone.

    Returns how many files were restored (0 when there is no journal).
    The caller holds the lock the killed writer held.
    """
    path = Path(journal)
    try:
        entries = json.loads(path.read_bytes())["restore"]
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OSError(f"the write journal {path} is unreadable ({exc}); restore the layer from its hidden .old files by hand") from exc
    restored = 0
    for target, backup in reversed(entries):
        if backup is not None and os.path.exists(backup):
            os.replace(backup, target)  # a target not yet renamed gets its own bytes back: harmless
            restored += 1
        elif backup is None:
            Path(target).unlink(missing_ok=True)  # it did not exist before the write
    tag = str(json.loads(path.read_bytes()).get("tag", ""))
    for folder in {Path(target).parent for target, _ in entries} if tag else ():
        for leftover in folder.glob(f".*.{tag}.*{TMP_SUFFIX}"):  # staged files never renamed in
            leftover.unlink(missing_ok=True)
    path.unlink()
    log.warning("rolled back an interrupted write: %d file(s) restored from %s", restored, path)
    return restored

