"""The options of :func:`blockio.inference.run_inference`, as one frozen object.

>>> options = InferenceOptions(block=(64, 64, 32), overlap=(16, 16, 8), meshes=False)
>>> run_inference(root, "demo", "blockio.inference.models:membrane_watershed", "pred", options=options, workers=4)

Keyword arguments given beside ``options`` replace its fields
(:func:`with_overrides`), so ``run_inference(..., block=(64, 64, 32))`` keeps working.
Values are checked when the object is made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blockio.boxes import parse_xyz
from blockio.errors import InvalidRequest
from blockio.normalize import NORMALIZATIONS
from precomputed.options import with_overrides as _with_overrides

__all__ = ["InferenceOptions", "with_overrides"]

Xyz = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class InferenceOptions:
    """How :func:`~blockio.inference.run.run_inference` runs a model.

    Attributes
    ----------
    block
        (x, y, z) core of a task (a sequence or ``"x,y,z"``), rounded up to the
        output chunk size by the run.
    overlap
        (x, y, z) halo added on each side of the core, ``0 <= overlap < block``;
        at least the model's receptive radius for results independent of the block size.
    mip
        Input mip; only 0 is supported.
    normalize
        ``"percentile"`` (default), ``"zscore"``, ``"minmax"`` or ``None``.
    threshold
        Foreground threshold of a single-channel score map.
    blend
        Average overlapping windows with cosine ramps instead of cropping the core.
    meshes
        Mesh the segments when the layer is finalised.
    overwrite
        Replace a layer of the same name.
    scheduler, workers, progress
        As for :func:`precomputed.execution.run_tasks`.
    command
        The command line recorded in the provenance (default ``sys.argv``).

    Raises
    ------
    InvalidRequest
        Any value out of range, when the object is made.
    """

    block: Xyz = (128, 128, 128)
    overlap: Xyz = (16, 16, 16)
    mip: int = 0
    normalize: str | None = "percentile"
    threshold: float = 0.5
    blend: bool = False
    meshes: bool = True
    overwrite: bool = False
    scheduler: str | None = None
    workers: int | None = None
    progress: bool | None = None
    command: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # frozen: the normalised values go in through object.__setattr__, once
        core = parse_xyz(self.block, "block", positive=True)
        halo = parse_xyz(self.overlap, "overlap")
        if any(h < 0 or h >= b for h, b in zip(halo, core)):
            raise InvalidRequest(f"overlap must be >= 0 and smaller than the block on every axis, got {list(halo)} for block {list(core)}")
        if self.mip != 0:
            raise InvalidRequest(f"inference reads mip 0 only for now (the prediction layer is written at mip 0), got mip={self.mip}")
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or None, got {self.normalize!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise InvalidRequest(f"threshold must be a finite number, got {self.threshold!r}")
        object.__setattr__(self, "block", tuple(core))
        object.__setattr__(self, "overlap", tuple(halo))
        object.__setattr__(self, "threshold", float(self.threshold))
        for name in ("blend", "meshes", "overwrite"):
            object.__setattr__(self, name, bool(getattr(self, name)))


def with_overrides(options: InferenceOptions | None, overrides: Mapping[str, Any]) -> InferenceOptions:
    """``options`` (default: the defaults) with ``overrides`` replaced, as :func:`precomputed.options.with_overrides`."""
    return _with_overrides(InferenceOptions, options, overrides, caller="run_inference")
