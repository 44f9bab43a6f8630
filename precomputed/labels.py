"""OME-Zarr labels (NGFF 0.5) beside the image: ``<id>.zarr/labels/<name>``.

The metadata is written with ome-zarr's helpers; each label image has the
image's levels and chunking plus ``image-label`` metadata, and the
``labels`` group lists the names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import omezarr
from .pyramid import Mip

__all__ = ["create_labels", "ensure_labels_group", "label_properties", "set_labels"]

Xyz = tuple[int, int, int]


def _ome(group: Any, metadata: dict[str, Any]) -> None:
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import add_metadata

    add_metadata(group, metadata, fmt=FormatV05())


def create_labels(path: str, *, name: str, mips: list[Mip], dtype: np.dtype[Any], chunk_size: Xyz) -> None:
    """The label image: the image's levels and chunking, plus ``image-label`` metadata."""
    group = omezarr.create_image(path, name=name, mips=mips, channels=1, dtype=dtype, chunk_size=chunk_size)
    _ome(group, {"image-label": {"version": "0.5", "source": {"image": "../../"}}})


def label_properties(path: str, names: dict[int, str], ids: npt.NDArray[Any]) -> None:
    """Class names of the ids present, as ``image-label`` properties."""
    import zarr

    present = set(int(i) for i in ids)
    props = [{"label-value": k, "class": v} for k, v in sorted(names.items()) if k in present]
    if props:
        _ome(zarr.open_group(path, mode="r+", zarr_format=3), {"image-label": {"properties": props}})


def ensure_labels_group(path: Path) -> list[str]:
    """Create ``<image>.zarr/labels`` if needed; returns the label names it lists."""
    import zarr

    if not (path / "zarr.json").exists():
        _ome(zarr.open_group(str(path), mode="w", zarr_format=3), {"version": "0.5", "labels": []})
        return []
    ome = dict(zarr.open_group(str(path), mode="r", zarr_format=3).attrs.get("ome", {}))  # type: ignore[arg-type]
    return list(ome.get("labels", []))  # type: ignore[arg-type]


def set_labels(path: Path, names: list[str]) -> None:
    import zarr

    _ome(zarr.open_group(str(path), mode="r+", zarr_format=3), {"labels": names})
