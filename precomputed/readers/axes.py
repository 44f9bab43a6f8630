"""Axis orders: from a file's layout to the project's ``[c, z, y, x]``.

An axes string names the file's dimensions in order, over the letters
``c z y x`` (and ``t`` for a time axis, of which one timepoint is read), e.g.
``zyx``, ``czyx``, ``zcyx`` or ``xyz``. A :class:`Layout` pairs such a string
with the array's shape and turns ``(x, y, z)`` boxes into index tuples in file
order, and blocks read in file order into C-order ``[c, z, y, x]`` arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from precomputed.errors import InvalidAxes, InvalidOption, InvalidSource
from precomputed.readers.base import Sourced

__all__ = ["Layout", "from_names", "from_tifffile", "parse_axes", "resolve_layout"]

logger = logging.getLogger(__name__)

_LETTERS = "tczyx"
_TIFFFILE = {"X": "x", "Y": "y", "Z": "z", "C": "c", "S": "c", "T": "t"}
_NAMES = {"channel": "c", "channels": "c", "ch": "c", "time": "t"}


def parse_axes(axes: str) -> str:
    """Validate an axes string such as ``zyx`` or ``czyx``; return it lower-cased.

    Raises
    ------
    InvalidAxes
        Letters other than ``tczyx``, a repeated letter, or no ``z``/``y``/``x``.
    """
    text = str(axes).strip().lower()
    bad = sorted(set(text) - set(_LETTERS))
    if bad:
        raise InvalidAxes(
            f"axes {axes!r}: unknown letter(s) {''.join(bad)!r}; use c, z, y, x (and t)"
        )
    if len(set(text)) != len(text):
        raise InvalidAxes(f"axes {axes!r}: each letter may appear once")
    missing = [a for a in "zyx" if a not in text]
    if missing:
        raise InvalidAxes(
            f"axes {axes!r}: missing {''.join(missing)!r}; "
            "a volume needs z, y and x (e.g. zyx, czyx)"
        )
    return text


def from_tifffile(axes: str) -> str | None:
    """Map tifffile series axes (``ZCYX``, ``YXS``, ...) to ours; ``None`` if unknown.

    ``S`` (samples, e.g. RGB) becomes ``c``. Letters such as ``Q`` or ``I``
    (unknown / image sequence) give ``None``, as does a result with two ``c``.
    """
    if any(a not in _TIFFFILE for a in axes):
        return None
    mapped = "".join(_TIFFFILE[a] for a in axes)
    return mapped if len(set(mapped)) == len(mapped) else None


def from_names(names: Sequence[str]) -> str | None:
    """Map dimension names (``["z", "y", "x"]``, ``["channel", "Z", ...]``) to axes.

    A single string such as ``"zyx"`` is read letter by letter. Returns
    ``None`` when a name is unknown or repeated.
    """
    letters = []
    for name in names:
        key = str(name).strip().lower()
        letters.append(_NAMES.get(key, key))
    mapped = "".join(letters)
    ok = all(len(a) == 1 and a in _LETTERS for a in letters) and len(set(mapped)) == len(mapped)
    return mapped if ok else None


@dataclass(frozen=True)
class Layout:
    """An array's axes in file order with its shape.

    ``axes`` must hold ``y`` and ``x``; ``z`` and ``c`` may be absent (size 1);
    of a ``t`` axis only ``timepoint`` is read.
    """

    axes: str
    shape: tuple[int, ...]
    timepoint: int = 0

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Volume shape ``(x, y, z)``."""
        size = dict(zip(self.axes, self.shape))
        return (size["x"], size["y"], size.get("z", 1))

    @property
    def channels(self) -> int:
        """Number of channels (1 without a ``c`` axis)."""
        return dict(zip(self.axes, self.shape)).get("c", 1)

    def index(self, start: Sequence[int], stop: Sequence[int]) -> tuple[slice | int, ...]:
        """Index tuple in file order for the box ``[start, stop)`` in ``(x, y, z)``."""
        box = {a: slice(int(b), int(e)) for a, b, e in zip("xyz", start, stop)}
        box["c"] = slice(None)
        return tuple(self.timepoint if a == "t" else box[a] for a in self.axes)

    def to_czyx(
        self, block: npt.NDArray[Any], *, dtype: npt.DTypeLike | None = None, copy: bool = False
    ) -> npt.NDArray[Any]:
        """Reorder a block read with :meth:`index` into C-order ``[c, z, y, x]``.

        ``copy=True`` guarantees a new array (pass it for memory-mapped
        blocks); otherwise the block is copied only when the order or
        ``dtype`` (e.g. byte order) must change.
        """
        axes = self.axes.replace("t", "")
        for letter in "cz":
            if letter not in axes:
                block = block[np.newaxis]
                axes = letter + axes
        block = block.transpose([axes.index(a) for a in "czyx"])
        return np.array(block, dtype=dtype, order="C", copy=True if copy else None, subok=False)

    def check_box(self, start: Sequence[int], stop: Sequence[int]) -> None:
        """Raise ValueError unless ``[start, stop)`` is a non-empty box inside the volume."""
        shape = self.shape_xyz
        if (
            len(start) != 3
            or len(stop) != 3
            or not all(0 <= b < e <= n for b, e, n in zip(start, stop, shape))
        ):
            raise ValueError(
                f"box {tuple(start)}..{tuple(stop)} (x, y, z) is not inside the volume {shape}"
            )


