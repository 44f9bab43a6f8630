"""One multi-page TIFF, OME-TIFF or ImageJ hyperstack, read with tifffile.

Uncompressed contiguous series are memory-mapped, so a box read touches only
the bytes it needs. Other series (compressed, tiled, scattered pages) are read
page by page for the pages a box needs, through a small cache of decoded
pages. Also home of the TIFF metadata parsing shared with the TIFF-stack
reader: axes (OME-XML / ImageJ) and voxel size (OME-XML ``PhysicalSize*``,
ImageJ ``unit`` + ``spacing``, TIFF ``XResolution``/``YResolution``), axis by
axis: a 2-D image's pixel size is kept without a z spacing.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import struct
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from precomputed.errors import (
    InvalidOption,
    InvalidSource,
    PrecomputedError,
    SourceNotFound,
)
from precomputed.readers.axes import from_tifffile, resolve_layout
from precomputed.readers.base import (
    Sourced,
    SourceSpec,
    VolumeReader,
    drop_mapped_pages,
)
from precomputed.units import axis_sizes_nm

__all__ = [
    "TIFF_ERRORS",
    "PageCache",
    "TiffReader",
    "axes_detail",
    "choose_series",
    "describe_series",
    "open_tiff",
    "tiff_voxel_size",
]

logger = logging.getLogger(__name__)

#: What tifffile and its codecs raise on corrupt or truncated files.
TIFF_ERRORS = (ValueError, OSError, RuntimeError, KeyError, IndexError, struct.error, EOFError)
_RESOLUTION_UNITS = {2: "inch", 3: "cm"}
_EDITOR_DPI = {72.0, 96.0, 100.0, 144.0, 150.0, 180.0, 200.0, 240.0, 300.0, 320.0, 360.0, 400.0, 600.0, 720.0, 1200.0, 2400.0}


def open_tiff(path: str) -> tifffile.TiffFile:
    """Open a TIFF file, raising this package's errors with the file's name."""
    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError as exc:
        raise SourceNotFound(f"TIFF file not found: {path}") from exc
    except TIFF_ERRORS as exc:
        raise InvalidSource(f"cannot read TIFF file {path}: {exc}") from exc


class PageCache:
    """A thread-safe LRU cache of decoded pages, bounded in bytes."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self._items: OrderedDict[Any, npt.NDArray[Any]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """Return the cached page for ``key``, calling ``load`` on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        page = load()
        with self._lock:
            if key not in self._items:
                self._items[key] = page
                self._bytes += page.nbytes
            while self._bytes > self._max and len(self._items) > 1:
                self._bytes -= self._items.popitem(last=False)[1].nbytes
        return page


def _rational(value: Any) -> float | None:
    """A TIFF RATIONAL tag value ``(num, den)`` as a float; ``None`` if unusable."""
    try:
        num, den = value
        return den / num if num and den else None  # pixels per unit -> unit per pixel
    except (TypeError, ValueError):
        return None


