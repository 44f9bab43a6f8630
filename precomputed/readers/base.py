"""The interface every raw-format reader implements.

A reader describes a volume in the project's conventions (shape ``(x, y, z)``,
``channels``, ``dtype``) and hands out sub-volumes as C-order ``[c, z, y, x]``
arrays, whatever the axis order in the file. Readers never load the whole
volume: :meth:`VolumeReader.read` touches only the slices / chunks it needs.
"""

from __future__ import annotations

import abc
import mmap
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["SOURCES", "Sourced", "SourceSpec", "VolumeReader", "drop_mapped_pages"]

#: Where a catalog value came from (DESIGN.md, "Imputation").
SOURCES = ("file", "array", "profile", "user", "default")
SourceKind = Literal["file", "array", "profile", "user", "default"]


@dataclass(frozen=True)
class Sourced:
    """A value with its provenance: ``source`` is one of :data:`SOURCES`."""

    value: Any
    source: SourceKind
    detail: str


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to (re)open a source in any worker process.

    Readers are opened from a spec rather than pickled, so Dask tasks on other
    processes or hosts open their own file handles.
    """

    paths: tuple[str, ...]
    format: str
    axes: str | None = None  # the user's --axes, if given
    dataset_key: str | None = None  # HDF5 dataset / Zarr array path
    series: int | None = None  # the user's --series of a multi-series TIFF
    timepoint: int | None = None  # the user's --timepoint of a time series
    cast: str | None = None  # the user's --cast: dtype the blocks are converted to
    drop_origin: bool = False  # the user's --drop-origin: ignore an OME-Zarr translation


class VolumeReader(abc.ABC):
    """A raw volume opened for streaming reads.

    Attributes
    ----------
    format : str
        Reader name: ``tiff-stack``, ``tiff``, ``ome-tiff``, ``imagej-tiff``,
        ``hdf5``, ``npy``, ``zarr``, ``ome-zarr``.
    paths : tuple of str
        Files the volume comes from (every slice for a TIFF stack).
    shape : tuple of int
        ``(x, y, z)`` in voxels.
    channels : int
        Number of channels (1 when the file has no channel axis).
    dtype : numpy.dtype
    axes : Sourced
        The file's own axis order as a lower-case string over ``czyx`` (e.g.
        ``"zcyx"``), with where it came from: ``file`` (metadata), ``user``
        (``--axes``) or ``default`` (assumed ``zyx``).
    voxel_size : Sourced or None
        ``(x, y, z)`` in nanometres as far as the file's metadata states it
        (source ``file``), else ``None``. An axis the file does not state is
        ``None`` in the tuple, e.g. ``(100.0, 100.0, None)`` for the pixel
        size of a 2-D image; ingest imputes it with its own provenance.
    origin : Sourced or None
        A non-zero origin (translation) the file states and the reader
        ignores because the user passed ``--drop-origin``; ``None`` otherwise.
    """

    format: str
    paths: tuple[str, ...]
    shape: tuple[int, int, int]
    channels: int
    dtype: np.dtype[Any]
    axes: Sourced
    voxel_size: Sourced | None
    origin: Sourced | None = None

    @abc.abstractmethod
    def read(
        self, start: tuple[int, int, int], stop: tuple[int, int, int]
    ) -> npt.NDArray[Any]:
        """Read the box ``[start, stop)`` given as ``(x, y, z)`` voxels.

        Returns a C-order array ``[c, z, y, x]`` (``c`` is 1 for single-channel
        volumes) of dtype :attr:`dtype`. The box must lie inside the volume.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_mapped_pages(array: Any) -> None:
    """Unmap the pages a read touched in a memory-mapped array.

    The data stays in the OS page cache; only this process stops holding it,
    so the RSS of an ingest follows the task size, not the part of the file
    read so far.
    """
    handle = getattr(array, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            handle.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed or unsupported: nothing held
            pass
