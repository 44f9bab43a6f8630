"""One dataset of an HDF5 file, read with h5py.

Axes come from the dataset attribute ``axes`` (``"zyx"`` or a list of names),
``DIMENSION_LABELS`` (h5py dimension scales) or ilastik's ``axistags``. The
voxel size comes from ``element_size_um`` (z, y, x in µm: ilastik, Fiji) or
``resolution`` (z, y, x in nm unless ``unit``/``units`` says otherwise: CREMI).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from precomputed.errors import (
    InvalidOption,
    InvalidSource,
    PrecomputedError,
    SourceNotFound,
)
from precomputed.readers.axes import from_names, resolve_layout
from precomputed.readers.base import Sourced, SourceSpec, VolumeReader
from precomputed.units import voxel_size_nm

__all__ = ["Hdf5Reader", "dataset_keys"]

logger = logging.getLogger(__name__)


def _text(value: Any) -> Any:
    """Attribute values as str (h5py hands out bytes or numpy arrays of them)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_text(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def dataset_keys(group: h5py.Group) -> list[str]:
    """Paths of every dataset in an HDF5 file or group."""
    keys: list[str] = []
    group.visititems(
        lambda name, node: keys.append(name) if isinstance(node, h5py.Dataset) else None
    )
    return keys


def _dataset(f: h5py.File, key: str | None) -> h5py.Dataset:
    keys = dataset_keys(f)
    if key is None:
        if len(keys) != 1:
            raise InvalidSource(
                f"{f.filename} holds {len(keys)} datasets; choose one with a dataset "
                f"key: {', '.join(keys) or '(none)'}"
            )
        key = keys[0]
    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        raise InvalidSource(
            f"{f.filename} has no dataset {key!r}; datasets: {', '.join(keys) or '(none)'}"
        )
    return node


def _file_axes(ds: h5py.Dataset) -> tuple[str | None, str]:
    """Axes from the dataset's attributes, with the attribute's name."""
    for name in ("axes", "DIMENSION_LABELS"):
        if name in ds.attrs:
            value = _text(ds.attrs[name])
            return from_names(
                list(value) if isinstance(value, str) else value
            ), f"HDF5 attribute {name}={value!r}"
    if "axistags" in ds.attrs:
        try:
            keys = [a["key"] for a in json.loads(_text(ds.attrs["axistags"]))["axes"]]
        except (ValueError, KeyError, TypeError):
            return None, ""
        return from_names(keys), f"HDF5 attribute axistags ({''.join(keys)})"
    return None, ""


def _zyx(values: Any, axes: str) -> list[float] | None:
    """Three spatial values in z, y, x order: given as three, or one per file axis."""
    flat = [float(v) for v in np.ravel(values)]
    if len(flat) == 3:
        return flat
    if len(flat) == len(axes) and {"z", "y", "x"} <= set(axes):
        return [flat[axes.index(a)] for a in "zyx"]
    return None


def _voxel_size(ds: h5py.Dataset, axes: str) -> Sourced | None:
    for name, unit in (("element_size_um", "um"), ("resolution", "nm")):
        if name not in ds.attrs:
            continue
        if name == "resolution":
            unit = next((str(_text(ds.attrs[u])) for u in ("unit", "units") if u in ds.attrs), unit)
        try:
            zyx = _zyx(ds.attrs[name], axes)
            if zyx is None:
                raise InvalidOption(
                    f"{len(np.ravel(ds.attrs[name]))} values for a {len(axes)}-D dataset"
                )
            detail = f"HDF5 attribute {name} (z, y, x) = {tuple(zyx)} {unit}"
            return Sourced(voxel_size_nm(zyx[::-1], unit), "file", detail)
        except (InvalidOption, ValueError, TypeError) as exc:
            logger.debug("ignoring HDF5 attribute %s: %s", name, exc)
    return None


class Hdf5Reader(VolumeReader):
    """A volume stored as one dataset of an HDF5 file."""

    format = "hdf5"

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        try:
            self._file = h5py.File(path, "r")
        except FileNotFoundError as exc:
            raise SourceNotFound(f"HDF5 file not found: {path}") from exc
        except OSError as exc:
            raise InvalidSource(f"cannot open HDF5 file {path}: {exc}") from exc
        try:
            self._ds = _dataset(self._file, spec.dataset_key)
            file_axes, detail = _file_axes(self._ds)
            self._layout, self.axes = resolve_layout(
                self._ds.shape, user=spec.axes, file_axes=file_axes, file_detail=detail
            )
            self.voxel_size = _voxel_size(self._ds, self._layout.axes)
        except PrecomputedError:
            self._file.close()
            raise
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = self._ds.dtype.newbyteorder("=")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        try:
            block = self._ds[self._layout.index(start, stop)]
        except OSError as exc:
            raise InvalidSource(f"cannot read {self._ds.name} of {self.paths[0]}: {exc}") from exc
        return self._layout.to_czyx(block, dtype=self.dtype)

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()
