"""Lengths in nanometres: unit names as microscopes and file formats spell them.

Voxel sizes are kept in nm everywhere (DESIGN.md). File metadata states them in
many spellings -- ``micron`` (ImageJ), ``µm`` (OME-XML), ``micrometer``
(OME-Zarr), centimetres or inches (TIFF ResolutionUnit) -- and :func:`to_nm`
accepts all of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from precomputed.errors import InvalidOption

__all__ = ["UNITS", "axis_sizes_nm", "parse_voxel_size", "to_nm", "voxel_size_nm"]

#: Canonical unit names, each with its size in nm.
_NM_PER_UNIT = {
    "nm": 1.0,
    "um": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "angstrom": 0.1,
    "inch": 2.54e7,
}

#: Canonical unit names accepted by :func:`to_nm`.
UNITS = tuple(_NM_PER_UNIT)

# Keys are lower-case. Both micro signs (U+00B5 MICRO SIGN, U+03BC GREEK SMALL
# LETTER MU) occur in real files; the Angstrom sign U+212B lower-cases to U+00E5.
_ALIASES = {
    "nm": "nm",
    "nanometer": "nm",
    "nanometers": "nm",
    "nanometre": "nm",
    "nanometres": "nm",
    "um": "um",
    "\u00b5m": "um",
    "\u03bcm": "um",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometers": "um",
    "micrometre": "um",
    "micrometres": "um",
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "angstrom": "angstrom",
    "angstroms": "angstrom",
    "\u00e5": "angstrom",
    "inch": "inch",
    "inches": "inch",
    "in": "inch",
}


def to_nm(value: float, unit: str) -> float:
    """Convert a length to nanometres.

    Parameters
    ----------
    value : float
        The length in ``unit``.
    unit : str
        A unit name, case-insensitive: ``nm``, ``um`` / ``µm`` / ``micron`` /
        ``micrometer``, ``mm``, ``cm``, ``m``, ``angstrom`` / ``Å``, ``inch``,
        and their long and plural spellings.

    Returns
    -------
    float
        The length in nm.

    Raises
    ------
    InvalidOption
        The unit is not a length unit this function knows.
    """
    canonical = _ALIASES.get(str(unit).strip().lower())
    if canonical is None:
        raise InvalidOption(
            f"unknown length unit {unit!r}; accepted: {', '.join(UNITS)} "
            "(and spellings such as µm, micron, micrometer, nanometre, Å, in)"
        )
    return float(value) * _NM_PER_UNIT[canonical]


def parse_voxel_size(text: str | Sequence[float]) -> tuple[float, float, float]:
    """Parse a voxel size ``(x, y, z)`` in nm, e.g. ``"4,4,40"`` or ``"4x4x40"``.

    Parameters
    ----------
    text : str or sequence of float
        Three numbers separated by commas, ``x`` or spaces; or three numbers.

    Returns
    -------
    tuple of float
        ``(x, y, z)`` in nm.

    Raises
    ------
    InvalidOption
        Not exactly three positive finite numbers.
    """
    parts: Sequence[str | float]
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,x\s]+", text.strip().lower()) if p]
    else:
        parts = list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidOption(
            f"voxel size {text!r} is not three positive numbers x,y,z in nm (e.g. '4,4,40')"
        )
    return (values[0], values[1], values[2])


def voxel_size_nm(
    values: Sequence[float], units: str | Sequence[str]
) -> tuple[float, float, float]:
    """Convert a voxel size ``(x, y, z)`` to nm, rounded to 1e-6 nm.

    The rounding drops float noise from unit conversion and TIFF rationals
    (``0.004 um`` is ``4.0`` nm, not ``4.000000000000001``).

    Parameters
    ----------
    values : sequence of float
        ``(x, y, z)`` in ``units``.
    units : str or sequence of str
        One unit for all three axes, or one per axis.

    Raises
    ------
    InvalidOption
        An unknown unit, or a size that is not positive and finite.
    """
    per_axis = [units] * 3 if isinstance(units, str) else list(units)
    nm = tuple(round(to_nm(float(v), u), 6) for v, u in zip(values, per_axis))
    if len(nm) != 3 or len(per_axis) != 3:
        raise InvalidOption(
            f"voxel size {tuple(values)} {units} does not have three values x, y, z"
        )
    return parse_voxel_size(nm)


def axis_sizes_nm(
    values: Sequence[float | None], units: str | Sequence[str | None]
) -> tuple[float | None, float | None, float | None]:
    """Convert ``(x, y, z)`` sizes to nm where stated, keeping ``None`` for the others.

    A file may state some axes only (the x/y pixel size of a 2-D image); the
    missing ones are imputed later, each with its own provenance.

    Parameters
    ----------
    values : sequence of float or None
        ``(x, y, z)``; ``None`` for an axis the file does not state.
    units : str or sequence of str or None
        One unit for all three axes, or one per axis (``None`` where the
        value is ``None``).

    Returns
    -------
    tuple of float or None
        ``(x, y, z)`` in nm, rounded to 1e-6 nm, ``None`` kept.

    Raises
    ------
    InvalidOption
        Not three values, an unknown unit, or a stated size that is not
        positive and finite.
    """
    per_axis = [units] * 3 if isinstance(units, str) else list(units)
    if len(values) != 3 or len(per_axis) != 3:
        raise InvalidOption(f"voxel size {tuple(values)} {units} does not have three values x, y, z")
    out: list[float | None] = []
    for axis, value, unit in zip("xyz", values, per_axis):
        if value is None:
            out.append(None)
            continue
        nm = round(to_nm(float(value), str(unit)), 6)
        if not (math.isfinite(nm) and nm > 0):
            raise InvalidOption(f"voxel size {axis} = {value} {unit} is not a positive finite length")
        out.append(nm)
    return (out[0], out[1], out[2])
