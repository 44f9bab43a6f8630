"""An existing Zarr array (v2 or v3) or OME-Zarr image (NGFF 0.4 / 0.5).

For an OME-Zarr image group the first (highest-resolution) multiscale dataset
is read; its axes come from ``multiscales[0].axes`` and its voxel size from
the dataset's ``coordinateTransformations`` scale (times any multiscale-level
scale) in the axes' units; a 2-D image (axes ``yx``) gives x and y only. A
non-zero level-0 ``translation`` (the image's origin) is refused: the stores
place every volume at the origin, so ingesting it would drop the origin
silently; ``--drop-origin`` ingests it anyway and records what was dropped.
A plain array takes its axes from Zarr v3 ``dimension_names`` or the v2
``_ARRAY_DIMENSIONS`` attribute (xarray).
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
from precomputed.units import axis_sizes_nm

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


def _translation(transforms: Sequence[Mapping[str, Any]] | None, ndim: int) -> list[float]:
    shift = [0.0] * ndim
    for t in transforms or ():
        if t.get("type") == "translation" and "translation" in t:
            shift = [a + float(b) for a, b in zip(shift, t["translation"])]
    return shift


def _origin(
    multiscale: Mapping[str, Any], axes: str | None, units: list[str | None], path: str, drop: bool
) -> Sourced | None:
    """The level-0 translation: ``None`` when zero, recorded with ``drop``, else refused."""
    ndim = len(multiscale.get("axes", [])) or len(axes or "")
    dataset = multiscale["datasets"][0]
    shift = _translation(dataset.get("coordinateTransformations"), ndim)
    outer = multiscale.get("coordinateTransformations")
    # a multiscale-level translation applies after the dataset's scale; both move the origin
    shift = [a + b * s for a, b, s in zip(_translation(outer, ndim), shift, _scale(outer, ndim))]
    if not any(shift):
        return None
    names = list(axes) if axes is not None and len(axes) == ndim else [f"axis {i}" for i in range(ndim)]
    said = ", ".join(
        f"{n}={v:g}{' ' + u if u else ''}" for n, v, u in zip(names, shift, units or [None] * ndim)
    )
    text = f"OME-Zarr dataset {dataset['path']!r} translation ({said})"
    if not drop:
        raise InvalidSource(
            f"{path}: {text}: the image does not start at the origin, and the stores place every "
            "volume at the origin; pass --drop-origin to ingest it there anyway (recorded)"
        )
    return Sourced(dict(zip(names, shift)), "user", f"--drop-origin: {text} ignored")


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
    if axes is None or not {"x", "y"} <= set(axes):
        return None
    dataset = multiscale["datasets"][index]
    scale = _scale(dataset.get("coordinateTransformations"), len(axes))
    scale = [
        a * b for a, b in zip(scale, _scale(multiscale.get("coordinateTransformations"), len(axes)))
    ]
    stated = [a for a in "xyz" if a in axes]  # no z: a 2-D image states x and y only
    xyz = [scale[axes.index(a)] if a in axes else None for a in "xyz"]
    xyz_units = [units[axes.index(a)] if a in axes else None for a in "xyz"]
    if any(xyz_units["xyz".index(a)] is None for a in stated):
        logger.debug("OME-Zarr scale %s has no unit on every spatial axis; voxel size unknown", xyz)
        return None
    values = tuple(v for v in xyz if v is not None)
    detail = (
        f"OME-Zarr dataset {dataset['path']!r} scale ({', '.join(stated)}) = {values} "
        f"{'/'.join(u for u in xyz_units if u is not None)}"
    )
    try:
        return Sourced(axis_sizes_nm(xyz, xyz_units), "file", detail)
    except InvalidOption as exc:
        logger.debug("ignoring OME-Zarr voxel size: %s", exc)
        return None


def _array(group: zarr.Group, key: str, path: str, keys: Sequence[str] = ()) -> zarr.Array[Any]:
    node = group.get(key)
    if not isinstance(node, zarr.Array):
        raise InvalidSource(
            f"{path} has no Zarr array {key!r}; arrays: {', '.join(keys) or '(none)'}"
        )
    return node


def _open(
    path: str, key: str | None, drop_origin: bool = False
) -> tuple[zarr.Array[Any], str, str | None, str, Sourced | None, Sourced | None]:
    """Array, format, file axes, axes detail, voxel size and dropped origin for a path and key."""
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
            origin = _origin(multiscale, axes, units, path, drop_origin)
            array = _array(group, paths[index], path)
            return array, "ome-zarr", axes, f"OME-Zarr {version} multiscales[0].axes", voxel, origin
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
        return array, "zarr", None, "", None, None
    detail = f"Zarr dimension names {list(names)} of {node_key or 'the array'}"
    return array, "zarr", from_names(names), detail, None, None


class ZarrReader(VolumeReader):
    """A volume stored as a Zarr array or an OME-Zarr image."""

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        self._array, self.format, file_axes, detail, self.voxel_size, self.origin = _open(
            path, spec.dataset_key, spec.drop_origin
        )
        self._layout, self.axes = resolve_layout(
            self._array.shape,
            user=spec.axes,
            file_axes=file_axes,
            file_detail=detail,
            timepoint=spec.timepoint,
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
