"""Readers for raw volume formats: detect a source's format and open it.

>>> spec = make_spec("stack/")               # doctest: +SKIP
>>> with open_reader(spec) as reader:        # doctest: +SKIP
...     block = reader.read((0, 0, 0), (64, 64, 16))   # [c, z, y, x]

Formats: ``tiff-stack`` (a folder, glob or list of 2-D TIFF slices), ``tiff``
(one multi-page TIFF / OME-TIFF / ImageJ hyperstack), ``hdf5``, ``npy`` and
``zarr`` (a Zarr array or an OME-Zarr image).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from precomputed.errors import (
    InvalidOption,
    InvalidSource,
    SourceNotFound,
    UnsupportedFormat,
)
from precomputed.readers.axes import parse_axes
from precomputed.readers.base import Sourced, SourceSpec, VolumeReader
from precomputed.readers.cast import CAST_TARGETS, CastReader, check_cast
from precomputed.readers.hdf5 import Hdf5Reader
from precomputed.readers.npy import NpyReader
from precomputed.readers.tiff import TiffReader
from precomputed.readers.tiffstack import TIFF_SUFFIXES, TiffStackReader, expand_stack
from precomputed.readers.zarr import ZarrReader

__all__ = [
    "CAST_TARGETS",
    "FORMATS",
    "CastReader",
    "Hdf5Reader",
    "NpyReader",
    "SourceSpec",
    "Sourced",
    "TiffReader",
    "TiffStackReader",
    "VolumeReader",
    "ZarrReader",
    "make_spec",
    "open_reader",
]

_READERS: dict[str, Callable[[SourceSpec], VolumeReader]] = {
    "hdf5": Hdf5Reader,
    "npy": NpyReader,
    "tiff": TiffReader,
    "tiff-stack": TiffStackReader,
    "zarr": ZarrReader,
}
#: Format names accepted by :func:`make_spec` and :func:`open_reader`.
FORMATS = tuple(sorted(_READERS))
_ALIASES = {"ome-tiff": "tiff", "imagej-tiff": "tiff", "ome-zarr": "zarr", "h5": "hdf5"}
_SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".npy": "npy"}
_SUFFIXES.update({s: "tiff" for s in TIFF_SUFFIXES})
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")
_SUPPORTED = (
    "a folder, glob or list of .tif/.tiff slices; a .tif/.tiff/.ome.tif file; "
    ".h5/.hdf5/.hdf; .npy; a Zarr / OME-Zarr folder"
)


def _detect(path: str) -> str:
    if not os.path.exists(path):
        raise SourceNotFound(f"no such file or folder: {path}")
    if os.path.isdir(path):
        if any(os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS):
            return "zarr"
        if any(
            n.lower().endswith(TIFF_SUFFIXES) and not n.startswith(".") for n in os.listdir(path)
        ):
            return "tiff-stack"
        raise UnsupportedFormat(
            f"{path}: folder holds no TIFF slices and is not a Zarr store; supported: {_SUPPORTED}"
        )
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise UnsupportedFormat(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; supported: {_SUPPORTED}"
        )
    return _SUFFIXES[suffix]


def _index(value: int | None, flag: str) -> int | None:
    """A ``--series`` / ``--timepoint`` value: ``None`` or a non-negative integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOption(f"{flag} must be a non-negative integer, got {value!r}")
    return value


