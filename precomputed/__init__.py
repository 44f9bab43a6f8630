"""Everything that writes stores: raw-format readers, the OME-Zarr and
precomputed writers, pyramids, statistics and the catalog.

Nothing here imports ``blockio`` or ``viewer``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .errors import (
    CatalogError,
    DatasetExists,
    DatasetNotFound,
    InvalidAxes,
    InvalidDatasetId,
    InvalidOption,
    InvalidSource,
    LayerNotFound,
    PrecomputedError,
    RootNotWritable,
    SourceNotFound,
    StoreError,
    UnsupportedFormat,
    WriteFailed,
)

# The writers load on first use (PEP 562), so reading the catalog or building
# a command's --help does not import numpy, CloudVolume, zarr and dask.
_LAZY = {
    "Catalog": "catalog",
    "IngestOptions": "ingest",
    "Mip": "pyramid",
    "SegmentationOptions": "segmentation_options",
    "SegmentationWriter": "segmentation",
    "downsample_average": "pyramid",
    "downsample_mode": "pyramid",
    "ingest": "ingest",
    "layer_version": "catalog",
    "plan_pyramid": "pyramid",
    "write_segmentation": "segmentation",
}

__all__ = [
    "Catalog",
    "CatalogError",
    "DatasetExists",
    "DatasetNotFound",
    "IngestOptions",
    "InvalidAxes",
    "InvalidDatasetId",
    "InvalidOption",
    "InvalidSource",
    "LayerNotFound",
    "Mip",
    "PrecomputedError",
    "RootNotWritable",
    "SegmentationOptions",
    "SegmentationWriter",
    "SourceNotFound",
    "StoreError",
    "UnsupportedFormat",
    "WriteFailed",
    "downsample_average",
    "downsample_mode",
    "ingest",
    "layer_version",
    "plan_pyramid",
    "write_segmentation",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'precomputed' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``precomputed.ingest`` stays the function when the submodule of that name loads.

    The import system sets a loaded submodule as an attribute of its package;
    eagerly, ``from .ingest import ingest`` then overwrote it with the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
