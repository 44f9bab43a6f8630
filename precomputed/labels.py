"""OME-Zarr labels (NGFF 0.5) beside the image: ``<id>.zarr/labels/<name>``.

The metadata is written with ome-zarr's helpers; each label image has the
image's levels and chunking plus ``image-label`` metadata, and the
``labels`` group lists the names. ``root`` (a bucket root's URL) makes
each path a key under that root (:mod:`precomputed.zarr_store`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

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


def create_labels(path: str, *, name: str, mips: list[Mip], dtype: np.dtype[Any], chunk_size: Xyz, root: str | None = None) -> None:
    """The label image: the image's levels and chunking, plus ``image-label`` metadata."""
    group = omezarr.create_image(path, name=name, mips=mips, channels=1, dtype=dtype, chunk_size=chunk_size, root=root)
    _ome(group, {"image-label": {"version": "0.5", "source": {"image": "../../"}}})


def label_properties(path: str, names: dict[int, str], ids: npt.NDArray[Any], *, root: str | None = None) -> None:
    """Class names of the ids present, as ``image-label`` properties."""
    present = set(int(i) for i in ids)
    props = [{"label-value": k, "class": v} for k, v in sorted(names.items()) if k in present]
    if props:
        _ome(omezarr.open_group(path, "r+", root=root), {"image-label": {"properties": props}})


def _has_group(path: Path | str, root: str | None) -> bool:
    if root is None:
        return (Path(path) / "zarr.json").exists()
    from .bucket import root_storage

    return root_storage(root).exists(f"{path}/zarr.json")


def ensure_labels_group(path: Path | str, *, root: str | None = None) -> list[str]:
    """Create ``<image>.zarr/labels`` if needed; returns the label names it lists."""
    if not _has_group(path, root):
        # on a bucket the label images may be inside already (written in place): "a" keeps them, "w" would not
        _ome(omezarr.open_group(str(path), "w" if root is None else "a", root=root), {"version": "0.5", "labels": []})
        return []
    ome = dict(cast(Mapping[str, Any], omezarr.open_group(str(path), "r", root=root).attrs.get("ome", {})))
    return list(ome.get("labels", []))


def set_labels(path: Path | str, names: list[str], *, root: str | None = None) -> None:
    _ome(omezarr.open_group(str(path), "r+", root=root), {"labels": names})
