"""Data for machine learning: the PyTorch ``BlockDataset``, preprocessing
transforms and bad-section repair.

``BlockDataset`` needs torch and is loaded on first use, so importing this
package does not import torch.
"""

from __future__ import annotations

from typing import Any

from blockio.data.block_checks import TransformError
from blockio.data.options import DatasetOptions
from blockio.data.sections import BadSlices, find_bad_slices, interpolate_slices

__all__ = ["BadSlices", "BlockDataset", "DatasetOptions", "TransformError", "find_bad_slices", "interpolate_slices"]


def __getattr__(name: str) -> Any:
    if name == "BlockDataset":
        from blockio.data.dataset import BlockDataset

        return BlockDataset
    raise AttributeError(f"module 'blockio.data' has no attribute {name!r}")
