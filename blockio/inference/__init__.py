"""Inference and evaluation: models run blockwise with a halo, stitched into
one segmentation layer, and compared with ground truth.

Names load on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["InferenceOptions", "evaluate", "load_model", "run_inference"]

_LAZY = {"InferenceOptions": "options", "evaluate": "evaluate", "load_model": "protocol", "run_inference": "run"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'blockio.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"blockio.inference.{module}"), name)
