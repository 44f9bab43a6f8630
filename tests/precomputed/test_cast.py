"""Tests for precomputed.readers.cast: ``--cast`` converts on read and never changes a value silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from precomputed.catalog import Catalog, record_errors
from precomputed.errors import InvalidOption, InvalidSource
from precomputed.ingest import IngestOptions, ingest
from precomputed.readers import make_spec, open_reader
from precomputed.readers.cast import cast_block

from .stores import assert_stores_equal_source


def _options(**kw: Any) -> IngestOptions:
    kw.setdefault("chunk_size", (32, 32, 32))
    kw.setdefault("progress", False)
    kw.setdefault("workers", 2)
    return IngestOptions(**kw)


def test_bool_volume_is_refused_naming_cast(tmp_path: Path, root: Path) -> None:
    np.save(tmp_path / "m.npy", np.zeros((3, 4, 5), bool))
    with pytest.raises(InvalidSource, match="unsupported dtype bool; pass --cast uint8 to store it as 0/1"):
        ingest(tmp_path / "m.npy", root, "m", _options())


def test_float64_volume_is_refused_naming_cast(tmp_path: Path, root: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((3, 4, 5), np.float64))
    with pytest.raises(InvalidSource, match="dtype float64 is not supported; .*pass --cast float32 to convert it"):
        ingest(tmp_path / "f.npy", root, "f", _options())


def test_bool_mask_cast_to_uint8_is_0_and_1(tmp_path: Path, root: Path) -> None:
    mask = np.random.default_rng(0).random((9, 40, 50)) > 0.7
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["mask"] = mask
    rec = ingest(tmp_path / "m.h5", root, "m", _options(cast="uint8"))
    assert record_errors(rec) == []
    assert rec["dtype"] == "uint8" and rec["source"]["dtype"] == "bool"
    assert rec["provenance"]["dtype"] == {"source": "user", "detail": "--cast uint8 from bool: False -> 0, True -> 1"}
    assert rec["stats"]["max"] == 1 and rec["stats"]["mean"] == pytest.approx(mask.mean())
    assert_stores_equal_source(root, rec, mask.astype(np.uint8)[None])


def test_float64_cast_to_float32(tmp_path: Path, root: Path) -> None:
    vol = np.random.default_rng(1).normal(0.0, 1e5, (7, 33, 20))
    np.save(tmp_path / "f.npy", vol)
    rec = ingest(tmp_path / "f.npy", root, "f", _options(cast="float32"))
    assert rec["dtype"] == "float32" and rec["source"]["dtype"] == "float64"
    assert rec["provenance"]["dtype"]["source"] == "user"
    assert "checked finite and within the float32 range" in rec["provenance"]["dtype"]["detail"]
    assert_stores_equal_source(root, rec, vol.astype(np.float32)[None])


@pytest.mark.parametrize(
    ("value", "message"),
    [(np.nan, r"a value that is not finite \(NaN or infinity\): nan at offset \(x, y, z\) = \(3, 2, 1\)"), (1e39, r"a value beyond the float32 range")],
)
def test_float64_that_does_not_fit_float32_stops_the_ingest(tmp_path: Path, root: Path, value: float, message: str) -> None:
    vol = np.zeros((4, 5, 6))
    vol[1, 2, 3] = value
    np.save(tmp_path / "f.npy", vol)
    with pytest.raises(InvalidSource, match=message):
        ingest(tmp_path / "f.npy", root, "f", _options(cast="float32"))
    assert "f" not in Catalog(root)  # nothing catalogued


def test_float_to_integer_needs_whole_numbers_in_range(tmp_path: Path) -> None:
    where = "v.npy box (0, 0, 0)..(2, 1, 1) (x, y, z)"
    ok = cast_block(np.array([[[[3.0, 250.0]]]]), "uint8", where=where)
    assert ok.dtype == np.uint8 and ok.tolist() == [[[[3, 250]]]]
    with pytest.raises(InvalidSource, match=r"not a whole number .*: 2.5 at offset"):
        cast_block(np.array([[[[1.0, 2.5]]]]), "uint8", where=where)
    with pytest.raises(InvalidSource, match=r"outside the uint8 range 0..255: 256.0"):
        cast_block(np.array([[[[1.0, 256.0]]]]), "uint8", where=where)


def test_integer_casts_check_the_range() -> None:
    where = "box"
    assert cast_block(np.array([[[[0, 65535]]]], np.int64), "uint16", where=where).dtype == np.uint16
    with pytest.raises(InvalidSource, match=r"outside the uint16 range 0..65535: -1"):
        cast_block(np.array([[[[-1, 3]]]], np.int32), "uint16", where=where)
    with pytest.raises(InvalidSource, match=r"outside the int8 range -128..127"):
        cast_block(np.array([[[[200]]]], np.uint8), "int8", where=where)
    with pytest.raises(InvalidSource, match=r"beyond ±2\^24, which float32 cannot hold exactly"):
        cast_block(np.array([[[[2**24 + 1]]]], np.int64), "float32", where=where)


def test_cast_to_an_unknown_or_unstored_dtype_is_an_option_error(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.uint8))
    for bad in ("float64", "complex64", "bogus"):
        with pytest.raises(InvalidOption, match=f"--cast {bad}: cannot cast to that dtype"):
            make_spec(str(tmp_path / "v.npy"), cast=bad)


def test_complex_source_is_refused_even_with_cast(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.complex64))
    with pytest.raises(InvalidSource, match="unsupported dtype complex64"):
        open_reader(make_spec(str(tmp_path / "v.npy"), cast="float32"))
