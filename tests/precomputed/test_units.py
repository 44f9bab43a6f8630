"""Tests for precomputed.units: unit names, conversion to nm, voxel-size parsing."""

from __future__ import annotations

import pytest

from precomputed.errors import InvalidOption
from precomputed.units import UNITS, parse_voxel_size, to_nm, voxel_size_nm


@pytest.mark.parametrize(
    ("unit", "nm"),
    [
        ("nm", 1.0),
        ("nanometer", 1.0),
        ("nanometres", 1.0),
        ("um", 1e3),
        ("\u00b5m", 1e3),  # MICRO SIGN
        ("\u03bcm", 1e3),  # GREEK SMALL LETTER MU
        ("micron", 1e3),
        ("microns", 1e3),
        ("micrometer", 1e3),
        ("micrometre", 1e3),
        ("mm", 1e6),
        ("millimeter", 1e6),
        ("cm", 1e7),
        ("centimeter", 1e7),
        ("m", 1e9),
        ("meter", 1e9),
        ("angstrom", 0.1),
        ("angstroms", 0.1),
        ("\u00c5", 0.1),  # LATIN CAPITAL LETTER A WITH RING ABOVE
        ("\u212b", 0.1),  # ANGSTROM SIGN
        ("inch", 2.54e7),
        ("in", 2.54e7),
    ],
)
def test_to_nm_accepts_spellings(unit: str, nm: float) -> None:
    assert to_nm(2.0, unit) == pytest.approx(2.0 * nm)


@pytest.mark.parametrize("unit", ["NM", "Micron", "UM", "MicroMeter", " nm ", "Inch"])
def test_to_nm_is_case_insensitive(unit: str) -> None:
    assert to_nm(1.0, unit) in (1.0, 1e3, 2.54e7)


@pytest.mark.parametrize("unit", ["A", "furlong", "", "pixel", "px", "µ"])
def test_unknown_unit_names_unit_and_accepted(unit: str) -> None:
    with pytest.raises(InvalidOption) as info:
        to_nm(1.0, unit)
    assert repr(unit) in str(info.value)
    assert "nm" in str(info.value) and "um" in str(info.value)


def test_invalid_option_is_value_error() -> None:
    with pytest.raises(ValueError):
        to_nm(1.0, "parsec")


def test_units_are_canonical_names() -> None:
    assert UNITS == ("nm", "um", "mm", "cm", "m", "angstrom", "inch")
    for unit in UNITS:
        to_nm(1.0, unit)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4,4,40", (4.0, 4.0, 40.0)),
        ("4x4x40", (4.0, 4.0, 40.0)),
        (" 4.5, 3 ,40 ", (4.5, 3.0, 40.0)),
        ("8 8 30", (8.0, 8.0, 30.0)),
        ("1e-1,2,3", (0.1, 2.0, 3.0)),
        ((1, 2, 3), (1.0, 2.0, 3.0)),
    ],
)
def test_parse_voxel_size(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_voxel_size(text) == expected


@pytest.mark.parametrize(
    "text", ["4,4", "4,4,40,1", "4,4,0", "4,-1,3", "a,b,c", "nan,1,1", "inf,1,1", "", (1, 2)]
)
def test_parse_voxel_size_rejects(text: str) -> None:
    with pytest.raises(InvalidOption, match="voxel size"):
        parse_voxel_size(text)


def test_voxel_size_nm_rounds_float_noise() -> None:
    assert voxel_size_nm((0.004, 0.0037, 0.04), "um") == (4.0, 3.7, 40.0)
    assert voxel_size_nm((1 / 250, 1.0, 0.5), ("um", "nm", "µm")) == (4.0, 1.0, 500.0)


def test_voxel_size_nm_rejects_bad_unit_and_values() -> None:
    with pytest.raises(InvalidOption):
        voxel_size_nm((1, 1, 1), "pixel")
    with pytest.raises(InvalidOption):
        voxel_size_nm((1, 0, 1), "nm")
