"""Tests for precomputed.readers: every format reads boxes equal to its source.

Each fixture writes a small file in ``tmp_path`` from a known NumPy volume
``[c, z, y, x]``; a reader must hand back exactly that volume's boxes, whatever
the file's axis order, dtype or compression.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precomputed.errors import (
    InvalidAxes,
    InvalidOption,
    InvalidSource,
    SourceNotFound,
    UnsupportedFormat,
)
from precomputed.readers import FORMATS, SourceSpec, make_spec, open_reader
from precomputed.readers.axes import Layout, from_names, from_tifffile, parse_axes

DTYPES = ["uint8", "uint16", "uint32", "float32"]
BOXES = [((0, 0, 0), None), ((1, 2, 1), (7, 9, 4)), ((3, 0, 2), (4, 1, 3))]


def volume(shape_czyx: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> npt.NDArray[Any]:
    """A random ``[c, z, y, x]`` volume."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape_czyx).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape_czyx, endpoint=True).astype(dtype)


def in_file_order(czyx: npt.NDArray[Any], axes: str) -> npt.NDArray[Any]:
    """The volume ``[c, z, y, x]`` transposed to ``axes`` (``c`` dropped if absent)."""
    vol = czyx if "c" in axes else czyx[0]
    order = "czyx" if "c" in axes else "zyx"
    return np.ascontiguousarray(vol.transpose([order.index(a) for a in axes]))


