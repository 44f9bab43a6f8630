"""blockio: large 3-D microscopy volumes ready for machine learning and browser review.

``import blockio`` stays light: heavy readers and optional extras (torch,
redis, dask.distributed) are imported by the modules that need them.
"""

from __future__ import annotations

__all__ = ["__version__", "default_root"]

__version__ = "0.1.0"

import os

DEFAULT_ROOT = "./blockio-data"


def default_root() -> str:
    """The store root: ``$BLOCKIO_ROOT``, else ``./blockio-data``."""
    return os.environ.get("BLOCKIO_ROOT") or DEFAULT_ROOT