def make_spec(
    source: str | Sequence[str],
    *,
    axes: str | None = None,
    dataset_key: str | None = None,
    format: str | None = None,
    series: int | None = None,
    timepoint: int | None = None,
    cast: str | None = None,
    drop_origin: bool = False,
) -> SourceSpec:
    """Describe a raw source: its files, format and the user's options.

    Parameters
    ----------
    source : str or sequence of str
        A file, a folder (TIFF slices or a Zarr store), a glob pattern of TIFF
        slices, or a list of TIFF slice files.
    axes : str, optional
        The user's ``--axes`` (file order, e.g. ``zyx``, ``czyx``); checked here.
    dataset_key : str, optional
        HDF5 dataset or Zarr array path inside the file or group.
    format : str, optional
        One of :data:`FORMATS` to skip detection.
    series : int, optional
        The image series of a multi-series TIFF / OME-TIFF (``--series``).
    timepoint : int, optional
        The timepoint of a source with a time axis (``--timepoint``).
    cast : str, optional
        A dtype of :data:`CAST_TARGETS` to convert the data to (``--cast``).
    drop_origin : bool
        Ingest an OME-Zarr image whose level 0 has a non-zero translation,
        ignoring the translation (``--drop-origin``).

    Returns
    -------
    SourceSpec
        Absolute paths (the sorted slice files for a stack) and the format.

    Raises
    ------
    SourceNotFound
        The path does not exist, or a glob matches nothing.
    UnsupportedFormat
        No reader recognises the path.
    InvalidOption
        An unknown ``format`` or ``cast`` dtype; a negative ``series`` or
        ``timepoint``; ``series`` for a source other than one TIFF file, or
        ``drop_origin`` for a source other than Zarr.
    InvalidAxes
        A malformed ``axes`` string.
    """
    if axes is not None:
        axes = parse_axes(axes)
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise SourceNotFound("no source files given")
    if format is not None:
        fmt = _ALIASES.get(format.lower(), format.lower())
        if fmt not in _READERS:
            raise InvalidOption(f"unknown format {format!r}; accepted: {', '.join(FORMATS)}")
    elif len(paths) == 1 and not os.path.exists(paths[0]) and any(c in paths[0] for c in "*?["):
        fmt = "tiff-stack"
    elif len(paths) == 1:
        fmt = _detect(paths[0])
    else:
        kinds = {_detect(p) for p in paths}
        if kinds != {"tiff"}:
            raise UnsupportedFormat(
                f"a list of sources must be TIFF slices; got {', '.join(paths[:3])}..."
            )
        fmt = "tiff-stack"
    series, timepoint = _index(series, "--series"), _index(timepoint, "--timepoint")
    if cast is not None:
        cast = check_cast(cast)
    if series is not None and fmt != "tiff":
        raise InvalidOption(f"--series picks an image series of one TIFF / OME-TIFF file; this source is {fmt}")
    if drop_origin and fmt != "zarr":
        raise InvalidOption(f"--drop-origin applies to OME-Zarr images; this source is {fmt}")
    if fmt == "tiff-stack":
        paths = expand_stack(paths)
    return SourceSpec(
        tuple(os.path.abspath(p) for p in paths),
        fmt,
        axes,
        dataset_key,
        series=series,
        timepoint=timepoint,
        cast=cast,
        drop_origin=bool(drop_origin),
    )


def open_reader(spec: SourceSpec) -> VolumeReader:
    """Open the reader for a spec made by :func:`make_spec`.

    Raises
    ------
    InvalidSource
        The source cannot be ingested (e.g. a complex or structured dtype, a
        boolean one without ``spec.cast``, mixed slices, corrupt file);
        :class:`UnsupportedFormat` for an unknown ``spec.format``.
    """
    if spec.format not in _READERS:
        raise UnsupportedFormat(
            f"no reader for format {spec.format!r}; formats: {', '.join(FORMATS)}"
        )
    reader = _READERS[spec.format](spec)
    dtype = reader.dtype
    if dtype.kind == "b" and spec.cast is None:
        reader.close()
        raise InvalidSource(
            f"{spec.paths[0]}: unsupported dtype bool; pass --cast uint8 to store it as 0/1"
        )
    if dtype.kind not in "buif" or dtype.fields is not None:
        reader.close()
        raise InvalidSource(
            f"{spec.paths[0]}: unsupported dtype {dtype}; use integer or float "
            "data (uint8, uint16, uint32, float32, ...)"
        )
    if spec.cast is not None:
        return CastReader(reader, spec.cast)
    return reader
