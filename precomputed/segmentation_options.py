"""The options of :func:`precomputed.segmentation.write_segmentation`, as one frozen object.

>>> options = SegmentationOptions(meshes=False, class_names={1: "nucleus"})
>>> write_segmentation(root, "demo", "pred", labels, options=options, overwrite=True)

Keyword arguments given beside ``options`` replace its fields
(:func:`with_overrides`), so ``write_segmentation(..., meshes=False)`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOption
from .options import with_overrides as _with_overrides

__all__ = ["SegmentationOptions", "with_overrides"]

Xyz = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class SegmentationOptions:
    """How :func:`~precomputed.segmentation.write_segmentation` writes a layer.

    Attributes
    ----------
    offset
        (x, y, z) voxels where a whole ``[z, y, x]`` array starts; the rest is background.
    mip
        Only 0: the pyramid is built from mip 0.
    provenance
        Where the labels come from (model, checkpoint, command, ...); stored in the record.
    dtype
        ``uint32`` or ``uint64`` segment ids.
    class_names
        ``{id: name}`` labels of the segment properties; other ids read ``segment N``.
    meshes
        Mesh every segment (legacy precomputed meshes).
    overwrite
        Replace a layer of that name.
    workers, scheduler, progress
        As in :func:`precomputed.execution.run_tasks`.
    shard
        Store every scale of the precomputed layer as shards (far fewer files;
        see :mod:`precomputed.sharding`). Block writes (PUT) need an unsharded layer.
    """

    offset: Xyz = (0, 0, 0)
    mip: int = 0
    provenance: Mapping[str, Any] | None = None
    dtype: str = "uint32"
    class_names: Mapping[int, str] | None = None
    meshes: bool = True
    overwrite: bool = False
    workers: int | None = None
    scheduler: str | None = None
    progress: bool | None = None
    shard: bool = False

    def __post_init__(self) -> None:
        if self.mip != 0:
            raise InvalidOption(f"segmentation layers are written at mip 0 (the pyramid is built from it); got mip={self.mip}")
        if self.provenance is not None and not isinstance(self.provenance, Mapping):
            raise InvalidOption(f"provenance must be a dict, got {type(self.provenance).__name__}")


def with_overrides(options: SegmentationOptions | None, overrides: Mapping[str, Any]) -> SegmentationOptions:
    """``options`` (default: the defaults) with ``overrides`` replaced, as :func:`precomputed.options.with_overrides`."""
    return _with_overrides(SegmentationOptions, options, overrides, caller="write_segmentation")