def _xy_per_pixel(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Pixel width and height in the resolution unit, from X/YResolution."""
    x = page.tags.get("XResolution")
    y = page.tags.get("YResolution")
    xs = _rational(x.value) if x else None
    ys = _rational(y.value) if y else None
    return (xs, ys) if xs and ys else None


def _nm(values: Sequence[float | None], units: Sequence[str | None], detail: str) -> Sourced | None:
    """``(x, y, z)`` in nm (``None`` for an unstated axis) as a file-sourced value.

    ``None`` for a unit we do not know, or when no axis is stated.
    """
    if all(v is None for v in values):
        return None
    try:
        return Sourced(axis_sizes_nm(values, units), "file", detail)
    except InvalidOption as exc:
        logger.debug("voxel size ignored (%s): %s", detail, exc)
        return None


def _ome_pixels(tf: tifffile.TiffFile, series: int = 0) -> ET.Element | None:
    """The ``Pixels`` element of the OME-XML image read as ``tf.series[series]``, if any.

    tifffile makes one series per OME ``Image`` that has data, in document
    order; when images without data were skipped, the series is matched by
    its (unique) name instead.
    """
    if not (tf.is_ome and tf.ome_metadata):
        return None
    images = [e for e in ET.fromstring(tf.ome_metadata).iter() if e.tag.endswith("}Image")]
    pixels = [next((p for p in i if p.tag.endswith("}Pixels")), None) for i in images]
    if len(images) == len(tf.series):
        return pixels[series]
    names = [i.get("Name") for i in images]
    name = tf.series[series].name
    if name and names.count(name) == 1:
        return pixels[names.index(name)]
    logger.debug("%s: cannot match series %d to an OME-XML Image", tf.filename, series)
    return None


def _ome_voxel(pixels: ET.Element) -> Sourced | None:
    sizes = [pixels.get(f"PhysicalSize{a}") for a in "XYZ"]
    units = [pixels.get(f"PhysicalSize{a}Unit", "µm") for a in "XYZ"]  # µm: OME default
    stated = [a for a, v in zip("XYZ", sizes) if v]
    if not stated:
        return None
    detail = (
        f"OME-XML PhysicalSize{'/'.join(stated)} = {'/'.join(v for v in sizes if v)} "
        f"{'/'.join(u for u, v in zip(units, sizes) if v)}"
    )
    values = [float(v) if v else None for v in sizes]
    return _nm(values, units, detail)


def _imagej_voxel(tf: tifffile.TiffFile) -> Sourced | None:
    meta = tf.imagej_metadata or {}
    unit = str(meta.get("unit", "")).replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    xy = _xy_per_pixel(tf.pages.first)
    spacing = meta.get("spacing")
    if not unit or unit.lower() in ("pixel", "pixels") or xy is None:
        return None
    if spacing is None:
        detail = f"ImageJ unit {unit!r} and XResolution/YResolution (no z spacing)"
        return _nm([xy[0], xy[1], None], [unit, unit, None], detail)
    detail = f"ImageJ unit {unit!r}, XResolution/YResolution and spacing"
    return _nm([xy[0], xy[1], float(spacing)], [unit] * 3, detail)


def _resolution_voxel(page: tifffile.TiffPage) -> Sourced | None:
    unit = page.tags.get("ResolutionUnit")
    xy = _xy_per_pixel(page)
    if not xy or unit is None or int(unit.value) not in _RESOLUTION_UNITS:
        return None
    name = _RESOLUTION_UNITS[int(unit.value)]
    if name == "inch" and all(round(1 / v, 3) in _EDITOR_DPI for v in xy):
        # 72, 96, 300 ... dots per inch are what image editors and screenshot tools write
        # by default; a microscope's pixel size (tens of nm to µm) is never one of them
        logger.info("TIFF resolution %g x %g dpi looks like an editor's default, not a pixel size: ignored", 1 / xy[0], 1 / xy[1])
        return None
    detail = f"TIFF XResolution/YResolution (ResolutionUnit {name}; no z)"
    return _nm([xy[0], xy[1], None], [name, name, None], detail)


def tiff_voxel_size(tf: tifffile.TiffFile, series: int = 0) -> Sourced | None:
    """Voxel size ``(x, y, z)`` in nm of a series, as far as the metadata states it.

    Read from OME-XML ``PhysicalSize*``, ImageJ ``unit`` + resolution +
    ``spacing``, or TIFF ``XResolution``/``YResolution`` with ResolutionUnit
    inch or cm. An axis the metadata does not state is ``None`` (TIFF
    resolution tags never give z); ``None`` when no axis is stated.
    """
    try:
        pixels = _ome_pixels(tf, series)
        if pixels is not None:
            return _ome_voxel(pixels)
        if tf.is_imagej:
            return _imagej_voxel(tf)
        return _resolution_voxel(tf.series[series].keyframe)
    except (ET.ParseError, ValueError, TypeError) as exc:
        logger.debug("unreadable voxel size metadata in %s: %s", tf.filename, exc)
        return None


def axes_detail(tf: tifffile.TiffFile, series_axes: str, series: int = 0) -> str:
    """Name the metadata tifffile took the series axes from."""
    pixels = _ome_pixels(tf, series)
    of = f" of series {series} ({len(tf.series)} in the file)" if len(tf.series) > 1 else ""
    if pixels is not None:
        return f"OME-XML DimensionOrder {pixels.get('DimensionOrder', '?')}{of}"
    if tf.is_imagej:
        return f"ImageJ axes {series_axes}{of}"
    return f"TIFF series axes {series_axes}{of}"


def describe_series(tf: tifffile.TiffFile) -> str:
    """Every series of a TIFF file: index, shape, axes, dtype (and name)."""
    parts = []
    for i, s in enumerate(tf.series):
        name = f" {s.name!r}" if s.name else ""
        parts.append(f"{i}: shape {tuple(s.shape)} axes {s.axes} {np.dtype(s.dtype).name}{name}")
    return "; ".join(parts)


def choose_series(tf: tifffile.TiffFile, series: int | None) -> int:
    """The index of the series to read: ``series``, or 0 when the file holds one.

    Raises
    ------
    InvalidSource
        The file holds several series and ``series`` is ``None``.
    InvalidOption
        ``series`` is out of range.
    """
    count = len(tf.series)
    if count == 0:
        raise InvalidSource(f"{tf.filehandle.path}: the TIFF file holds no image series")
    if series is None:
        if count > 1:
            raise InvalidSource(
                f"{tf.filehandle.path} holds {count} image series; choose one with "
                f"--series N: {describe_series(tf)}"
            )
        return 0
    if not 0 <= series < count:
        raise InvalidOption(
            f"--series {series} is out of range: {tf.filehandle.path} holds {count} "
            f"series (0 to {count - 1}): {describe_series(tf)}"
        )
    return series


def _first_page(series: tifffile.TiffPageSeries) -> tifffile.TiffPage | tifffile.TiffFrame:
    page = series.pages[0]
    if page is None:
        raise InvalidSource("the first page of the TIFF series is missing")
    return page


class _PagedArray:
    """A series read page by page: ``shape`` is pages' index dims + page dims."""

    def __init__(self, series: tifffile.TiffPageSeries, path: str, cache: PageCache) -> None:
        self.shape = tuple(series.shape)
        self._pages = series.pages
        self._outer = self.shape[: len(self.shape) - len(_first_page(series).shape)]
        self._cache = cache
        self._name = path

    def _page(self, flat: int) -> npt.NDArray[Any]:
        page = self._pages[flat]
        if page is None:
            raise InvalidSource(f"{self._name}: page {flat} of the series is missing")
        try:
            return page.asarray().reshape(self.shape[len(self._outer) :])
        except TIFF_ERRORS as exc:
            raise InvalidSource(f"{self._name}: cannot decode page {flat}: {exc}") from exc

    def __getitem__(self, index: tuple[slice | int, ...]) -> npt.NDArray[Any]:
        outer, inner = index[: len(self._outer)], index[len(self._outer) :]
        ranges = [
            range(*i.indices(n)) if isinstance(i, slice) else [i]
            for i, n in zip(outer, self._outer)
        ]
        blocks = []
        for position in itertools.product(*ranges):
            flat = int(np.ravel_multi_index(position, self._outer)) if position else 0
            blocks.append(self._cache.get(flat, partial(self._page, flat))[inner])
        kept = [len(r) for r, i in zip(ranges, outer) if isinstance(i, slice)]
        return np.stack(blocks).reshape(*kept, *blocks[0].shape)


def _series_array(tf: tifffile.TiffFile, series: tifffile.TiffPageSeries, cache: PageCache) -> Any:
    """A memmap of the series when its data is contiguous, else a paged reader."""
    dtype = np.dtype(series.dtype).newbyteorder(tf.byteorder)
    offset = series.dataoffset
    pages = math.prod(series.shape[: series.ndim - len(_first_page(series).shape)])
    path = tf.filehandle.path
    if offset is not None and len(series.pages) == pages:
        nbytes = math.prod(series.shape) * dtype.itemsize
        if offset + nbytes > os.path.getsize(path):
            raise InvalidSource(
                f"{path}: file is truncated ({nbytes} bytes of pixels expected at {offset})"
            )
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(series.shape))
    return _PagedArray(series, path, cache)


