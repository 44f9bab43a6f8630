"""One dataset of an HDF5 file, read with h5py.

Axes come from the dataset attribute ``axes`` (``"zyx"`` or a list of names),
``DIMENSION_LABELS`` (h5py dimension scales) or ilastik's ``axistags``. The
voxel size comes from ``element_size_um`` (z, y, x in µm: ilastik, Fiji) or
``resolution`` (z, y, x in nm unless ``unit``/``units`` says otherwise: CREMI);
a 2-D dataset's two values give x and y only.

h5py's own messages (``Unable to synchronously open file (file signature not
found)``) are translated into what went wrong with the user's file: not an
HDF5 file, empty, truncated, a group or a dangling link instead of a dataset,
a compression filter this installation lacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
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
from precomputed.units import axis_sizes_nm

__all__ = ["Hdf5Reader", "dataset_keys"]

logger = logging.getLogger(__name__)

#: Registered HDF5 filter ids of the plugins met in microscopy files (hdf5plugin ships them all).
_PLUGIN_FILTERS = {
    307: "bzip2",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "zstd",
    32017: "sz",
    32026: "blosc2",
}


def _load_plugins() -> None:
    """Register the hdf5plugin filters when that package is installed."""
    try:
        import hdf5plugin  # noqa: F401  # registers on import
    except ImportError:
        pass


def _open_error(path: str, exc: OSError) -> InvalidSource:
    """What an h5py open failure means for the user's file, in one line."""
    text = str(exc)
    if os.path.isdir(path):
        return InvalidSource(f"{path} is a folder, not an HDF5 file")
    size = os.path.getsize(path)
    if size == 0:
        return InvalidSource(f"{path} is empty (0 bytes), not an HDF5 file")
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if truncated:
        have, want = truncated.groups()
        return InvalidSource(
            f"{path} is a truncated HDF5 file: {have} of its {want} bytes are present "
            "(an incomplete copy or download?)"
        )
    if "signature not found" in text or not h5py.is_hdf5(path):
        return InvalidSource(
            f"{path} is not an HDF5 file (no HDF5 signature in its {size} bytes); "
            "pass --format if it is another format with an HDF5 name"
        )
    if "unable to lock file" in text.lower():
        return InvalidSource(
            f"{path} is locked by another program writing it; close it there "
            "(or set HDF5_USE_FILE_LOCKING=FALSE)"
        )
    return InvalidSource(f"cannot open HDF5 file {path}: {_reason(text)}")


def _reason(text: str) -> str:
    """The cause inside an HDF5 error text, without the C library's call details."""
    inner = re.search(r"\(([^()]*)\)", text)
    return inner.group(1) if inner else text.splitlines()[0]


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


def _link_error(f: h5py.File, key: str, keys: list[str]) -> InvalidSource | None:
    """Why ``key`` names no dataset, when it is a link that leads nowhere."""
    try:
        link = f.get(key, getlink=True)
    except (KeyError, ValueError, OSError):
        return None
    if isinstance(link, h5py.ExternalLink):
        return InvalidSource(
            f"{f.filename}: {key!r} is an external link to {link.filename}:{link.path}, which "
            "cannot be opened (is that file missing, or not beside this one?)"
        )
    if isinstance(link, h5py.SoftLink):
        return InvalidSource(
            f"{f.filename}: {key!r} is a soft link to {link.path}, which does not exist; "
            f"datasets: {', '.join(keys) or '(none)'}"
        )
    return None


