"""Store roots that must already exist: a mistyped root is an error, not an empty store.

Readers (``open_store``, ``blockio catalog``, ``blockio serve``) call
:func:`require_store`; writers (``blockio ingest``, ``blockio demo``) create
a new root instead. Only the standard library is imported for a local root,
so the check costs nothing on the command line; a bucket root (``s3://``,
``gs://``) is checked with one request for its ``catalog.json`` through
:mod:`precomputed.storage`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from blockio.errors import StoreNotFound

__all__ = ["CATALOG_NAME", "local_folder", "require_store"]

CATALOG_NAME = "catalog.json"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


def local_folder(root: str | os.PathLike[str]) -> Path | None:
    """The absolute local folder of a root (``file://`` accepted); ``None`` for a bucket URL.

    Parameters
    ----------
    root
        A folder, ``file://`` URL, or a bucket URL such as ``s3://`` or ``gs://``.
    """
    text = os.fspath(root)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif _URL.match(text):
        return None
    return Path(text).expanduser().absolute()


def require_store(root: str | os.PathLike[str]) -> Path | None:
    """Check that a root holds a catalog; returns its folder (``None`` for a bucket URL).

    Parameters
    ----------
    root
        The store root as the user gave it.

    Raises
    ------
    StoreNotFound
        The folder does not exist, or the folder or bucket prefix holds no ``catalog.json``.
    StorageError
        The bucket cannot be asked (permissions, network, no such bucket).
    """
    folder = local_folder(root)
    if folder is None:
        _require_bucket_store(os.fspath(root))
        return None
    if (folder / CATALOG_NAME).is_file():
        return folder
    why = "" if folder.is_dir() else " (the folder does not exist)"
    raise StoreNotFound(f"no blockio store at {folder}: no {CATALOG_NAME}{why}; create one with blockio ingest or blockio demo")


def _require_bucket_store(url: str) -> None:
    from blockio.errors import from_precomputed
    from precomputed.errors import PrecomputedError
    from precomputed.storage import is_remote, open_root

    if not is_remote(url):
        return  # another scheme: open_store names what it accepts
    try:
        found = open_root(url).exists(CATALOG_NAME)
    except PrecomputedError as exc:
        raise from_precomputed(exc) from exc
    if not found:
        raise StoreNotFound(f"no blockio store at {url}: no {CATALOG_NAME}; ingest into it or copy a root there")
