"""The options of :class:`~blockio.data.dataset.BlockDataset`, as one frozen object.

>>> options = DatasetOptions(label_layer="truth", return_mask=True, mip=1)
>>> ds = BlockDataset("blockio-data", "demo", (64, 64, 16), samples_per_epoch=512, seed=0, options=options)

Keyword arguments given beside ``options`` replace its fields
(:func:`with_overrides`), so ``BlockDataset(..., sampler="grid")`` keeps working.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import Xyz, parse_xyz
from blockio.data.harmonize import parse_harmonize
from blockio.data.physical import parse_voxel_size
from blockio.data.samplers import SAMPLERS
from blockio.errors import InvalidRequest
from blockio.normalize import NORMALIZATIONS
from precomputed.options import with_overrides as _with_overrides

__all__ = ["BALANCES", "DATASET_BOUNDARIES", "DatasetOptions", "Transform", "non_negative_int", "with_overrides"]

# "clip" would give patches of varying shape, which cannot be batched
DATASET_BOUNDARIES = ("zero", "reflect", "error")
BALANCES = ("class",)
Transform = Callable[[npt.NDArray[np.float32], tuple[float, float, float]], Any]


@dataclass(frozen=True, kw_only=True)
class DatasetOptions:
    """What a :class:`~blockio.data.dataset.BlockDataset` reads and how it samples.

    Attributes
    ----------
    mip
        Pyramid level to read; must exist in every dataset. Not with
        ``voxel_size``, which picks the mip of each dataset.
    voxel_size
        ``None`` (default: patches are voxels of ``mip``), or a target
        (x, y, z) voxel size in nm: ``patch_size``, ``overlap`` and the
        items' ``offset`` are then in voxels of that size, every dataset is
        read at its nearest mip and resampled to it (images linearly with
        anti-aliasing, labels, masks and ``foreground`` layers by nearest
        neighbour; see :mod:`blockio.data.physical`), so every dataset gives
        patches of one shape and one physical size.
    sampler
        ``"random"`` (default): patches at uniform offsets where the patch
        fits (the volume's start on an axis where it does not). ``"grid"``:
        every box of ``Store.iter_blocks(id, patch_size, overlap, mip)`` of
        every dataset, in order, concatenated; ``samples_per_epoch``,
        ``weights`` and ``seed`` play no part.
    overlap
        (x, y, z) overlap of grid boxes, ``0 <= overlap < patch_size``.
    label_layer
        A layer of every dataset read as ``label`` (int64, no normalisation).
    normalize
        ``"percentile"`` (default), ``"zscore"``, ``"minmax"`` or ``None``
        (raw values as float32), from the catalog's statistics.
    harmonize
        How several datasets come to one intensity scale
        (:mod:`blockio.data.harmonize`): ``"percentile"`` (default) leaves it
        to ``normalize``, whose default maps each dataset's ``[p1, p99]``
        window onto ``[0, 1]``; ``"histogram:<id>"`` first matches each
        dataset's stored histogram to that of the catalogued dataset ``<id>``
        and then normalises with ``<id>``'s statistics.
    boundary
        ``"zero"`` (default), ``"reflect"`` or ``"error"`` for voxels
        outside the volume.
    transform
        ``transform(image, voxel_size) -> image``, e.g.
        :class:`blockio.data.transforms.Compose`: ``image`` is the float32
        ``[c, z, y, x]`` block after normalisation, ``voxel_size`` the mip's
        (x, y, z) in nm. It applies to the **image only**: ``label`` and
        ``mask`` are not transformed, so a transform that changes the shape
        leaves them misaligned. It must be picklable for ``spawn`` workers,
        and randomness inside it is outside the determinism guarantee.
    return_mask
        Add ``mask``: bool ``[z, y, x]``, True for voxels inside the volume.
    rank, world_size
        Shard for distributed training: the dataset exposes the items ``i``
        with ``i % world_size == rank`` only, so ranks see disjoint items and
        together all of them (as ``DistributedSampler`` without padding).
        Lengths differ by at most one between ranks; choose
        ``samples_per_epoch`` as a multiple of ``world_size`` so every rank
        runs the same number of steps.
    weights
        How the random sampler picks a dataset: ``"size"`` (default, in
        proportion to voxel count at ``mip``), ``"equal"``, or one
        non-negative number per dataset.
    foreground
        Random sampler only. ``None`` (accept every patch); a float
        threshold: accept a patch when at least
        :data:`~blockio.data.dataset.FOREGROUND_FRACTION` of its voxels (any
        channel, after normalisation, before ``transform``; voxels outside the
        volume count) are ``>=`` the threshold; or ``{"layer": name}``: accept
        a patch where that layer has a non-zero voxel. The dataset is drawn
        once per item, then the offset is redrawn from the same generator up
        to :data:`~blockio.data.dataset.FOREGROUND_TRIES` times; the last try
        is kept if none passes.
    balance
        Random sampler only. ``None`` (default) or ``"class"``: centre
        patches on label-layer voxels drawn with inverse class-frequency
        weights, so every class of ``label_layer`` is drawn about equally
        often (:mod:`blockio.data.centres`).
    class_map
        With ``balance="class"``: ``{segment id: class name}``; ids it does
        not name take the class of the layer's segment properties (id 0:
        ``"background"``).
    mask
        Random sampler only. A layer of every dataset; patches are centred
        where it is non-zero (at a coarse mip, :data:`~blockio.data.centres.INDEX_VOXELS`),
        and with ``balance`` only label voxels inside it count. A patch is
        moved back inside the volume where the centre is too close to the edge.

    Raises
    ------
    InvalidRequest
        For a value no dataset could take; what depends on the datasets
        (layers, bounds, one weight each) is checked by the dataset.
    """

    mip: int = 0
    sampler: str = "random"
    overlap: Sequence[int] = (0, 0, 0)
    label_layer: str | None = None
    normalize: str | None = "percentile"
    boundary: str = "zero"
    transform: Transform | None = None
    return_mask: bool = False
    rank: int = 0
    world_size: int = 1
    weights: str | Sequence[float] = "size"
    foreground: float | Mapping[str, str] | None = None
    voxel_size: Sequence[float] | None = None
    harmonize: str = "percentile"
    balance: str | None = None
    class_map: Mapping[int, str] | None = None
    mask: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", parse_xyz(self.overlap, "overlap"))
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", parse_voxel_size(self.voxel_size))
            if self.mip != 0:
                raise InvalidRequest(f"give mip or voxel_size, not both (voxel_size picks each dataset's mip), got mip={self.mip!r}")
        parse_harmonize(self.harmonize)
        self._check_centres()
        if self.sampler not in SAMPLERS:
            raise InvalidRequest(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or None, got {self.normalize!r}")
        if self.boundary not in DATASET_BOUNDARIES:
            raise InvalidRequest(f"boundary must be one of {', '.join(DATASET_BOUNDARIES)} (patches have a fixed size), got {self.boundary!r}")
        world_size = non_negative_int(self.world_size, "world_size")
        rank = non_negative_int(self.rank, "rank")
        if world_size < 1 or rank >= world_size:
            raise InvalidRequest(f"rank must be in [0, world_size) and world_size >= 1, got rank={self.rank!r}, world_size={self.world_size!r}")
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "world_size", world_size)
        object.__setattr__(self, "return_mask", bool(self.return_mask))
        if self.transform is not None and not callable(self.transform):
            raise InvalidRequest(f"transform must be callable (image, voxel_size) -> image, got {self.transform!r}")
        self.foreground_rule()  # a malformed rule fails here, not at the first item
        if self.foreground is not None and self.sampler != "random":
            raise InvalidRequest("foreground applies to sampler='random' only; the grid sampler visits every box")

    def _check_centres(self) -> None:
        if self.balance is not None and self.balance not in BALANCES:
            raise InvalidRequest(f"balance must be None or one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.balance is not None and self.label_layer is None:
            raise InvalidRequest("balance='class' needs a label_layer whose classes it balances")
        if self.mask is not None and not isinstance(self.mask, str):
            raise InvalidRequest(f"mask must be a layer name, got {self.mask!r}")
        if (self.balance is not None or self.mask is not None) and self.sampler != "random":
            raise InvalidRequest("balance and mask apply to sampler='random' only; the grid sampler visits every box")
        if self.class_map is not None:
            if not isinstance(self.class_map, Mapping) or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 0 for k in self.class_map):
                raise InvalidRequest(f"class_map must map segment ids (integers >= 0) to class names, got {self.class_map!r}")
            if self.balance is None:
                raise InvalidRequest("class_map applies with balance='class' only")
            object.__setattr__(self, "class_map", {int(k): str(v) for k, v in self.class_map.items()})

    @property
    def target_voxel_size(self) -> tuple[float, float, float] | None:
        """``voxel_size`` as parsed: (x, y, z) nm, or ``None``."""
        return self.voxel_size  # type: ignore[return-value]

    @property
    def overlap_xyz(self) -> Xyz:
        """``overlap`` as parsed: three integers (x, y, z)."""
        return self.overlap  # type: ignore[return-value]

    def foreground_rule(self) -> tuple[str | None, float | None]:
        """``(layer, threshold)`` of the ``foreground`` rule: at most one is set."""
        foreground = self.foreground
        if foreground is None:
            return None, None
        if isinstance(foreground, numbers.Real) and not isinstance(foreground, bool):
            if not math.isfinite(float(foreground)):
                raise InvalidRequest(f"foreground threshold must be finite, got {foreground!r}")
            return None, float(foreground)
        if isinstance(foreground, Mapping) and set(foreground) == {"layer"} and isinstance(foreground["layer"], str):
            return foreground["layer"], None
        raise InvalidRequest(f"foreground must be None, a number (threshold) or {{'layer': name}}, got {foreground!r}")


def with_overrides(options: DatasetOptions | None, overrides: Mapping[str, Any]) -> DatasetOptions:
    """``options`` (default: the defaults) with ``overrides`` replaced, as :func:`precomputed.options.with_overrides`."""
    return _with_overrides(DatasetOptions, options, overrides, caller="BlockDataset")


def non_negative_int(value: object, name: str) -> int:
    """``value`` as an int, or an :class:`~blockio.errors.InvalidRequest` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
