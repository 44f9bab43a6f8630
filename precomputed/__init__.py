"""Everything that writes stores: raw-format readers, the OME-Zarr and
precomputed writers, pyramids, statistics and the catalog.

Nothing here imports ``blockio`` or ``viewer``.
"""

from __future__ import annotations

from .catalog import Catalog
from .errors import (
    CatalogError,
    DatasetExists,
    DatasetNotFound,
    InvalidAxes,
    InvalidDatasetId,
    InvalidOption,
    InvalidSource,
    PrecomputedError,
    RootNotWritable,
    SourceNotFound,
    StoreError,
    UnsupportedFormat,
)
from .ingest import IngestOptions, ingest
from .pyramid import Mip, downsample_average, downsample_mode, plan_pyramid
from .segmentation import SegmentationWriter, write_segmentation

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
    "Mip",
    "PrecomputedError",
    "RootNotWritable",
    "SegmentationWriter",
    "SourceNotFound",
    "StoreError",
    "UnsupportedFormat",
    "downsample_average",
    "downsample_mode",
    "ingest",
    "plan_pyramid",
    "write_segmentation",
]
