"""Tests for precomputed.imputation: the voxel size axis by axis, with each axis's provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from precomputed.catalog import record_errors
from precomputed.imputation import resolve_voxel_size
from precomputed.ingest import IngestOptions, ingest
from precomputed.readers.base import Sourced
from precomputed.validate import missing_fields

from .stores import assert_stores_equal_source

XY_ONLY = Sourced((100.0, 200.0, None), "file", "OME-XML PhysicalSizeX/Y = 0.1/0.2 µm/µm")


def _options(**kw: Any) -> IngestOptions:
    kw.setdefault("chunk_size", (32, 32, 32))
    kw.setdefault("progress", False)
    kw.setdefault("workers", 2)
    return IngestOptions(**kw)


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 255, shape, endpoint=True).astype(np.uint8)


def test_file_xy_and_default_z_each_keep_their_source() -> None:
    got = resolve_voxel_size(user=None, from_file=XY_ONLY, profile=None)
    assert got.value == (100.0, 200.0, 1.0)
    assert [a.source for a in got.axes] == ["file", "file", "default"]
    assert got.axes[0].detail == XY_ONLY.detail
    assert got.axes[2].detail == "the file states no z size, no --voxel-size, no --profile; assumed 1 nm"
    # overall: the weakest axis, so `catalog missing` still lists the guess
    assert got.source == "default"
    assert got.detail.startswith("x, y from file: OME-XML") and "; z from default: the file states no z" in got.detail


def test_profile_fills_only_the_axes_the_file_lacks() -> None:
    got = resolve_voxel_size(user=None, from_file=XY_ONLY, profile="sbem")
    assert got.value == (100.0, 200.0, 25.0)
    assert [a.source for a in got.axes] == ["file", "file", "profile"]
    assert got.source == "profile" and "sbem" in got.axes[2].detail


def test_user_voxel_size_wins_on_every_axis_and_names_what_the_file_said() -> None:
    got = resolve_voxel_size(user=(100, 100, 500), from_file=XY_ONLY, profile=None)
    assert got.value == (100.0, 100.0, 500.0)
    assert {a.source for a in got.axes} == {"user"} and got.source == "user"
    assert "(the file says x=100, y=200 nm: OME-XML" in got.detail
    agree = resolve_voxel_size(user=(100, 200, 500), from_file=XY_ONLY, profile=None)
    assert "the file says" not in agree.detail


def test_whole_file_voxel_size_keeps_its_summary_and_gains_axes() -> None:
    full = Sourced((4.0, 4.0, 40.0), "file", "ImageJ unit 'um', XResolution/YResolution and spacing")
    got = resolve_voxel_size(user=None, from_file=full, profile="sbem")
    assert (got.value, got.source, got.detail) == ((4.0, 4.0, 40.0), "file", full.detail)
    assert [(a.value, a.source) for a in got.axes] == [(4.0, "file"), (4.0, "file"), (40.0, "file")]
    none = resolve_voxel_size(user=None, from_file=None, profile=None)
    assert none.source == "default" and none.detail.startswith("no voxel size in the file")


def test_2d_ome_tiff_keeps_its_pixel_size(tmp_path: Path, root: Path) -> None:
    plane = _image((40, 50))
    meta = {"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2}
    tifffile.imwrite(tmp_path / "p.ome.tif", plane, ome=True, metadata=meta)
    rec = ingest(tmp_path / "p.ome.tif", root, "p", _options())
    assert record_errors(rec) == []
    assert rec["shape"] == [50, 40, 1] and rec["voxel_size"] == [100.0, 200.0, 1.0]
    prov = rec["provenance"]["voxel_size"]
    assert prov["axes"]["x"] == {"source": "file", "detail": "OME-XML PhysicalSizeX/Y = 0.1/0.2 µm/µm"}
    assert prov["axes"]["y"]["source"] == "file" and prov["axes"]["z"]["source"] == "default"
    assert "no voxel size in the file" not in prov["detail"]
    # a curator is still told that z is a guess, and only z
    [(name, detail)] = missing_fields(rec)
    assert name == "voxel_size" and "z from default" in detail and "x, y from file" in detail
    assert_stores_equal_source(root, rec, plane[None, None])


def test_2d_ome_tiff_takes_z_from_voxel_size_flag(tmp_path: Path, root: Path) -> None:
    meta = {"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1}
    tifffile.imwrite(tmp_path / "p.ome.tif", _image((20, 30)), ome=True, metadata=meta)
    rec = ingest(tmp_path / "p.ome.tif", root, "p", _options(voxel_size=(100, 100, 500)))
    assert rec["voxel_size"] == [100.0, 100.0, 500.0]
    assert rec["provenance"]["voxel_size"]["axes"]["z"]["source"] == "user"
    assert missing_fields(rec) == []


@pytest.mark.parametrize(("unit", "per_unit", "nm"), [("CENTIMETER", 1e5, 100.0), ("INCH", 254000.0, 100.0)])
def test_2d_tiff_resolution_tags_give_xy(tmp_path: Path, root: Path, unit: str, per_unit: float, nm: float) -> None:
    plane = _image((24, 36))
    tifffile.imwrite(tmp_path / "p.tif", plane, resolution=(per_unit, per_unit / 2), resolutionunit=unit)
    rec = ingest(tmp_path / "p.tif", root, "p", _options(profile="sbem"))
    assert rec["voxel_size"] == [nm, 2 * nm, 25.0]
    axes = rec["provenance"]["voxel_size"]["axes"]
    assert [axes[a]["source"] for a in "xyz"] == ["file", "file", "profile"]
    assert "XResolution/YResolution" in axes["x"]["detail"]
    assert_stores_equal_source(root, rec, plane[None, None])


def test_3d_stack_with_resolution_tags_but_no_spacing(tmp_path: Path, root: Path) -> None:
    vol = _image((5, 20, 30))
    (tmp_path / "s").mkdir()
    for z, plane in enumerate(vol):
        tifffile.imwrite(tmp_path / "s" / f"z{z}.tif", plane, resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER")
    rec = ingest(tmp_path / "s", root, "s", _options())
    assert rec["voxel_size"] == [4.0, 4.0, 1.0]
    axes = rec["provenance"]["voxel_size"]["axes"]
    assert [axes[a]["source"] for a in "xyz"] == ["file", "file", "default"]
    assert axes["x"]["detail"].startswith("first slice z0.tif: TIFF XResolution/YResolution")
    assert_stores_equal_source(root, rec, vol[None])


def test_2d_ome_zarr_keeps_its_pixel_size(tmp_path: Path, root: Path) -> None:
    plane = _image((20, 30))
    group = zarr.open_group(tmp_path / "img.zarr", mode="w", zarr_format=2)
    group.create_array("0", shape=plane.shape, dtype="uint8")[...] = plane
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.2, 0.1]}]}],
        }
    ]
    rec = ingest(tmp_path / "img.zarr", root, "z", _options())
    assert rec["voxel_size"] == [100.0, 200.0, 1.0]
    axes = rec["provenance"]["voxel_size"]["axes"]
    assert axes["x"]["detail"] == "OME-Zarr dataset '0' scale (x, y) = (0.1, 0.2) micrometer/micrometer"
    assert axes["z"]["source"] == "default"
    assert_stores_equal_source(root, rec, plane[None, None])


@pytest.mark.parametrize("dpi", [72, 96, 300])
def test_editor_default_dpi_is_not_a_pixel_size(tmp_path: Path, root: Path, dpi: int) -> None:
    plane = _image((24, 36))
    tifffile.imwrite(tmp_path / "p.tif", plane, resolution=(dpi, dpi), resolutionunit="INCH")
    rec = ingest(tmp_path / "p.tif", root, "p", _options())
    assert rec["voxel_size"] == [1.0, 1.0, 1.0]
    assert rec["provenance"]["voxel_size"]["source"] == "default"
