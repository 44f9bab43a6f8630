"""``blockio ingest``'s source options reach the ingest: --series, --timepoint, --cast, --drop-origin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from blockio.cli.main import main
from blockio.store import Store


def ingest(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str]:
    code = main(["ingest", *args, "--root", str(root), "--quiet"])
    return code, capsys.readouterr().err


def record(root: Path, dataset_id: str) -> dict[str, Any]:
    return json.loads((root / "catalog.json").read_text())["datasets"][dataset_id]


def read_all(root: Path, dataset_id: str) -> np.ndarray:
    shape = record(root, dataset_id)["shape"]
    return np.asarray(Store(root, cache_bytes=0).read_block(dataset_id, (0, 0, 0), shape))


def test_series_picks_an_image_series(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path) -> None:
    second = np.arange(6 * 16 * 24, dtype=np.uint16).reshape(6, 16, 24)
    with tifffile.TiffWriter(tmp_path / "multi.tif") as tw:
        tw.write(np.zeros((4, 16, 16), np.uint16), photometric="minisblack")
        tw.write(second, photometric="minisblack")
    assert ingest(capsys, root, str(tmp_path / "multi.tif"), "--series", "1", "--id", "s1") == (0, "")
    assert record(root, "s1")["source"]["series"] == 1
    np.testing.assert_array_equal(read_all(root, "s1"), second)


def test_timepoint_picks_one_timepoint(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path) -> None:
    tzyx = np.arange(3 * 4 * 8 * 8, dtype=np.uint16).reshape(3, 4, 8, 8)
    np.save(tmp_path / "t.npy", tzyx)
    assert ingest(capsys, root, str(tmp_path / "t.npy"), "--axes", "tzyx", "--timepoint", "2", "--id", "t2") == (0, "")
    assert record(root, "t2")["source"]["timepoint"] == 2
    np.testing.assert_array_equal(read_all(root, "t2"), tzyx[2])


def test_cast_converts_float64(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path) -> None:
    np.save(tmp_path / "f.npy", np.linspace(0, 1, 4 * 8 * 8).reshape(4, 8, 8))
    code, err = ingest(capsys, root, str(tmp_path / "f.npy"), "--id", "f")
    assert code == 1 and "--cast float32" in err  # refused without it, naming the flag
    assert ingest(capsys, root, str(tmp_path / "f.npy"), "--cast", "float32", "--id", "f") == (0, "")
    assert record(root, "f")["dtype"] == "float32"


def test_cast_to_an_unknown_dtype_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((4, 8, 8), np.uint8))
    code, err = ingest(capsys, root, str(tmp_path / "v.npy"), "--cast", "complex64", "--id", "v")
    assert code == 1 and err.startswith("blockio: error: --cast complex64") and err.count("\n") == 1


def test_drop_origin_ingests_a_translated_ome_zarr(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path) -> None:
    vol = np.arange(5 * 20 * 30, dtype=np.uint16).reshape(5, 20, 30)
    group = zarr.open_group(tmp_path / "img.zarr", mode="w", zarr_format=2)
    group.create_array("0", shape=vol.shape, dtype="uint16")[...] = vol
    transforms = [{"type": "scale", "scale": [0.04, 0.004, 0.004]}, {"type": "translation", "translation": [0.4, 0.0, 1.2]}]
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"], "datasets": [{"path": "0", "coordinateTransformations": transforms}]}
    ]
    code, err = ingest(capsys, root, str(tmp_path / "img.zarr"), "--id", "z")
    assert code == 1 and "--drop-origin" in err
    assert ingest(capsys, root, str(tmp_path / "img.zarr"), "--drop-origin", "--id", "z") == (0, "")
    assert record(root, "z")["provenance"]["origin"]["detail"].startswith("--drop-origin")
    np.testing.assert_array_equal(read_all(root, "z"), vol)


def test_source_options_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--series N image series", "--timepoint T timepoint", "--cast DTYPE convert", "--drop-origin ingest an OME-Zarr"):
        assert flag in text, flag
