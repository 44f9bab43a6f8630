"""An existing Zarr array (v2 or v3) or OME-Zarr image (NGFF 0.4 / 0.5).

For an OME-Zarr image group the first (highest-resolution) multiscale dataset
is read; its axes come from ``multiscales[0].axes`` and its voxel size from
the dataset's ``coordinateTransformations`` scale (times any multiscale-level
scale) in the axes' units. A plain array takes its axes from Zarr v3
``dimension_names`` or the v2 ``_ARRAY_DIMENSIONS`` attribute (xarray).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from precomputed.errors import InvalidOption, InvalidSource, SourceNotFound
from precomputed.readers.axes import from_names, resolve_layout
from precomputed.readers.base import Sourced, SourceSpec, VolumeReader
from precomputed.units import voxel_size_nm

__all__ = ["ZarrReader"]

logger = logging.getLogger(__name__)


def _ome_attrs(group: zarr.Group) -> dict[str, Any]:
    """NGFF attributes: 0.5 nests them under ``ome``, 0.4 has them at the top."""
    attrs: dict[str, Any] = dict(group.attrs)
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def _multiscales(group: zarr.Group) -> tuple[zarr.Group, dict[str, Any] | None]:
    """The group holding an image and its first multiscale (``None`` if not an image)."""
    attrs = _ome_attrs(group)
    if attrs.get("multiscales"):
        return group, attrs["multiscales"][0]
    child = group.get("0") if "bioformats2raw.layout" in attrs else None
    if isinstance(child, zarr.Group):
        return _multiscales(child)
    return group, None


def _scale(transforms: Sequence[Mapping[str, Any]] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or ():
        if t.get("type") == "scale":
            scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


def _ome_axes(multiscale: Mapping[str, Any]) -> tuple[str | None, list[str | None]]:
    """Axes letters and per-axis units from NGFF ``axes`` (dicts, or names in 0.3)."""
    names, units = [], []
    for axis in multiscale.get("axes", []):
        axis = axis if isinstance(axis, Mapping) else {"name": axis}
        kind = axis.get("type")
        names.append("c" if kind == "channel" else "t" if kind == "time" else axis.get("name", "?"))
        units.append(axis.get("unit"))
    return (from_names(names) if names else None), units


def _ome_voxel(
    multiscale: Mapping[str, Any], index: int, axes: str | None, units: list[str | None]
) -> Sourced | None:
    if axes is None or not {"x", "y", "z"} <= set(axes):
        return None
    dataset = multiscale["datasets"][index]
    scale = _scale(dataset.get("coordinateTransformations"), len(axes))
    scale = [
        a * b for a, b in zip(scale, _scale(multiscale.get("coordinateTransformations"), len(axes)))
    ]
    xyz = [scale[axes.index(a)] for a in "xyz"]
    xyz_units = [units[axes.index(a)] for a in "xyz"]
    if None in xyz_units:
        logger.debug("OME-Zarr scale %s has no unit on every spatial axis; voxel size unknown", xyz)
        return None
    detail = (
        f"OME-Zarr dataset {dataset['path']!r} scale (x, y, z) = {tuple(xyz)} {'/'.join(xyz_units)}"  # type: ignore[arg-type]
    )
    try:
        return Sourced(voxel_size_nm(xyz, xyz_units), "file", detail)  # type: ignore[arg-type]
    except InvalidOption as exc:
        logger.debug("ignoring OME-Zarr voxel size: %s", exc)
        return None


def _array(group: zarr.Group, key: str, path: str, keys: Sequence[str] = ()) -> zarr.Array:
    node = group.get(key)
    if not isinstance(node, zarr.Array):
        raise InvalidSource(
            f"{path} has no Zarr array {key!r}; arrays: {', '.join(keys) or '(none)'}"
        )
    return node


def _open(path: str, key: str | None) -> tuple[zarr.Array, str, str | None, str, Sourced | None]:
    """Array, format, file axes, axes detail and voxel size for a path and key."""
    try:
        node = zarr.open(store=path, mode="r")
    except FileNotFoundError as exc:
        raise SourceNotFound(f"no Zarr array or group at {path}") from exc
    except (ValueError, KeyError, OSError) as exc:
        raise InvalidSource(f"cannot open Zarr store {path}: {exc}") from exc
    if isinstance(node, zarr.Array):
        node_key, array = "", node
    else:
        group, multiscale = _multiscales(node)
        paths = [d["path"] for d in multiscale["datasets"]] if multiscale else []
        if multiscale and (key is None or key in paths):
            index = paths.index(key) if key else 0
            axes, units = _ome_axes(multiscale)
            version = multiscale.get("version") or _ome_attrs(group).get("version", "?")
            voxel = _ome_voxel(multiscale, index, axes, units)
            array = _array(group, paths[index], path)
            return array, "ome-zarr", axes, f"OME-Zarr {version} multiscales[0].axes", voxel
        arrays = [k for k, _ in node.arrays()]
        if key is None and len(arrays) == 1:
            key = arrays[0]
        if key is None:
            raise InvalidSource(
                f"{path} is a Zarr group; choose an array with a dataset key: "
                f"{', '.join(arrays) or '(none)'}"
            )
        node_key, array = key, _array(node, key, path, arrays)
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return array, "zarr", None, "", None
    detail = f"Zarr dimension names {list(names)} of {node_key or 'the array'}"
    return array, "zarr", from_names(names), detail, None


class ZarrReader(VolumeReader):
    """A volume stored as a Zarr array or an OME-Zarr image."""

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        self._array, self.format, file_axes, detail, self.voxel_size = _open(path, spec.dataset_key)
        self._layout, self.axes = resolve_layout(
            self._array.shape, user=spec.axes, file_axes=file_axes, file_detail=detail
        )
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = np.dtype(self._array.dtype).newbyteorder("=")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        try:
            block = self._array[self._layout.index(start, stop)]
        except (OSError, ValueError, RuntimeError) as exc:
            raise InvalidSource(f"cannot read {self.paths[0]} box {start}..{stop}: {exc}") from exc
        return self._layout.to_czyx(np.asarray(block), dtype=self.dtype)