def check_boxes(source: str | list[str], czyx: npt.NDArray[Any], **options: Any) -> Any:
    """Open ``source`` and compare several boxes (and the whole volume) with ``czyx``."""
    reader = open_reader(make_spec(source, **options))
    c, z, y, x = czyx.shape
    assert reader.shape == (x, y, z)
    assert reader.channels == c
    assert reader.dtype == czyx.dtype
    for box_start, box_stop in BOXES:
        start = tuple(min(b, n - 1) for b, n in zip(box_start, (x, y, z)))
        stop = tuple(
            max(b + 1, min(e, n)) for b, e, n in zip(start, box_stop or (x, y, z), (x, y, z))
        )
        block = reader.read(start, stop)
        expected = czyx[:, start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
        assert block.flags.c_contiguous and block.flags.writeable
        np.testing.assert_array_equal(block, expected)
    reader.close()
    return reader


def write_stack(
    folder: Path, czyx: npt.NDArray[Any], name: str = "z{:04d}.tif", **kwargs: Any
) -> list[str]:
    """One 2-D TIFF per z slice; channels become RGB samples (``YXS``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z in range(czyx.shape[1]):
        plane = czyx[0, z] if czyx.shape[0] == 1 else np.moveaxis(czyx[:, z], 0, -1)
        paths.append(str(folder / name.format(z)))
        options = dict(kwargs)
        if czyx.shape[0] not in (1, 3, 4):
            # tifffile writes a (y, x, 2) array as two pages unless told the last axis is samples
            options.setdefault("photometric", "minisblack")
            options.setdefault("planarconfig", "contig")
        tifffile.imwrite(paths[-1], plane, **options)
    return paths


# -- axes ------------------------------------------------------------------


@pytest.mark.parametrize("axes", ["zyx", "czyx", "zcyx", "xyz", "ZYX", "tzyx", "yxzc"])
def test_parse_axes_accepts(axes: str) -> None:
    assert parse_axes(axes) == axes.lower()


@pytest.mark.parametrize("axes", ["zy", "zyxx", "zyq", "cyx", "", "z y x", "zyxct c"])
def test_parse_axes_rejects(axes: str) -> None:
    with pytest.raises(InvalidAxes) as info:
        parse_axes(axes)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("tiff", "ours"),
    [
        ("ZYX", "zyx"),
        ("ZCYX", "zcyx"),
        ("TZCYX", "tzcyx"),
        ("CZYX", "czyx"),
        ("YXS", "yxc"),
        ("QYX", None),
        ("IYX", None),
        ("CYXS", None),
    ],
)
def test_from_tifffile(tiff: str, ours: str | None) -> None:
    assert from_tifffile(tiff) == ours


def test_from_names() -> None:
    assert from_names(["Z", "y", "x"]) == "zyx"
    assert from_names(["channel", "z", "y", "x"]) == "czyx"
    assert from_names(["z", "y", "lambda"]) is None


def test_layout_index_and_transpose() -> None:
    layout = Layout("xcyz", (5, 2, 4, 3))
    assert layout.shape_xyz == (5, 4, 3) and layout.channels == 2
    assert layout.index((1, 2, 0), (3, 4, 2)) == (
        slice(1, 3),
        slice(None),
        slice(2, 4),
        slice(0, 2),
    )
    block = np.zeros((2, 2, 2, 2))
    block[1, 0, 1, 0] = 7  # x=1, c=0, y=1, z=0
    out = layout.to_czyx(block)
    assert out.shape == (2, 2, 2, 2) and out[0, 0, 1, 1] == 7
    with pytest.raises(ValueError, match="not inside"):
        layout.check_box((0, 0, 0), (6, 1, 1))


# -- TIFF stacks -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_stack_folder_glob_and_list(tmp_path: Path, dtype: str) -> None:
    czyx = volume((1, 5, 11, 9), dtype)
    paths = write_stack(tmp_path / "s", czyx)
    reader = check_boxes(str(tmp_path / "s"), czyx)
    assert reader.format == "tiff-stack" and reader.axes.value == "zyx"
    check_boxes(str(tmp_path / "s" / "z*.tif"), czyx)
    check_boxes(list(reversed(paths)), czyx)


def test_stack_natural_sort(tmp_path: Path) -> None:
    czyx = volume((1, 12, 4, 5), "uint8")
    write_stack(tmp_path, czyx, name="slice_z{}.tif")
    spec = make_spec(str(tmp_path))
    names = [os.path.basename(p) for p in spec.paths]
    assert names.index("slice_z2.tif") < names.index("slice_z10.tif")
    check_boxes(str(tmp_path), czyx)


@pytest.mark.parametrize("planar", [False, True])
def test_stack_rgb_slices_become_channels(tmp_path: Path, planar: bool) -> None:
    czyx = volume((3, 4, 10, 8), "uint8")
    for z in range(4):
        plane = czyx[:, z] if planar else np.moveaxis(czyx[:, z], 0, -1)
        config = "separate" if planar else "contig"
        tifffile.imwrite(tmp_path / f"z{z}.tif", plane, photometric="rgb", planarconfig=config)
    reader = check_boxes(str(tmp_path), czyx)
    assert reader.axes.value == ("zcyx" if planar else "zyxc")


def test_stack_compressed_slices(tmp_path: Path) -> None:
    czyx = volume((1, 6, 40, 33), "uint16")
    write_stack(tmp_path, czyx, compression="zlib", tile=(16, 16))
    check_boxes(str(tmp_path), czyx)


def test_stack_mixed_shapes_names_file(tmp_path: Path) -> None:
    write_stack(tmp_path, volume((1, 3, 8, 8), "uint8"))
    tifffile.imwrite(tmp_path / "z0003.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(InvalidSource, match=r"z0003\.tif.*\(8, 9\)"):
        open_reader(make_spec(str(tmp_path)))


def test_stack_mixed_dtypes_names_file(tmp_path: Path) -> None:
    write_stack(tmp_path, volume((1, 3, 8, 8), "uint8"))
    tifffile.imwrite(tmp_path / "z0001.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(InvalidSource, match=r"z0001\.tif is \(8, 8\) uint16"):
        open_reader(make_spec(str(tmp_path)))


def test_stack_corrupt_slice_names_file(tmp_path: Path) -> None:
    write_stack(tmp_path, volume((1, 3, 8, 8), "uint8"))
    (tmp_path / "z0001.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(InvalidSource, match=r"z0001\.tif"):
        open_reader(make_spec(str(tmp_path)))


def test_stack_truncated_slice_names_file(tmp_path: Path) -> None:
    paths = write_stack(tmp_path, volume((1, 3, 64, 64), "uint8"))
    data = Path(paths[2]).read_bytes()
    Path(paths[2]).write_bytes(data[: len(data) - 100])
    with pytest.raises(InvalidSource, match=r"z0002\.tif.*truncated"):
        open_reader(make_spec(str(tmp_path)))


def test_stack_corrupt_compressed_data_names_file(tmp_path: Path) -> None:
    paths = write_stack(tmp_path, volume((1, 3, 32, 32), "uint8"), compression="zlib")
    with tifffile.TiffFile(paths[1]) as tf:
        offset = tf.pages.first.dataoffsets[0]
    data = bytearray(Path(paths[1]).read_bytes())
    data[offset : offset + 40] = b"x" * 40
    Path(paths[1]).write_bytes(bytes(data))
    reader = open_reader(make_spec(str(tmp_path)))
    reader.read((0, 0, 0), (4, 4, 1))
    with pytest.raises(InvalidSource, match=r"z0001\.tif"):
        reader.read((0, 0, 0), (4, 4, 2))


def test_stack_multipage_slice_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 5, 6), np.uint8))
    with pytest.raises(InvalidSource, match="2 pages"):
        open_reader(make_spec(str(tmp_path)))


def test_stack_imagej_voxel_size_um(tmp_path: Path) -> None:
    x_um, y_um, z_um = 0.004, 0.0037, 0.04
    write_stack(
        tmp_path,
        volume((1, 3, 6, 5), "uint16"),
        imagej=True,
        resolution=(1 / x_um, 1 / y_um),
        metadata={"spacing": z_um, "unit": "um"},
    )
    reader = open_reader(make_spec(str(tmp_path)))
    assert reader.voxel_size is not None
    assert reader.voxel_size.value == (4.0, 3.7, 40.0)
    assert reader.voxel_size.source == "file"
    assert "ImageJ" in reader.voxel_size.detail and "z0000.tif" in reader.voxel_size.detail


@pytest.mark.parametrize("unit", ["micron", "\\u00B5m", "um", "nm"])
def test_imagej_unit_spellings(tmp_path: Path, unit: str) -> None:
    factor = 1.0 if unit == "nm" else 1000.0
    write_stack(
        tmp_path,
        volume((1, 2, 4, 4), "uint8"),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"spacing": 2.0, "unit": unit},
    )
    reader = open_reader(make_spec(str(tmp_path)))
    assert reader.voxel_size is not None
    assert reader.voxel_size.value == (0.5 * factor, 0.25 * factor, 2.0 * factor)


def test_imagej_without_spacing_keeps_xy_and_without_unit_has_none(tmp_path: Path) -> None:
    write_stack(
        tmp_path / "a",
        volume((1, 2, 4, 4), "uint8"),
        imagej=True,
        resolution=(2, 2),
        metadata={"unit": "um"},
    )
    write_stack(
        tmp_path / "b", volume((1, 2, 4, 4), "uint8"), imagej=True, metadata={"spacing": 3.0}
    )
    xy_only = open_reader(make_spec(str(tmp_path / "a"))).voxel_size
    assert xy_only is not None and xy_only.value == (500.0, 500.0, None)
    assert "no z spacing" in xy_only.detail
    assert open_reader(make_spec(str(tmp_path / "b"))).voxel_size is None


@pytest.mark.parametrize(
    ("unit", "pixels_per_unit", "nm"), [("CENTIMETER", 2.5e6, 4.0), ("INCH", 254000.0, 100.0)]
)
def test_tiff_resolution_tags_xy_only(
    tmp_path: Path, unit: str, pixels_per_unit: float, nm: float
) -> None:
    write_stack(
        tmp_path,
        volume((1, 2, 4, 4), "uint8"),
        resolution=(pixels_per_unit, pixels_per_unit),
        resolutionunit=unit,
    )
    reader = open_reader(make_spec(str(tmp_path)))
    # x and y are the file's; z is left for ingest to impute
    assert reader.voxel_size is not None and reader.voxel_size.value == (nm, nm, None)
    assert "XResolution/YResolution" in reader.voxel_size.detail


# -- multi-page TIFF -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_multipage_tiff(tmp_path: Path, dtype: str, compression: str | None) -> None:
    czyx = volume((1, 6, 12, 10), dtype)
    tifffile.imwrite(tmp_path / "v.tif", czyx[0], compression=compression)
    reader = check_boxes(str(tmp_path / "v.tif"), czyx)
    assert reader.format == "tiff"
    assert reader.axes.value == "zyx"


def test_compressed_multipage_decodes_only_needed_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    czyx = volume((1, 10, 16, 16), "uint16")
    tifffile.imwrite(tmp_path / "v.tif", czyx[0], compression="zlib")
    reader = open_reader(make_spec(str(tmp_path / "v.tif")))
    decoded: list[int] = []
    original = tifffile.TiffPage.asarray

    def counting(page: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(page.index)
        return original(page, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", counting)
    monkeypatch.setattr(tifffile.TiffFrame, "asarray", counting, raising=False)
    np.testing.assert_array_equal(reader.read((2, 3, 4), (9, 8, 6))[0], czyx[0, 4:6, 3:8, 2:9])
    assert sorted(decoded) == [4, 5]
    reader.read((0, 0, 4), (16, 16, 6))  # cached: no new decode
    assert sorted(decoded) == [4, 5]


def test_single_page_tiff_is_one_slice(tmp_path: Path) -> None:
    czyx = volume((1, 1, 12, 10), "uint16")
    tifffile.imwrite(tmp_path / "v.tif", czyx[0, 0])
    check_boxes(str(tmp_path / "v.tif"), czyx)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_hyperstack_zcyx(tmp_path: Path, compression: str | None) -> None:
    czyx = volume((3, 5, 12, 10), "uint16")
    tifffile.imwrite(
        tmp_path / "h.tif",
        in_file_order(czyx, "zcyx"),
        imagej=True,
        compression=compression,
        resolution=(1 / 0.1, 1 / 0.1),
        metadata={"axes": "ZCYX", "spacing": 0.3, "unit": "micron"},
    )
    reader = check_boxes(str(tmp_path / "h.tif"), czyx)
    assert reader.format == "imagej-tiff"
    assert (reader.axes.value, reader.axes.source, reader.axes.detail) == (
        "zcyx",
        "file",
        "ImageJ axes ZCYX",
    )
    assert reader.voxel_size is not None and reader.voxel_size.value == (100.0, 100.0, 300.0)


def test_multipage_rgb(tmp_path: Path) -> None:
    czyx = volume((3, 4, 12, 10), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", in_file_order(czyx, "zyxc"), photometric="rgb")
    reader = check_boxes(str(tmp_path / "rgb.tif"), czyx)
    assert reader.axes.source == "default"


@pytest.mark.parametrize("axes", ["CZYX", "ZCYX"])
def test_ome_tiff_axes_and_units(tmp_path: Path, axes: str) -> None:
    czyx = volume((2, 4, 12, 10), "uint16")
    meta = {
        "axes": axes,
        "PhysicalSizeX": 4,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 5,
        "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.04,
        "PhysicalSizeZUnit": "µm",
    }
    tifffile.imwrite(
        tmp_path / "v.ome.tif", in_file_order(czyx, axes.lower()), ome=True, metadata=meta
    )
    reader = check_boxes(str(tmp_path / "v.ome.tif"), czyx)
    assert reader.format == "ome-tiff"
    assert reader.axes.value == axes.lower() and reader.axes.detail.startswith(
        "OME-XML DimensionOrder XY"
    )
    assert reader.voxel_size is not None and reader.voxel_size.value == (4.0, 5.0, 40.0)


def test_ome_tiff_default_unit_is_micrometre(tmp_path: Path) -> None:
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5}
    tifffile.imwrite(
        tmp_path / "v.ome.tiff", np.zeros((2, 5, 6), np.uint8), ome=True, metadata=meta
    )
    reader = open_reader(make_spec(str(tmp_path / "v.ome.tiff")))
    assert reader.voxel_size is not None and reader.voxel_size.value == (250.0, 250.0, 1500.0)


def test_ome_tiff_without_z_size_keeps_xy(tmp_path: Path) -> None:
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5}
    tifffile.imwrite(tmp_path / "v.ome.tif", np.zeros((2, 5, 6), np.uint8), ome=True, metadata=meta)
    found = open_reader(make_spec(str(tmp_path / "v.ome.tif"))).voxel_size
    assert found is not None and found.value == (250.0, 500.0, None)
    assert found.detail == "OME-XML PhysicalSizeX/Y = 0.25/0.5 µm/µm"


def test_user_axes_override_file_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    czyx = volume((3, 5, 8, 6), "uint8")
    tifffile.imwrite(
        tmp_path / "h.tif", in_file_order(czyx, "czyx"), imagej=True, metadata={"axes": "ZCYX"}
    )
    # The file claims ZCYX, but the data is really czyx; the user knows better.
    with caplog.at_level(logging.WARNING):
        reader = check_boxes(str(tmp_path / "h.tif"), czyx, axes="czyx")
    assert reader.axes.source == "user"
    assert "overrides" in reader.axes.detail and "ZCYX" in reader.axes.detail
    assert "overrides the file's axes" in caplog.text


# -- HDF5 ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axes", ["zyx", "xyz", "czyx", "zcyx"])
def test_hdf5_axes_attribute(tmp_path: Path, dtype: str, axes: str) -> None:
    czyx = volume((2 if "c" in axes else 1, 5, 11, 9), dtype)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        ds = f.create_dataset(
            "raw", data=in_file_order(czyx, axes), chunks=True, compression="gzip"
        )
        ds.attrs["axes"] = axes
    reader = check_boxes(str(tmp_path / "v.h5"), czyx)
    assert (reader.axes.value, reader.axes.source) == (axes, "file")


def test_hdf5_dimension_labels(tmp_path: Path) -> None:
    czyx = volume((2, 4, 6, 5), "uint16")
    with h5py.File(tmp_path / "v.hdf5", "w") as f:
        ds = f.create_dataset("v", data=in_file_order(czyx, "zcyx"))
        for dim, label in zip(ds.dims, "zcyx"):
            dim.label = label
    reader = check_boxes(str(tmp_path / "v.hdf5"), czyx)
    assert "DIMENSION_LABELS" in reader.axes.detail


def test_hdf5_without_axes_defaults_to_zyx(tmp_path: Path) -> None:
    czyx = volume((1, 4, 6, 5), "float32")
    with h5py.File(tmp_path / "v.hdf", "w") as f:
        f["v"] = czyx[0]
    reader = check_boxes(str(tmp_path / "v.hdf"), czyx)
    assert reader.axes == type(reader.axes)("zyx", "default", "no axis metadata; assumed zyx")
    assert reader.voxel_size is None


def test_hdf5_several_datasets_need_a_key(tmp_path: Path) -> None:
    czyx = volume((1, 4, 6, 5), "uint8")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["volumes/raw"] = czyx[0]
        f["volumes/labels"] = np.zeros((4, 6, 5), np.uint32)
    with pytest.raises(
        InvalidSource, match="volumes/labels.*volumes/raw|volumes/raw.*volumes/labels"
    ):
        open_reader(make_spec(str(tmp_path / "v.h5")))
    check_boxes(str(tmp_path / "v.h5"), czyx, dataset_key="volumes/raw")
    with pytest.raises(InvalidSource, match="no dataset 'nope'"):
        open_reader(make_spec(str(tmp_path / "v.h5"), dataset_key="nope"))


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"element_size_um": [0.04, 0.004, 0.005]}, (5.0, 4.0, 40.0)),
        ({"resolution": [40.0, 4.0, 4.0]}, (4.0, 4.0, 40.0)),
        ({"resolution": [0.04, 0.004, 0.004], "unit": "um"}, (4.0, 4.0, 40.0)),
        ({"resolution": [0.04, 0.004, 0.004], "units": b"micrometer"}, (4.0, 4.0, 40.0)),
        ({"element_size_um": [1.0, 0.04, 0.004, 0.005], "axes": "czyx"}, (5.0, 4.0, 40.0)),
    ],
)
def test_hdf5_voxel_size(
    tmp_path: Path, attrs: dict[str, Any], expected: tuple[float, ...]
) -> None:
    shape = (2, 3, 4, 4) if "axes" in attrs else (3, 4, 4)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        ds = f.create_dataset("v", data=np.zeros(shape, np.uint8))
        ds.attrs.update(attrs)
    reader = open_reader(make_spec(str(tmp_path / "v.h5")))
    assert reader.voxel_size is not None
    assert reader.voxel_size.value == expected and reader.voxel_size.source == "file"


# -- NumPy -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [*DTYPES, "int16", "float64", ">u2"])
@pytest.mark.parametrize("axes", [None, "zyx", "xyz", "yzx", "czyx", "zcyx", "xyzc"])
def test_npy_axes(tmp_path: Path, dtype: str, axes: str | None) -> None:
    czyx = volume(
        (3 if axes and "c" in axes else 1, 5, 11, 9), np.dtype(dtype).newbyteorder("=").name
    )
    np.save(tmp_path / "v.npy", in_file_order(czyx, axes or "zyx").astype(dtype))
    reader = check_boxes(str(tmp_path / "v.npy"), czyx, axes=axes)
    assert reader.axes.source == ("user" if axes else "default")
    assert reader.voxel_size is None


def test_npy_time_axis_of_size_one_is_squeezed(tmp_path: Path) -> None:
    czyx = volume((1, 4, 5, 6), "uint8")
    np.save(tmp_path / "v.npy", czyx[0][np.newaxis])
    reader = check_boxes(str(tmp_path / "v.npy"), czyx, axes="tzyx")
    assert reader.axes.value == "zyx"
    np.save(tmp_path / "w.npy", np.zeros((2, 4, 5, 6), np.uint8))
    with pytest.raises(InvalidSource, match="time axis of size 2"):
        open_reader(make_spec(str(tmp_path / "w.npy"), axes="tzyx"))


def test_axes_length_mismatch_names_both(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(
        InvalidAxes,
        match=r"'zyx' has 3 letters but the array has 4 dimensions \(shape \(2, 3, 4, 5\)\)",
    ):
        open_reader(make_spec(str(tmp_path / "v.npy"), axes="zyx"))


def test_four_dims_without_axes_asks_for_axes(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InvalidAxes, match="pass --axes"):
        open_reader(make_spec(str(tmp_path / "v.npy")))


def test_too_many_dims_is_invalid_source(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 2, 3, 4, 5), np.uint8))
    with pytest.raises(InvalidSource):
        open_reader(make_spec(str(tmp_path / "v.npy")))
    with pytest.raises(InvalidSource):
        open_reader(make_spec(str(tmp_path / "v.npy"), axes="tczyx"))


@pytest.mark.parametrize("dtype", ["complex64", "bool", [("a", "u1"), ("b", "f4")]])
def test_unsupported_dtypes(tmp_path: Path, dtype: Any) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), dtype))
    with pytest.raises(InvalidSource, match="unsupported dtype"):
        open_reader(make_spec(str(tmp_path / "v.npy")))


def test_corrupt_npy(tmp_path: Path) -> None:
    (tmp_path / "v.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InvalidSource, match="v.npy"):
        open_reader(make_spec(str(tmp_path / "v.npy")))


# -- Zarr ------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zarr_array(tmp_path: Path, zarr_format: Literal[2, 3], dtype: str) -> None:
    czyx = volume((1, 6, 10, 9), dtype)
    arr = zarr.create_array(
        tmp_path / "v.zarr",
        shape=czyx.shape[1:],
        chunks=(2, 4, 4),
        dtype=dtype,
        zarr_format=zarr_format,
    )
    arr[...] = czyx[0]
    reader = check_boxes(str(tmp_path / "v.zarr"), czyx)
    assert reader.format == "zarr"


def test_zarr_v3_dimension_names(tmp_path: Path) -> None:
    czyx = volume((2, 4, 6, 5), "uint16")
    arr = zarr.create_array(
        tmp_path / "v.zarr",
        shape=(6, 2, 5, 4),
        chunks=(3, 1, 3, 3),
        dtype="uint16",
        dimension_names=["y", "c", "x", "z"],
    )
    arr[...] = in_file_order(czyx, "ycxz")
    reader = check_boxes(str(tmp_path / "v.zarr"), czyx)
    assert (reader.axes.value, reader.axes.source) == ("ycxz", "file")


def test_zarr_group_needs_key(tmp_path: Path) -> None:
    czyx = volume((1, 4, 6, 5), "uint8")
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("raw", shape=(4, 6, 5), dtype="uint8")[...] = czyx[0]
    group.create_array("labels", shape=(4, 6, 5), dtype="uint32")
    with pytest.raises(InvalidSource, match="labels.*raw|raw.*labels"):
        open_reader(make_spec(str(tmp_path / "g.zarr")))
    check_boxes(str(tmp_path / "g.zarr"), czyx, dataset_key="raw")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_axes_and_micrometer_scale(tmp_path: Path, version: str) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    czyx = volume((2, 8, 16, 12), "uint16")
    group = zarr.open_group(
        tmp_path / "img.zarr", mode="w", zarr_format=2 if version == "0.4" else 3
    )
    write_image(
        czyx,
        group,
        axes="czyx",
        scale={"c": 1.0, "z": 0.04, "y": 0.004, "x": 0.005},
        axes_units={a: "micrometer" for a in "zyx"},
        scale_factors=[2],
        fmt=fmt,
    )
    reader = check_boxes(str(tmp_path / "img.zarr"), czyx)
    assert reader.format == "ome-zarr"
    assert (reader.axes.value, reader.axes.source) == ("czyx", "file")
    assert version in reader.axes.detail
    assert reader.voxel_size is not None and reader.voxel_size.value == (5.0, 4.0, 40.0)


def test_ome_zarr_scale_without_units_is_unknown(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "img.zarr", mode="w", zarr_format=2)
    group.create_array("0", shape=(2, 3, 4), dtype="uint8")
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space"} for a in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [40, 4, 4]}]}
            ],
        }
    ]
    reader = open_reader(make_spec(str(tmp_path / "img.zarr")))
    assert reader.voxel_size is None and reader.axes.value == "zyx"


# -- make_spec -------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="nope.tif"):
        make_spec(str(tmp_path / "nope.tif"))
    with pytest.raises(SourceNotFound):
        make_spec(str(tmp_path / "none*.tif"))
    with pytest.raises(SourceNotFound):
        make_spec([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")])


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("1,2,3")
    with pytest.raises(UnsupportedFormat, match=r"v\.csv.*supported: .*\.h5"):
        make_spec(str(tmp_path / "v.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedFormat, match="empty"):
        make_spec(str(tmp_path / "empty"))
    with pytest.raises(InvalidOption, match="unknown format 'jpeg'"):
        make_spec(str(tmp_path / "v.csv"), format="jpeg")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("v.tif", "tiff"),
        ("v.TIFF", "tiff"),
        ("v.ome.tif", "tiff"),
        ("v.h5", "hdf5"),
        ("v.hdf5", "hdf5"),
        ("v.hdf", "hdf5"),
        ("v.npy", "npy"),
    ],
)
def test_format_detection(tmp_path: Path, name: str, fmt: str) -> None:
    (tmp_path / name).write_bytes(b"")
    spec = make_spec(str(tmp_path / name))
    assert spec == SourceSpec((str(tmp_path / name),), fmt)
    assert fmt in FORMATS


def test_bad_axes_rejected_by_make_spec(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InvalidAxes, match="'zyq'"):
        make_spec(str(tmp_path / "v.npy"), axes="zyq")


def test_format_override(tmp_path: Path) -> None:
    czyx = volume((1, 3, 4, 5), "uint8")
    np.save(tmp_path / "v.dat", czyx[0])
    os.replace(tmp_path / "v.dat.npy", tmp_path / "v.dat")
    check_boxes(str(tmp_path / "v.dat"), czyx, format="npy")


# -- properties ------------------------------------------------------------


@st.composite
def arrays_and_boxes(
    draw: st.DrawFn,
) -> tuple[npt.NDArray[Any], str, list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    axes = "".join(draw(st.permutations(draw(st.sampled_from(["zyx", "czyx"])))))
    sizes = {a: draw(st.integers(1, 3 if a == "c" else 7)) for a in axes}
    dtype = draw(st.sampled_from(DTYPES))
    czyx = volume(tuple(sizes.get(a, 1) for a in "czyx"), dtype, seed=draw(st.integers(0, 2**16)))
    boxes = []
    for _ in range(3):
        bounds = [
            sorted(draw(st.lists(st.integers(0, sizes[a]), min_size=2, max_size=2, unique=True)))
            for a in "xyz"
        ]
        boxes.append((tuple(b[0] for b in bounds), tuple(b[1] for b in bounds)))
    return czyx, axes, boxes


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=arrays_and_boxes())
def test_random_boxes_read_back_equal(tmp_path_factory: pytest.TempPathFactory, case: Any) -> None:
    czyx, axes, boxes = case
    folder = tmp_path_factory.mktemp("prop")
    np.save(folder / "v.npy", in_file_order(czyx, axes))
    with h5py.File(folder / "v.h5", "w") as f:
        f.create_dataset("v", data=in_file_order(czyx, axes), chunks=True).attrs["axes"] = axes
    sources = [(str(folder / "v.npy"), {"axes": axes}), (str(folder / "v.h5"), {})]
    if axes in ("zyx", "czyx"):
        write_stack(folder / "stack", czyx)
        sources.append((str(folder / "stack"), {}))
    for source, options in sources:
        with open_reader(make_spec(source, **options)) as reader:
            for start, stop in boxes:
                expected = czyx[:, start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
                np.testing.assert_array_equal(reader.read(start, stop), expected)


# -- HDF5 inputs that h5py alone describes poorly ---------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\), not an HDF5 file"),
        (b"II*\x00" + b"\x00" * 200, r"is not an HDF5 file \(no HDF5 signature in its 204 bytes\)"),
    ],
)
def test_hdf5_not_an_hdf5_file_says_so(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "v.h5").write_bytes(content)
    with pytest.raises(InvalidSource, match=message) as info:
        open_reader(make_spec(str(tmp_path / "v.h5")))
    assert "synchronously" not in str(info.value)  # h5py's wording stays out


def test_hdf5_truncated_file_names_the_missing_bytes(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["v"] = volume((1, 8, 32, 32), "uint16")[0]
    data = (tmp_path / "v.h5").read_bytes()
    (tmp_path / "v.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSource, match=rf"truncated HDF5 file: {len(data) // 2} of its {len(data)} bytes"):
        open_reader(make_spec(str(tmp_path / "v.h5")))


def test_hdf5_key_that_is_a_group_lists_its_datasets(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["volumes/raw"] = np.zeros((2, 3, 4), np.uint8)
        f["other"] = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(InvalidSource, match=r"'volumes' is a group, not a dataset; datasets in it: volumes/raw$"):
        open_reader(make_spec(str(tmp_path / "v.h5"), dataset_key="volumes"))


def test_hdf5_dangling_links_are_named(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = np.zeros((2, 3, 4), np.uint8)
        f["ext"] = h5py.ExternalLink("elsewhere.h5", "/data")
        f["soft"] = h5py.SoftLink("/gone")
    with pytest.raises(InvalidSource, match=r"'ext' is an external link to elsewhere.h5:/data, which cannot be opened"):
        open_reader(make_spec(str(tmp_path / "v.h5"), dataset_key="ext"))
    with pytest.raises(InvalidSource, match=r"'soft' is a soft link to /gone, which does not exist"):
        open_reader(make_spec(str(tmp_path / "v.h5"), dataset_key="soft"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.uint8(3), r"dataset 'd' of shape \(\) is 0-D; an image needs at least y and x"),
        (np.arange(5, dtype=np.uint8), r"dataset 'd' of shape \(5,\) is 1-D; an image needs at least y and x"),
        (h5py.Empty("f4"), r"dataset 'd' is empty \(it has no dataspace\)"),
        (np.zeros((0, 3, 4), np.uint8), r"array of shape \(0, 3, 4\) is empty"),
    ],
)
def test_hdf5_datasets_that_are_no_image(tmp_path: Path, data: Any, message: str) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["d"] = data
    with pytest.raises(InvalidSource, match=message):
        open_reader(make_spec(str(tmp_path / "v.h5")))


def test_hdf5_filter_this_install_lacks_is_named_before_reading(tmp_path: Path) -> None:
    if h5py.h5z.filter_avail(32001):
        pytest.skip("the blosc filter is installed here")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = f.create_dataset("d", shape=(4, 4, 4), dtype="u1", chunks=(2, 2, 2), compression=32001, allow_unknown_filter=True)
        d.id.write_direct_chunk((0, 0, 0), b"\0" * 8)
    with pytest.raises(InvalidSource, match=r"HDF5 filter 32001 \(blosc\), which this installation cannot decode; install it with: pip install hdf5plugin"):
        open_reader(make_spec(str(tmp_path / "v.h5")))


def test_hdf5_corrupt_chunk_is_a_clear_read_error(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = f.create_dataset("d", shape=(4, 4, 4), dtype="u1", chunks=(4, 4, 4), compression="gzip")
        d.id.write_direct_chunk((0, 0, 0), b"not deflate data")
    with open_reader(make_spec(str(tmp_path / "v.h5"))) as reader:
        with pytest.raises(InvalidSource, match=r"at box \(0, 0, 0\)..\(4, 4, 4\) \(x, y, z\): a chunk cannot be decoded") as info:
            reader.read((0, 0, 0), (4, 4, 4))
    assert "synchronously" not in str(info.value)


def test_hdf5_2d_element_size_gives_x_and_y(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["d"] = np.zeros((5, 6), np.uint8)
        f["d"].attrs["element_size_um"] = [0.2, 0.1]  # y, x
    reader = open_reader(make_spec(str(tmp_path / "v.h5")))
    assert reader.voxel_size is not None and reader.voxel_size.value == (100.0, 200.0, None)


# -- multi-series TIFF -----------------------------------------------------


def _two_series(path: Path) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    first, second = volume((1, 3, 5, 6), "uint8")[0], volume((1, 2, 4, 7), "uint16", seed=1)[0]
    with tifffile.TiffWriter(path, ome=True) as w:
        w.write(first, metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 1})
        w.write(second, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2})
    return first, second


def test_multi_series_ome_tiff_is_refused_with_the_list(tmp_path: Path) -> None:
    _two_series(tmp_path / "m.ome.tif")
    with pytest.raises(InvalidSource) as info:
        open_reader(make_spec(str(tmp_path / "m.ome.tif")))
    text = str(info.value)
    assert "holds 2 image series; choose one with --series N" in text
    assert "0: shape (3, 5, 6) axes ZYX uint8 'Image0'; 1: shape (2, 4, 7) axes ZYX uint16 'Image1'" in text


def test_series_picks_one_with_its_own_metadata(tmp_path: Path) -> None:
    _, second = _two_series(tmp_path / "m.ome.tif")
    reader = check_boxes(str(tmp_path / "m.ome.tif"), second[None], series=1)
    assert reader.voxel_size is not None and reader.voxel_size.value == (300.0, 300.0, 2000.0)
    assert "of series 1 (2 in the file)" in reader.axes.detail


def test_series_out_of_range_or_on_other_formats(tmp_path: Path) -> None:
    _two_series(tmp_path / "m.ome.tif")
    with pytest.raises(InvalidOption, match=r"--series 2 is out of range: .* holds 2 series \(0 to 1\)"):
        open_reader(make_spec(str(tmp_path / "m.ome.tif"), series=2))
    with pytest.raises(InvalidOption, match="non-negative integer"):
        make_spec(str(tmp_path / "m.ome.tif"), series=-1)
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InvalidOption, match="--series picks an image series of one TIFF"):
        make_spec(str(tmp_path / "v.npy"), series=0)


# -- time series -----------------------------------------------------------


def test_time_series_is_refused_naming_timepoint(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros((3, 2, 5, 6), np.uint8), ome=True, metadata={"axes": "TZYX"})
    with pytest.raises(InvalidSource, match=r"time axis of size 3 .* choose one with --timepoint T \(0 to 2\)"):
        open_reader(make_spec(str(tmp_path / "t.ome.tif")))


@pytest.mark.parametrize("fmt", ["ome-tiff", "hdf5", "npy", "zarr"])
def test_timepoint_reads_that_timepoint(tmp_path: Path, fmt: str) -> None:
    tczyx = np.stack([volume((2, 3, 5, 4), "uint16", seed=t) for t in range(3)])
    data = tczyx.transpose(0, 2, 1, 3, 4)  # t z c y x
    options: dict[str, Any] = {"timepoint": 1}
    if fmt == "ome-tiff":
        source = tmp_path / "t.ome.tif"
        tifffile.imwrite(source, data, ome=True, photometric="minisblack", metadata={"axes": "TZCYX"})
    elif fmt == "hdf5":
        source = tmp_path / "t.h5"
        with h5py.File(source, "w") as f:
            f["d"] = data
            f["d"].attrs["axes"] = "tzcyx"
    elif fmt == "npy":
        source = tmp_path / "t.npy"
        np.save(source, data)
        options["axes"] = "tzcyx"
    else:
        source = tmp_path / "t.zarr"
        arr = zarr.create_array(source, shape=data.shape, chunks=(1, 2, 1, 3, 3), dtype="uint16", dimension_names=list("tzcyx"))
        arr[...] = data
    reader = check_boxes(str(source), tczyx[1], **options)
    assert "--timepoint 1 of 3" in reader.axes.detail


def test_timepoint_out_of_range_or_without_time_axis(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.zeros((3, 2, 5, 6), np.uint8))
    with pytest.raises(InvalidOption, match=r"--timepoint 3 is out of range: the time axis has 3 timepoint\(s\), 0 to 2"):
        open_reader(make_spec(str(tmp_path / "t.npy"), axes="tzyx", timepoint=3))
    np.save(tmp_path / "v.npy", np.zeros((2, 5, 6), np.uint8))
    with pytest.raises(InvalidOption, match="--timepoint 0: the array .* has no time axis"):
        open_reader(make_spec(str(tmp_path / "v.npy"), timepoint=0))


# -- OME-Zarr origin -------------------------------------------------------


def _translated_ome_zarr(path: Path, translation: list[float]) -> npt.NDArray[Any]:
    zyx = volume((1, 4, 6, 5), "uint8")[0]
    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("0", shape=zyx.shape, dtype="uint8")[...] = zyx
    transforms = [{"type": "scale", "scale": [1.0, 0.5, 0.5]}, {"type": "translation", "translation": translation}]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
            "datasets": [{"path": "0", "coordinateTransformations": transforms}],
        }
    ]
    return zyx


def test_ome_zarr_translation_is_refused_naming_it(tmp_path: Path) -> None:
    _translated_ome_zarr(tmp_path / "img.zarr", [10.0, 0.0, 2.5])
    with pytest.raises(InvalidSource, match=r"OME-Zarr dataset '0' translation \(z=10 micrometer, y=0 micrometer, x=2.5 micrometer\).*pass --drop-origin"):
        open_reader(make_spec(str(tmp_path / "img.zarr")))


def test_ome_zarr_drop_origin_reads_and_records(tmp_path: Path) -> None:
    zyx = _translated_ome_zarr(tmp_path / "img.zarr", [10.0, 0.0, 2.5])
    reader = check_boxes(str(tmp_path / "img.zarr"), zyx[None], drop_origin=True)
    assert reader.origin is not None and reader.origin.source == "user"
    assert reader.origin.detail.startswith("--drop-origin: OME-Zarr dataset '0' translation (z=10")


def test_ome_zarr_zero_translation_is_fine(tmp_path: Path) -> None:
    zyx = _translated_ome_zarr(tmp_path / "img.zarr", [0.0, 0.0, 0.0])
    assert check_boxes(str(tmp_path / "img.zarr"), zyx[None]).origin is None


def test_drop_origin_on_other_formats_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InvalidOption, match="--drop-origin applies to OME-Zarr images; this source is npy"):
        make_spec(str(tmp_path / "v.npy"), drop_origin=True)