def _dataset(f: h5py.File, key: str | None) -> h5py.Dataset:
    keys = dataset_keys(f)
    if key is None:
        if len(keys) != 1:
            raise InvalidSource(
                f"{f.filename} holds {len(keys)} datasets; choose one with a dataset "
                f"key: {', '.join(keys) or '(none)'}"
            )
        key = keys[0]
    try:
        node = f.get(key)
    except (KeyError, ValueError, OSError) as exc:
        raise InvalidSource(f"{f.filename}: cannot open {key!r}: {_reason(str(exc))}") from exc
    if isinstance(node, h5py.Group):
        inside = [k for k in dataset_keys(node)]
        prefix = node.name.strip("/")
        raise InvalidSource(
            f"{f.filename}: {key!r} is a group, not a dataset; datasets in it: "
            f"{', '.join(f'{prefix}/{k}' for k in inside) or '(none)'}"
        )
    if not isinstance(node, h5py.Dataset):
        raise _link_error(f, key, keys) or InvalidSource(
            f"{f.filename} has no dataset {key!r}; datasets: {', '.join(keys) or '(none)'}"
        )
    if node.shape is None:
        raise InvalidSource(f"{f.filename}: dataset {key!r} is empty (it has no dataspace)")
    if node.ndim < 2:
        raise InvalidSource(
            f"{f.filename}: dataset {key!r} of shape {node.shape} is {node.ndim}-D; an image "
            "needs at least y and x (a 2-D image or a volume)"
        )
    return node


def _check_filters(ds: h5py.Dataset, path: str) -> None:
    """Refuse, before any task runs, a dataset compressed with a filter h5py cannot load."""
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if h5py.h5z.filter_avail(code):
            continue
        label = _PLUGIN_FILTERS.get(code) or name.decode("ascii", "replace") or "unknown"
        raise InvalidSource(
            f"{path}: dataset {ds.name} is compressed with HDF5 filter {code} ({label}), which "
            "this installation cannot decode; install it with: pip install hdf5plugin"
        )


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


def _zyx(values: Any, axes: str) -> list[float | None] | None:
    """Spatial values in z, y, x order: three, two (y, x of a 2-D image) or one per file axis.

    z is ``None`` for a dataset without a z axis.
    """
    flat = [float(v) for v in np.ravel(values)]
    spatial = [a for a in axes if a in "zyx"]
    if len(flat) == 3 and len(spatial) == 3:
        return list(flat)
    if len(flat) == 2 and spatial in (["y", "x"], ["x", "y"]):
        return [None, *flat]  # stated y, x like the 3-D z, y, x
    if len(flat) == len(axes) and {"y", "x"} <= set(axes):
        return [flat[axes.index(a)] if a in axes else None for a in "zyx"]
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
            order = "z, y, x" if zyx[0] is not None else "y, x"
            stated = tuple(v for v in zyx if v is not None)
            detail = f"HDF5 attribute {name} ({order}) = {stated} {unit}"
            return Sourced(axis_sizes_nm(zyx[::-1], unit), "file", detail)
        except (InvalidOption, ValueError, TypeError) as exc:
            logger.debug("ignoring HDF5 attribute %s: %s", name, exc)
    return None


class Hdf5Reader(VolumeReader):
    """A volume stored as one dataset of an HDF5 file."""

    format = "hdf5"

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        _load_plugins()
        try:
            self._file = h5py.File(path, "r")
        except FileNotFoundError as exc:
            raise SourceNotFound(f"HDF5 file not found: {path}") from exc
        except OSError as exc:
            raise _open_error(path, exc) from exc
        try:
            self._ds = _dataset(self._file, spec.dataset_key)
            _check_filters(self._ds, path)
            file_axes, detail = _file_axes(self._ds)
            self._layout, self.axes = resolve_layout(
                self._ds.shape,
                user=spec.axes,
                file_axes=file_axes,
                file_detail=detail,
                timepoint=spec.timepoint,
            )
            self.voxel_size = _voxel_size(self._ds, self._layout.axes)
        except PrecomputedError:
            self._file.close()
            raise
        except OSError as exc:  # an attribute h5py cannot read
            self._file.close()
            raise InvalidSource(f"cannot read the metadata of {path}: {_reason(str(exc))}") from exc
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = self._ds.dtype.newbyteorder("=")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        try:
            block = self._ds[self._layout.index(start, stop)]
        except OSError as exc:
            text = str(exc)
            why = (
                "a chunk cannot be decoded (corrupt or truncated data)"
                if "filter returned failure" in text
                else _reason(text)
            )
            raise InvalidSource(
                f"cannot read dataset {self._ds.name} of {self.paths[0]} at box "
                f"{start}..{stop} (x, y, z): {why}"
            ) from exc
        return self._layout.to_czyx(block, dtype=self.dtype)

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()
