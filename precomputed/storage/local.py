"""A store root that is a folder on this machine (a plain path or ``file://``).

Writes go through :mod:`precomputed.atomic` (temporary file, rename), so a
reader sees the old file or the new. :meth:`LocalStorage.put_if` compares and
writes under a file lock beside the key (``.<name>.storage-lock``), so it is
safe across processes on one machine (and on NFS where ``flock`` works);
its token is a digest of the content.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..atomic import TMP_SUFFIX, replace_bytes
from ..errors import StoreError
from .base import Storage, check_key

__all__ = ["LOCK_SUFFIX", "LocalStorage"]

LOCK_SUFFIX = ".storage-lock"
LOCK_TIMEOUT_S = 120.0


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _ours(name: str) -> bool:
    """Temp files of atomic writes and put_if locks: bookkeeping, never listed as keys."""
    return name.startswith(".") and (name.endswith(TMP_SUFFIX) or name.endswith(LOCK_SUFFIX))


def path_of_url(url: str) -> Path:
    """The folder a plain path or ``file://`` URL names (absolute, symlinks kept).

    As in CloudFiles and CloudVolume, the rest of a ``file://`` URL is the
    path itself, not percent-decoded: ``file:///data/my root`` is the folder
    ``/data/my root``, so one URL means one folder to all three.
    """
    return Path(url.removeprefix("file://")).expanduser().absolute()


def file_url(path: Path) -> str:
    """``file://`` + the absolute path, as CloudFiles and CloudVolume read it (no percent-encoding)."""
    return "file://" + path.as_posix()


class LocalStorage(Storage):
    """A folder as a store root.

    Parameters
    ----------
    root
        The folder (created on the first write, not before).
    """

    is_local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = path_of_url(os.fspath(root))
        self.url = file_url(self.root)

    def url_for(self, key: str = "") -> str:
        return file_url(self.root if not key else self._path(key))

    def local_path(self, key: str = "") -> Path:
        return self.root if not key else self._path(key)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    # reading ------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(f"{path}: cannot be read: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        folder_key, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder_key.split("/")) if folder_key else self.root
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            # prune folders that cannot hold a match: keeps list("precomputed/em/") off other datasets
            dirnames[:] = [d for d in dirnames if (base + d + "/").startswith(prefix) or prefix.startswith(base + d + "/")]
            found.extend(base + name for name in filenames if not _ours(name) and (base + name).startswith(prefix))
        yield from sorted(found)

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        data = self.get(key)
        return data, (None if data is None else _digest(data))

    # writing ------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str | None = None, durable: bool = True) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_bytes(path, data, durable=durable)
        except OSError as exc:
            raise StoreError(f"{path}: cannot be written: {exc.strerror or exc}") from exc

    def put_if(self, key: str, data: bytes, *, token: str | None, content_type: str | None = None) -> bool:
        from filelock import FileLock

        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot be created: {exc.strerror or exc}") from exc
        with FileLock(str(path.with_name(f".{path.name}{LOCK_SUFFIX}")), timeout=LOCK_TIMEOUT_S):
            _, current = self.get_versioned(key)
            if current != token:
                return False
            self.put(key, data, content_type=content_type)
            return True

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise StoreError(f"{path}: cannot be deleted: {exc.strerror or exc}") from exc
