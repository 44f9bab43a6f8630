"""blockio: large 3-D microscopy volumes ready for machine learning and browser review.

``import blockio`` stays light: the public names below load their modules on
first use (PEP 562), and optional extras (torch, redis, dask.distributed) are
imported only by the modules that need them.

>>> import blockio
>>> store = blockio.open_store("blockio-data")
>>> remote = blockio.connect("http://127.0.0.1:8000")
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BlockioError",
    "Busy",
    "ChunkError",
    "DatasetNotFound",
    "DatasetUnavailable",
    "InvalidRequest",
    "LayerNotFound",
    "MissingChunk",
    "OutOfBounds",
    "RemoteStore",
    "Store",
    "StoreNotFound",
    "VoxelBox",
    "__version__",
    "connect",
    "create_app",
    "default_root",
    "open_store",
]

__version__ = "0.1.0"

DEFAULT_ROOT = "./blockio-data"

_LAZY = {
    "BlockioError": "errors",
    "Busy": "errors",
    "ChunkError": "errors",
    "DatasetNotFound": "errors",
    "DatasetUnavailable": "errors",
    "InvalidRequest": "errors",
    "LayerNotFound": "errors",
    "MissingChunk": "errors",
    "OutOfBounds": "errors",
    "RemoteStore": "client",
    "Settings": "config",
    "StorageError": "errors",
    "Store": "store",
    "TooLarge": "errors",
    "StoreNotFound": "errors",
    "VoxelBox": "boxes",
    "connect": "client",
    "create_app": "serving",
    "open_store": "store",
}


def default_root() -> str:
    """The store root: ``$BLOCKIO_ROOT``, else ``./blockio-data`` (see :class:`blockio.config.Settings`)."""
    from blockio.config import Settings

    return Settings.from_env().root


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'blockio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
