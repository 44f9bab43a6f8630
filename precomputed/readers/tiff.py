"""One multi-page TIFF, OME-TIFF or ImageJ hyperstack, read with tifffile.

Uncompressed contiguous series are memory-mapped, so a box read touches only
the bytes it needs. Other series (compressed, tiled, scattered pages) are read
page by page for the pages a box needs, through a small cache of decoded
pages. Also home of the TIFF metadata parsing shared with the TIFF-stack
reader: axes (OME-XML / ImageJ) and voxel size (OME-XML ``PhysicalSize*``,
ImageJ ``unit`` + ``spacing``, TIFF ``XResolution``/``YResolution``).
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
from precomputed.units import voxel_size_nm

__all__ = ["PageCache", "TIFF_ERRORS", "TiffReader", "axes_detail", "open_tiff", "tiff_voxel_size"]

logger = logging.getLogger(__name__)

#: What tifffile and its codecs raise on corrupt or truncated files.
TIFF_ERRORS = (ValueError, OSError, RuntimeError, KeyError, IndexError, struct.error, EOFError)
_RESOLUTION_UNITS = {2: "inch", 3: "cm"}


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


def _nm(values: Sequence[float], units: Sequence[str], detail: str) -> Sourced | None:
    """``(x, y, z)`` in nm as a file-sourced value, or ``None`` for a unit we do not know."""
    try:
        return Sourced(voxel_size_nm(values, units), "file", detail)
    except InvalidOption as exc:
        logger.debug("voxel size ignored (%s): %s", detail, exc)
        return None


def _ome_pixels(tf: tifffile.TiffFile) -> ET.Element | None:
    """The first image's ``Pixels`` element of the OME-XML, if any."""
    if not (tf.is_ome and tf.ome_metadata):
        return None
    return next(
        (e for e in ET.fromstring(tf.ome_metadata).iter() if e.tag.endswith("}Pixels")), None
    )


def _ome_voxel(pixels: ET.Element) -> Sourced | None:
    sizes = [pixels.get(f"PhysicalSize{a}") for a in "XYZ"]
    units = [pixels.get(f"PhysicalSize{a}Unit", "µm") for a in "XYZ"]  # µm: OME default
    if not all(sizes):
        logger.debug("OME-XML states PhysicalSize X/Y/Z = %s only; voxel size unknown", sizes)
        return None
    detail = f"OME-XML PhysicalSizeX/Y/Z = {'/'.join(sizes)} {'/'.join(units)}"  # type: ignore[arg-type]
    return _nm([float(s) for s in sizes], units, detail)  # type: ignore[arg-type]


def _imagej_voxel(tf: tifffile.TiffFile) -> Sourced | None:
    meta = tf.imagej_metadata or {}
    unit = str(meta.get("unit", "")).replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    xy = _xy_per_pixel(tf.pages.first)
    spacing = meta.get("spacing")
    if not unit or unit.lower() in ("pixel", "pixels") or xy is None:
        return None
    if spacing is None:
        logger.debug(
            "ImageJ metadata states x/y (%s %s) but no z spacing; voxel size unknown", xy, unit
        )
        return None
    detail = f"ImageJ unit {unit!r}, XResolution/YResolution and spacing"
    return _nm([xy[0], xy[1], float(spacing)], [unit] * 3, detail)


def tiff_voxel_size(tf: tifffile.TiffFile) -> Sourced | None:
    """Voxel size ``(x, y, z)`` in nm from OME-XML or ImageJ metadata, else ``None``.

    TIFF ``XResolution``/``YResolution`` with ResolutionUnit inch or cm give x
    and y only; without z the voxel size stays ``None`` (logged at debug).
    """
    try:
        pixels = _ome_pixels(tf)
        if pixels is not None:
            return _ome_voxel(pixels)
        if tf.is_imagej:
            return _imagej_voxel(tf)
    except (ET.ParseError, ValueError, TypeError) as exc:
        logger.debug("unreadable voxel size metadata in %s: %s", tf.filename, exc)
        return None
    page = tf.pages.first
    unit = page.tags.get("ResolutionUnit")
    xy = _xy_per_pixel(page)
    if xy and unit is not None and int(unit.value) in _RESOLUTION_UNITS:
        name = _RESOLUTION_UNITS[int(unit.value)]
        x_nm, y_nm, _ = voxel_size_nm((*xy, 1.0), (name, name, "nm"))
        logger.debug(
            "%s: pixel size x=%s nm, y=%s nm from XResolution/YResolution (%s) "
            "but no z; voxel size unknown",
            tf.filename,
            x_nm,
            y_nm,
            name,
        )
    return None


def axes_detail(tf: tifffile.TiffFile, series_axes: str) -> str:
    """Name the metadata tifffile took the series axes from."""
    pixels = _ome_pixels(tf)
    if pixels is not None:
        return f"OME-XML DimensionOrder {pixels.get('DimensionOrder', '?')}"
    if tf.is_imagej:
        return f"ImageJ axes {series_axes}"
    return f"TIFF series axes {series_axes}"


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
    """A volume in one TIFF file: the first series of pages (OME-TIFF, ImageJ, plain)."""

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        self._tf = open_tiff(path)
        try:
            series = self._tf.series[0]
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
                file_detail=axes_detail(self._tf, series.axes),
                default_axes="z" + page_axes if pages_are_z else None,
            )
            self.voxel_size = tiff_voxel_size(self._tf)
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