def _display(axes: str) -> str:
    """The axes as the volume sees them: ``t`` dropped, ``z`` added if absent."""
    axes = axes.replace("t", "")
    return axes if "z" in axes else "z" + axes


def resolve_layout(
    shape: Sequence[int],
    *,
    user: str | None,
    file_axes: str | None,
    file_detail: str,
    default_axes: str | None = None,
    timepoint: int | None = None,
) -> tuple[Layout, Sourced]:
    """Decide the axis order of an array from ``--axes``, the file, or the default.

    Parameters
    ----------
    shape : sequence of int
        The array's shape in file order.
    user : str or None
        The user's ``--axes``; it wins over the file's metadata (with a warning).
    file_axes : str or None
        Axes from the file's metadata (may lack ``z`` for a single 2-D image).
    file_detail : str
        Which metadata gave ``file_axes``, e.g. ``"ImageJ axes ZCYX"``.
    default_axes : str or None
        The assumption without metadata; ``zyx`` (or ``yx``) when not given.
    timepoint : int or None
        The user's ``--timepoint``: which index of a ``t`` axis to read.

    Returns
    -------
    Layout, Sourced
        The layout, and the axes string with its provenance.

    Raises
    ------
    InvalidAxes
        Bad ``--axes``, its length not the array's ndim, or a volume of more
        than three dimensions with no axis metadata.
    InvalidSource
        A ``t`` axis of more than one timepoint without ``timepoint``, a
        dimension of size 0, or fewer than two dimensions.
    InvalidOption
        ``timepoint`` out of range, or given for an array without a ``t`` axis.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise InvalidSource(
            f"array of shape {shape} has {len(shape)} dimension(s); an image needs at "
            "least y and x (a 2-D image or a volume)"
        )
    if 0 in shape:
        raise InvalidSource(f"array of shape {shape} is empty: a dimension has size 0")
    if user is not None:
        axes = parse_axes(user)
        if len(axes) != len(shape):
            raise InvalidAxes(
                f"--axes {user!r} has {len(axes)} letters but the array has "
                f"{len(shape)} dimensions (shape {shape})"
            )
        detail = f"--axes {axes}"
        if file_axes is not None and _display(file_axes) != _display(axes):
            logger.warning(
                "--axes %s overrides the file's axes %s (%s)", axes, file_axes, file_detail
            )
            detail += f" (overrides the file's {_display(file_axes)} from {file_detail})"
        sourced = Sourced(_display(axes), "user", detail)
    elif file_axes is not None and len(file_axes) == len(shape) and {"y", "x"} <= set(file_axes):
        axes = file_axes
        sourced = Sourced(_display(axes), "file", file_detail)
    elif default_axes is not None and len(default_axes) == len(shape):
        axes = default_axes
        sourced = Sourced(_display(axes), "default", f"no axis metadata; assumed {_display(axes)}")
    elif len(shape) in (2, 3):
        axes = "zyx"[-len(shape) :]
        sourced = Sourced("zyx", "default", "no axis metadata; assumed zyx")
    elif len(shape) > 5:
        raise InvalidSource(
            f"array of shape {shape} has {len(shape)} dimensions; a volume has at "
            "most t, c, z, y, x"
        )
    elif len(shape) == 5:
        raise InvalidSource(
            f"array of shape {shape} has 5 dimensions and no axis metadata; pass --axes "
            "(e.g. tczyx) and --timepoint T"
        )
    else:
        raise InvalidAxes(
            f"array of shape {shape} has {len(shape)} dimensions and no axis "
            "metadata; pass --axes (e.g. czyx or zcyx)"
        )
    size = dict(zip(axes, shape))
    if "t" not in size:
        if timepoint is not None:
            raise InvalidOption(
                f"--timepoint {timepoint}: the array (shape {shape}, axes {axes}) has no time axis"
            )
        return Layout(axes, shape), sourced
    count = size["t"]
    if timepoint is None:
        if count != 1:
            raise InvalidSource(
                f"time axis of size {count} (shape {shape}, axes {axes}); one timepoint is "
                f"ingested at a time: choose one with --timepoint T (0 to {count - 1})"
            )
        return Layout(axes, shape), sourced
    if not 0 <= timepoint < count:
        raise InvalidOption(
            f"--timepoint {timepoint} is out of range: the time axis has {count} "
            f"timepoint(s), 0 to {count - 1}"
        )
    chosen = Sourced(sourced.value, sourced.source, f"{sourced.detail}; --timepoint {timepoint} of {count}")
    return Layout(axes, shape, timepoint), chosen
