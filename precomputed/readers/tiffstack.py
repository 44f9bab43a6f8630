"""A TIFF stack: one 2-D TIFF slice per z, from a folder, a glob or a list.

Files are sorted naturally (``z2`` before ``z10``). Opening reads every
slice's first page header -- never pixel data -- and refuses a stack whose
slices differ in shape or dtype, naming the first offending file. Reads touch
only the slices a box needs: uncompressed slices are memory-mapped and only
the box region is copied; compressed ones are decoded through a page cache.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from precomputed.errors import InvalidSource, SourceNotFound
from precomputed.readers.axes import from_tifffile, resolve_layout
from precomputed.readers.base import SourceSpec, VolumeReader
from precomputed.readers.tiff import TIFF_ERRORS, PageCache, open_tiff, tiff_voxel_size

__all__ = ["TIFF_SUFFIXES", "TiffStackReader", "expand_stack", "natural_key"]

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
_GLOB = re.compile(r"[*?\[]")


def natural_key(path: str) -> list[Any]:
    """Sort key that orders numbers by value: ``z2.tif`` before ``z10.tif``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def _is_tiff(path: str) -> bool:
    name = os.path.basename(path)
    return name.lower().endswith(TIFF_SUFFIXES) and not name.startswith(".")


def expand_stack(paths: Sequence[str]) -> list[str]:
    """The slice files of a stack given as a folder, a glob pattern or files.

    Returns the TIFF files sorted naturally. Raises SourceNotFound when no
    file matches or a listed file does not exist.
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(path, n) for n in os.listdir(path) if _is_tiff(n)]
        elif os.path.isfile(path):
            files.append(path)
        elif _GLOB.search(path):
            files += [f for f in glob.glob(path) if os.path.isfile(f) and _is_tiff(f)]
        else:
            raise SourceNotFound(f"no such file or folder: {path}")
    if not files:
        raise SourceNotFound(f"no TIFF files (.tif, .tiff) match {', '.join(paths)}")
    return sorted(dict.fromkeys(files), key=natural_key)


@dataclass(frozen=True)
class _Slice:
    """What a slice's first page header says."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]  # in the file's byte order
    axes: str
    offset: int | None  # of the pixel data, when it can be memory-mapped


def _probe(path: str) -> _Slice:
    with open_tiff(path) as tf:
        try:
            page = tf.pages.first
            if len(tf.pages) > 1:
                raise InvalidSource(
                    f"TIFF stack slice {path} has {len(tf.pages)} pages; a stack needs one "
                    "2-D image per file (open a multi-page file alone, format 'tiff')"
                )
            if page.dtype is None:
                raise InvalidSource(f"{path}: unsupported sample format")
            size = os.path.getsize(path)
            if max(o + n for o, n in zip(page.dataoffsets, page.databytecounts)) > size:
                raise InvalidSource(f"{path}: file is truncated")
            dtype = np.dtype(page.dtype).newbyteorder(tf.byteorder)
            offset = page.dataoffsets[0] if page.is_memmappable else None
            return _Slice(path, tuple(page.shape), dtype, page.axes, offset)
        except TIFF_ERRORS as exc:
            if isinstance(exc, InvalidSource):
                raise
            raise InvalidSource(f"cannot read TIFF slice {path}: {exc}") from exc


def _check_same(slices: Sequence[_Slice]) -> None:
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape or s.dtype != first.dtype:
            raise InvalidSource(
                f"TIFF stack slice {s.path} is {s.shape} {s.dtype.name} but "
                f"{first.path} is {first.shape} {first.dtype.name}; all slices "
                "must have the same shape and dtype"
            )


class _StackArray:
    """The stack as an array ``[file, *page dims]``, read lazily per slice."""

    def __init__(self, slices: Sequence[_Slice]) -> None:
        self._slices = slices
        self.shape = (len(slices), *slices[0].shape)
        self._pages = PageCache(64 * 2**20)

    def _memmap(self, i: int) -> npt.NDArray[Any]:
        # mapped per read and dropped after the copy: maps kept open would pin every touched
        # page in this process's RSS, which then grows with the volume instead of the task
        s = self._slices[i]
        try:
            return np.memmap(s.path, dtype=s.dtype, mode="r", offset=s.offset or 0, shape=s.shape)
        except (OSError, ValueError) as exc:
            raise InvalidSource(f"cannot map TIFF slice {s.path}: {exc}") from exc

    def _decode(self, i: int) -> npt.NDArray[Any]:
        path = self._slices[i].path
        with open_tiff(path) as tf:
            try:
                return tf.pages.first.asarray().reshape(self._slices[i].shape)
            except TIFF_ERRORS as exc:
                raise InvalidSource(f"cannot decode TIFF slice {path}: {exc}") from exc

    def _plane(self, i: int) -> npt.NDArray[Any]:
        if self._slices[i].offset is not None:
            return self._memmap(i)
        return self._pages.get(i, lambda: self._decode(i))

    def __getitem__(self, index: tuple[slice | int, ...]) -> npt.NDArray[Any]:
        which, inner = index[0], index[1:]
        if isinstance(which, int):
            return np.array(self._plane(which)[inner])
        files = range(*which.indices(self.shape[0]))
        first = self._plane(files[0])[inner]
        out = np.empty((len(files), *first.shape), dtype=first.dtype.newbyteorder("="))
        out[0] = first
        for j, i in enumerate(files[1:], start=1):
            out[j] = self._plane(i)[inner]
        return out

    def close(self) -> None:
        self._pages = PageCache(64 * 2**20)


class TiffStackReader(VolumeReader):
    """A volume stored as one 2-D TIFF file per z slice."""

    format = "tiff-stack"

    def __init__(self, spec: SourceSpec) -> None:
        self.paths = tuple(expand_stack(spec.paths))
        slices = [_probe(p) for p in self.paths]
        _check_same(slices)
        page_axes = from_tifffile(slices[0].axes)
        if page_axes is None or "z" in page_axes or not {"y", "x"} <= set(page_axes):
            raise InvalidSource(
                f"TIFF stack slice {self.paths[0]} is not a 2-D image (page axes {slices[0].axes})"
            )
        self._array = _StackArray(slices)
        self._layout, self.axes = resolve_layout(
            self._array.shape,
            user=spec.axes,
            file_axes="z" + page_axes,
            file_detail=f"one {slices[0].axes} page per file, {len(slices)} files sorted naturally",
            timepoint=spec.timepoint,
        )
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = slices[0].dtype.newbyteorder("=")
        with open_tiff(self.paths[0]) as tf:
            found = tiff_voxel_size(tf)
        name = os.path.basename(self.paths[0])
        self.voxel_size = found and replace(found, detail=f"first slice {name}: {found.detail}")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        block = self._array[self._layout.index(start, stop)]
        return self._layout.to_czyx(block, dtype=self.dtype)

    def close(self) -> None:
        """Drop the memory maps."""
        self._array.close()