class TiffReader(VolumeReader):
    """A volume in one TIFF file: one series of pages (OME-TIFF, ImageJ, plain).

    A file of several series (OME-TIFF images, pages of different shapes) is
    refused unless ``spec.series`` picks one.
    """

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        self._tf = open_tiff(path)
        try:
            self.series = choose_series(self._tf, spec.series)
            series = self._tf.series[self.series]
            self.format = (
                "ome-tiff" if self._tf.is_ome else "imagej-tiff" if self._tf.is_imagej else "tiff"
            )
            self._array = _series_array(self._tf, series, PageCache())
            page_axes = from_tifffile(_first_page(series).axes) or "z"
            pages_are_z = "z" not in page_axes and len(page_axes) + 1 == series.ndim
            self._layout, self.axes = resolve_layout(
                series.shape,
                user=spec.axes,
                file_axes=from_tifffile(series.axes),
                file_detail=axes_detail(self._tf, series.axes, self.series),
                default_axes="z" + page_axes if pages_are_z else None,
                timepoint=spec.timepoint,
            )
            self.voxel_size = tiff_voxel_size(self._tf, self.series)
        except (PrecomputedError, *TIFF_ERRORS) as exc:
            self._tf.close()
            if isinstance(exc, PrecomputedError):
                raise
            raise InvalidSource(f"cannot read TIFF file {path}: {exc}") from exc
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = np.dtype(series.dtype).newbyteorder("=")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        block = self._array[self._layout.index(start, stop)]
        out = self._layout.to_czyx(block, dtype=self.dtype, copy=isinstance(self._array, np.memmap))
        drop_mapped_pages(self._array)
        return out

    def close(self) -> None:
        """Close the TIFF file."""
        self._tf.close()
