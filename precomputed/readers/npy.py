"""A ``.npy`` file, memory-mapped: a box read copies only the box.

``.npy`` files carry no metadata, so the axes are the user's ``--axes`` or the
default ``zyx``, and the voxel size is unknown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from precomputed.errors import InvalidSource, SourceNotFound
from precomputed.readers.axes import resolve_layout
from precomputed.readers.base import SourceSpec, VolumeReader, drop_mapped_pages

__all__ = ["NpyReader"]


class NpyReader(VolumeReader):
    """A volume stored as one NumPy ``.npy`` file."""

    format = "npy"
    voxel_size = None

    def __init__(self, spec: SourceSpec) -> None:
        path = spec.paths[0]
        self.paths = (path,)
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as exc:
            raise SourceNotFound(f"NumPy file not found: {path}") from exc
        except (OSError, ValueError, EOFError) as exc:
            raise InvalidSource(f"cannot read NumPy file {path}: {exc}") from exc
        self._layout, self.axes = resolve_layout(
            self._array.shape, user=spec.axes, file_axes=None, file_detail="", timepoint=spec.timepoint
        )
        self.shape = self._layout.shape_xyz
        self.channels = self._layout.channels
        self.dtype = self._array.dtype.newbyteorder("=")

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)``; returns C-order ``[c, z, y, x]``."""
        self._layout.check_box(start, stop)
        block = self._array[self._layout.index(start, stop)]
        out = self._layout.to_czyx(block, dtype=self.dtype, copy=True)
        drop_mapped_pages(self._array)
        return out
