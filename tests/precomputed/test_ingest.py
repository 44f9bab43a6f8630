"""Ingest end to end: every reader, both stores, the pyramid and the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import tifffile
import zarr

from precomputed.catalog import Catalog, record_errors
from precomputed.errors import InvalidSource
from precomputed.ingest import IngestOptions, ingest
from precomputed.omezarr import validate_image
from precomputed.synthetic import make_em_volume, write_tiff_stack

from .stores import assert_stores_equal_source

SHAPE_ZYX = (21, 90, 140)  # odd z, non-chunk-multiple x/y: exercises partial edge chunks


def _volume(dtype: Any, shape_zyx: tuple[int, ...] = SHAPE_ZYX, seed: int = 0) -> npt.NDArray[Any]:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(100.0, 20.0, size=shape_zyx).astype(dtype)
    hi = min(np.iinfo(dtype).max, 70000)
    return rng.integers(0, hi, size=shape_zyx, endpoint=True).astype(dtype)


def _options(**kw: Any) -> IngestOptions:
    kw.setdefault("chunk_size", (32, 32, 32))
    kw.setdefault("progress", False)
    kw.setdefault("workers", 2)
    return IngestOptions(**kw)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32])
def test_npy_every_dtype(tmp_path: Path, root: Path, dtype: Any) -> None:
    vol = _volume(dtype)
    np.save(tmp_path / "v.npy", vol)
    record = ingest(tmp_path / "v.npy", root, "v", _options(voxel_size=(4, 4, 30)))
    assert record_errors(record) == []
    assert record["shape"] == [140, 90, 21] and record["dtype"] == np.dtype(dtype).name
    assert record["provenance"]["voxel_size"]["source"] == "user"
    assert record["provenance"]["axes"]["source"] == "default"
    assert_stores_equal_source(root, record, vol[None])
    validate_image(str(root / record["stores"]["zarr"]))
    assert Catalog(root).get("v") == record


def test_tiff_stack_reads_voxel_size_from_tags(tmp_path: Path, root: Path) -> None:
    synth = make_em_volume((100, 70, 12), voxel_size=(8, 8, 40), seed=3)
    write_tiff_stack(tmp_path / "stack", synth.image, (8, 8, 40))
    record = ingest(tmp_path / "stack", root, "em", _options())
    assert record["voxel_size"] == [8.0, 8.0, 40.0]
    assert record["provenance"]["voxel_size"]["source"] == "file"
    assert record["source"]["format"] == "tiff-stack" and len(record["source"]["paths"]) == 12
    assert_stores_equal_source(root, record, synth.image[None])
    # the statistics are the source's own
    assert record["stats"]["min"] == synth.image.min() and record["stats"]["max"] == synth.image.max()
    assert record["stats"]["mean"] == pytest.approx(synth.image.mean())
    assert record["stats"]["std"] == pytest.approx(synth.image.std())
    for p in ("0.5", "1", "99", "99.5"):
        assert record["stats"]["percentiles"][p] == pytest.approx(np.percentile(synth.image, float(p), method="inverted_cdf"), abs=1)
    assert sum(record["stats"]["histogram"]["counts"]) == synth.image.size


def test_imagej_hyperstack_multichannel(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint16, (9, 2, 40, 50))  # Z C Y X as ImageJ stores it
    tifffile.imwrite(tmp_path / "h.tif", vol, imagej=True, resolution=(1 / 0.1, 1 / 0.1), metadata={"axes": "ZCYX", "spacing": 0.3, "unit": "um"})
    record = ingest(tmp_path / "h.tif", root, "h", _options())
    assert record["channels"] == 2 and record["shape"] == [50, 40, 9]
    assert record["voxel_size"] == [100.0, 100.0, 300.0]
    assert record["provenance"]["axes"]["source"] == "file"
    assert len(record["stats"]["channels"]) == 2
    assert_stores_equal_source(root, record, vol.transpose(1, 0, 2, 3))


def test_ome_tiff_physical_size_units(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint8, (7, 30, 40))
    tifffile.imwrite(tmp_path / "o.ome.tif", vol, metadata={"axes": "ZYX", "PhysicalSizeX": 5, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 5, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.05, "PhysicalSizeZUnit": "µm"})
    record = ingest(tmp_path / "o.ome.tif", root, "o", _options())
    assert record["voxel_size"] == [5.0, 5.0, 50.0]
    assert record["provenance"]["voxel_size"]["source"] == "file"
    assert_stores_equal_source(root, record, vol[None])


def test_hdf5_with_dataset_key_and_element_size(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.float32)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = f.create_dataset("volumes/raw", data=vol, chunks=(8, 32, 32))
        d.attrs["element_size_um"] = [0.04, 0.004, 0.004]  # z, y, x
        f.create_dataset("volumes/other", data=np.zeros((2, 2, 2)))
    record = ingest(tmp_path / "v.h5", root, "h5", _options(dataset_key="volumes/raw"))
    assert record["voxel_size"] == [4.0, 4.0, 40.0]
    assert record["source"]["dataset_key"] == "volumes/raw"
    assert_stores_equal_source(root, record, vol[None])


def test_ome_zarr_source_round_trips(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint16)
    np.save(tmp_path / "v.npy", vol)
    first = ingest(tmp_path / "v.npy", root, "first", _options(voxel_size=(0.006, 0.006, 0.03), unit="um"))
    assert first["voxel_size"] == [6.0, 6.0, 30.0]
    # our own OME-Zarr output is a valid source: voxel size read from its coordinateTransformations
    again = ingest(root / first["stores"]["zarr"], root, "second", _options())
    assert again["voxel_size"] == [6.0, 6.0, 30.0]
    assert again["provenance"]["voxel_size"]["source"] == "file"
    assert_stores_equal_source(root, again, vol[None])


def test_plain_zarr_array_with_user_axes(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint8, (30, 21, 40))  # stored x, z, y
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=vol.shape, chunks=(16, 16, 16), dtype=vol.dtype)
    arr[...] = vol
    record = ingest(tmp_path / "a.zarr", root, "a", _options(axes="xzy"))
    assert record["shape"] == [30, 40, 21]
    assert record["provenance"]["axes"]["source"] == "user"
    assert_stores_equal_source(root, record, vol.transpose(1, 2, 0)[None])


def test_profile_and_default_imputation(tmp_path: Path, root: Path) -> None:
    np.save(tmp_path / "v.npy", _volume(np.uint8, (4, 16, 16)))
    rec = ingest(tmp_path / "v.npy", root, "p", _options(profile="sbem"))
    assert rec["voxel_size"] == [8.0, 8.0, 25.0]
    assert rec["provenance"]["voxel_size"]["source"] == "profile"
    rec = ingest(tmp_path / "v.npy", root, "d", _options())
    assert rec["voxel_size"] == [1.0, 1.0, 1.0]
    assert rec["provenance"]["voxel_size"]["source"] == "default"


def test_user_profile_file_extends_shipped(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.json").write_text(json.dumps({"profiles": {"our-sem": {"voxel_size": [3, 3, 0.03], "unit": "um"}}}))
    monkeypatch.setenv("BLOCKIO_PROFILES", str(tmp_path / "mine.json"))
    np.save(tmp_path / "v.npy", _volume(np.uint8, (4, 16, 16)))
    rec = ingest(tmp_path / "v.npy", root, "p", _options(profile="our-sem"))
    assert rec["voxel_size"] == [3000.0, 3000.0, 30.0]
    assert "our-sem" in rec["provenance"]["voxel_size"]["detail"]


def test_user_voxel_size_beats_file_metadata(tmp_path: Path, root: Path) -> None:
    synth = make_em_volume((40, 40, 4), seed=1)
    write_tiff_stack(tmp_path / "s", synth.image, (8, 8, 40))
    rec = ingest(tmp_path / "s", root, "s", _options(voxel_size=(10, 10, 50)))
    assert rec["voxel_size"] == [10.0, 10.0, 50.0]
    assert rec["provenance"]["voxel_size"]["source"] == "user"
    assert "the file says" in rec["provenance"]["voxel_size"]["detail"]


def test_overwrite_replaces_and_keeps_created(tmp_path: Path, root: Path) -> None:
    a, b = _volume(np.uint8, seed=1), _volume(np.uint8, seed=2)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    first = ingest(tmp_path / "a.npy", root, "x", _options())
    second = ingest(tmp_path / "b.npy", root, "x", _options(overwrite=True))
    assert second["created"] == first["created"]
    assert_stores_equal_source(root, second, b[None])
    assert not (root / ".staging" / "x").exists()


def test_gzip_precomputed_chunks(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint16)
    np.save(tmp_path / "v.npy", vol)
    rec = ingest(tmp_path / "v.npy", root, "g", _options(compress="gzip"))
    assert list((root / rec["stores"]["precomputed"]).rglob("*.gz"))
    assert_stores_equal_source(root, rec, vol[None])


def test_processes_scheduler_gives_identical_stores(tmp_path: Path) -> None:
    vol = _volume(np.uint16)
    np.save(tmp_path / "v.npy", vol)
    a = ingest(tmp_path / "v.npy", tmp_path / "ra", "v", _options(scheduler="threads", task_bytes=1 << 20))
    b = ingest(tmp_path / "v.npy", tmp_path / "rb", "v", _options(scheduler="processes", task_bytes=1 << 20))
    from .test_resume import tree_digest

    assert tree_digest(tmp_path / "ra") == tree_digest(tmp_path / "rb")
    assert a["stats"] == b["stats"]


@pytest.mark.slow
def test_distributed_scheduler_gives_identical_stores(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    vol = _volume(np.uint16)
    np.save(tmp_path / "v.npy", vol)
    local = ingest(tmp_path / "v.npy", tmp_path / "ra", "v", _options(task_bytes=1 << 20))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp://", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        remote = ingest(tmp_path / "v.npy", tmp_path / "rb", "v", _options(task_bytes=1 << 20, scheduler=cluster.scheduler_address))
    from .test_resume import tree_digest

    assert tree_digest(tmp_path / "ra") == tree_digest(tmp_path / "rb")
    assert local["stats"] == remote["stats"]
    assert_stores_equal_source(tmp_path / "rb", remote, vol[None])


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from precomputed.errors import InvalidOption

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    np.save(tmp_path / "v.npy", _volume(np.uint8, (4, 8, 8)))
    with pytest.raises(InvalidOption, match="cannot reach the Dask scheduler"):
        ingest(tmp_path / "v.npy", tmp_path / "r", "v", _options(scheduler=f"tcp://127.0.0.1:{port}"))


def test_multi_series_ome_tiff_needs_series(tmp_path: Path, root: Path) -> None:
    first, second = _volume(np.uint8, (3, 20, 30)), _volume(np.uint16, (5, 24, 18), seed=1)
    with tifffile.TiffWriter(tmp_path / "m.ome.tif", ome=True) as w:
        w.write(first, metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 1})
        w.write(second, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2})
    with pytest.raises(InvalidSource, match=r"holds 2 image series; choose one with --series N: 0: shape \(3, 20, 30\)"):
        ingest(tmp_path / "m.ome.tif", root, "m", _options())
    rec = ingest(tmp_path / "m.ome.tif", root, "m", _options(series=1))
    assert record_errors(rec) == []
    assert rec["shape"] == [18, 24, 5] and rec["dtype"] == "uint16" and rec["voxel_size"] == [300.0, 300.0, 2000.0]
    assert rec["source"]["series"] == 1
    assert_stores_equal_source(root, rec, second[None])


def test_timepoint_of_a_time_series(tmp_path: Path, root: Path) -> None:
    tzyx = np.stack([_volume(np.uint16, (6, 20, 30), seed=t) for t in range(4)])
    tifffile.imwrite(tmp_path / "t.ome.tif", tzyx, ome=True, metadata={"axes": "TZYX"})
    with pytest.raises(InvalidSource, match=r"time axis of size 4 .*--timepoint T \(0 to 3\)"):
        ingest(tmp_path / "t.ome.tif", root, "t", _options())
    rec = ingest(tmp_path / "t.ome.tif", root, "t", _options(timepoint=2))
    assert rec["source"]["timepoint"] == 2 and rec["shape"] == [30, 20, 6]
    assert "--timepoint 2 of 4" in rec["provenance"]["axes"]["detail"]
    assert_stores_equal_source(root, rec, tzyx[2][None])


def test_ome_zarr_origin_is_refused_or_dropped_on_request(tmp_path: Path, root: Path) -> None:
    vol = _volume(np.uint8, (5, 20, 30))
    group = zarr.open_group(tmp_path / "img.zarr", mode="w", zarr_format=2)
    group.create_array("0", shape=vol.shape, dtype="uint8")[...] = vol
    transforms = [{"type": "scale", "scale": [0.04, 0.004, 0.004]}, {"type": "translation", "translation": [0.4, 0.0, 1.2]}]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
            "datasets": [{"path": "0", "coordinateTransformations": transforms}],
        }
    ]
    with pytest.raises(InvalidSource, match=r"translation \(z=0.4 micrometer, y=0 micrometer, x=1.2 micrometer\).*--drop-origin"):
        ingest(tmp_path / "img.zarr", root, "z", _options())
    rec = ingest(tmp_path / "img.zarr", root, "z", _options(drop_origin=True))
    assert record_errors(rec) == []
    assert rec["voxel_size"] == [4.0, 4.0, 40.0]
    assert rec["provenance"]["origin"]["source"] == "user"
    assert rec["provenance"]["origin"]["detail"].startswith("--drop-origin: OME-Zarr dataset '0' translation (z=0.4")
    assert_stores_equal_source(root, rec, vol[None])
