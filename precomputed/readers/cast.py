"""``--cast``: convert a volume's dtype as it is read, refusing any value that does not fit.

The stores hold the dtypes Neuroglancer reads (unsigned and signed integers,
float32); a boolean mask or a float64 volume needs converting first. A
:class:`CastReader` wraps the source's reader, so every ingest task converts
its own box and no copy of the volume is made. Conversions never change a
value silently: booleans become 0/1; floats cast to float32 must be finite
and within its range (they are rounded to float32 precision); floats cast to
an integer dtype must be whole numbers in its range; integers must fit the
target (exactly, for float32). A box that breaks this stops the ingest with
an :class:`~precomputed.errors.InvalidSource` naming the box and the value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from precomputed.errors import InvalidOption, InvalidSource
from precomputed.readers.base import VolumeReader

__all__ = ["CAST_TARGETS", "CastReader", "cast_block", "cast_detail", "check_cast"]

#: Dtypes ``--cast`` converts to: those both stores and Neuroglancer hold.
CAST_TARGETS = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32")
_FLOAT32_EXACT = 2**24  # integers beyond this are not all representable in float32


def check_cast(target: str) -> str:
    """The canonical name of a ``--cast`` dtype.

    Raises
    ------
    InvalidOption
        ``target`` is not one of :data:`CAST_TARGETS`.
    """
    try:
        name = np.dtype(str(target).strip().lower()).name
    except TypeError:
        name = str(target)
    if name not in CAST_TARGETS:
        raise InvalidOption(f"--cast {target}: cannot cast to that dtype; use one of {', '.join(CAST_TARGETS)}")
    return name


def cast_detail(source: np.dtype[Any], target: str) -> str:
    """How a cast from ``source`` to ``target`` treats the values, for the record."""
    src, dst = np.dtype(source), np.dtype(target)
    if src == dst:
        return f"--cast {target}: the source is {src.name} already; values unchanged"
    if src.kind == "b":
        return f"--cast {target} from bool: False -> 0, True -> 1"
    if src.kind == "f" and dst.kind == "f":
        return f"--cast {target} from {src.name}: every value checked finite and within the {target} range, rounded to {target} precision"
    if src.kind == "f":
        return f"--cast {target} from {src.name}: every value checked a whole number within the {target} range"
    return f"--cast {target} from {src.name}: every value checked to fit {target} exactly"


def _first(mask: npt.NDArray[np.bool_], block: npt.NDArray[Any]) -> str:
    """The first offending value of a ``[c, z, y, x]`` block, with its offset in the box."""
    c, z, y, x = (int(i[0]) for i in np.nonzero(mask))
    return f"{block[c, z, y, x].item()!r} at offset (x, y, z) = ({x}, {y}, {z}) in the box"


def cast_block(block: npt.NDArray[Any], target: str, *, where: str) -> npt.NDArray[Any]:
    """Convert a ``[c, z, y, x]`` block to ``target``, refusing values that do not fit.

    Parameters
    ----------
    block : numpy.ndarray
        A block as a reader returns it.
    target : str
        One of :data:`CAST_TARGETS`.
    where : str
        The file and box, for the error message.

    Raises
    ------
    InvalidSource
        A value that is not finite, out of range, or not a whole number for
        an integer target.
    """
    dst = np.dtype(target)
    src = block.dtype
    if src == dst:
        return block
    if src.kind == "b":
        return block.astype(dst)
    bad: npt.NDArray[np.bool_] | None = None
    why = ""
    if src.kind == "f":
        finite = np.isfinite(block)
        if not finite.all():
            bad, why = ~finite, "a value that is not finite (NaN or infinity)"
        elif dst.kind == "f":
            limit = np.finfo(dst).max
            over = np.abs(block) > limit
            if over.any():
                bad, why = over, f"a value beyond the {target} range (±{limit:.4g})"
        else:
            info = np.iinfo(dst)
            outside = (block < info.min) | (block > info.max)
            if outside.any():
                bad, why = outside, f"a value outside the {target} range {info.min}..{info.max}"
            elif (fraction := block != np.floor(block)).any():
                bad, why = fraction, f"a value that is not a whole number ({target} holds integers)"
    elif dst.kind == "f" and src.itemsize > 2:  # 8- and 16-bit integers are exact in float32
        over = np.abs(block.astype(np.float64)) > _FLOAT32_EXACT
        if over.any():
            bad, why = over, f"an integer beyond ±2^24, which {target} cannot hold exactly"
    elif dst.kind != "f":
        info = np.iinfo(dst)
        # numpy compares with Python ints exactly, whatever the signedness
        outside = (block < int(info.min)) | (block > int(info.max))
        if outside.any():
            bad, why = outside, f"a value outside the {target} range {info.min}..{info.max}"
    if bad is not None:
        raise InvalidSource(
            f"{where}: --cast {target} from {src.name}: the box holds {why}: {_first(bad, block)}; "
            "convert the data yourself (e.g. rescale or round it), or pick a wider --cast dtype"
        )
    return block.astype(dst)


class CastReader(VolumeReader):
    """A reader whose blocks are converted to ``target`` (see :func:`cast_block`).

    Attributes
    ----------
    source_dtype : numpy.dtype
        The dtype in the file, before the cast.
    """

    def __init__(self, reader: VolumeReader, target: str) -> None:
        self._reader = reader
        self.target = check_cast(target)
        self.source_dtype = reader.dtype
        if self.source_dtype.kind not in "buif" or self.source_dtype.fields is not None:
            raise InvalidSource(f"{reader.paths[0]}: cannot --cast {self.source_dtype} data; only bool, integer and float data")
        self.format = reader.format
        self.paths = reader.paths
        self.shape = reader.shape
        self.channels = reader.channels
        self.dtype = np.dtype(self.target)
        self.axes = reader.axes
        self.voxel_size = reader.voxel_size
        self.origin = reader.origin

    def read(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> npt.NDArray[Any]:
        """Read ``[start, stop)`` in ``(x, y, z)`` and convert it; C-order ``[c, z, y, x]``."""
        block = self._reader.read(start, stop)
        return cast_block(block, self.target, where=f"{self.paths[0]} box {tuple(start)}..{tuple(stop)} (x, y, z)")

    def close(self) -> None:
        """Close the wrapped reader."""
        self._reader.close()
