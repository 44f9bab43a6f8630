"""The block API against the source array, every boundary mode and every bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockio.errors import (
    ChunkError,
    DatasetNotFound,
    DatasetUnavailable,
    InvalidRequest,
    LayerNotFound,
    MissingChunk,
    OutOfBounds,
)
from blockio.store import Store, open_store
from precomputed.ingest import IngestOptions, ingest
from precomputed.pyramid import downsample_average

SHAPE_ZYX = (20, 70, 90)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 4000, size=SHAPE_ZYX, dtype=np.uint16)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> Path:
    tmp = tmp_path_factory.mktemp("store")
    np.save(tmp / "v.npy", volume)
    opts = IngestOptions(voxel_size=(4, 4, 40), chunk_size=(32, 32, 16), progress=False, workers=1)
    ingest(tmp / "v.npy", tmp / "root", "v", opts)
    multi = np.random.default_rng(6).integers(0, 255, size=(3, 10, 40, 50), dtype=np.uint8)
    np.save(tmp / "m.npy", multi)
    ingest(tmp / "m.npy", tmp / "root", "m", IngestOptions(axes="czyx", chunk_size=(32, 32, 16), progress=False, workers=1))
    return tmp / "root"


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)


def ref_zero(volume: np.ndarray, offset: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    """The zero-padded reference block, from the numpy array itself."""
    out = np.zeros(tuple(reversed(size)), dtype=volume.dtype)
    src = tuple(slice(max(o, 0), min(o + s, n)) for o, s, n in zip(reversed(offset), reversed(size), volume.shape))
    dst = tuple(slice(a.start - o, a.stop - o) for a, o in zip(src, reversed(offset)))
    if all(a.stop > a.start for a in src):
        out[dst] = volume[src]
    return out


@pytest.mark.parametrize("source", ["precomputed", "zarr"])
def test_block_equals_source(store: Store, volume: np.ndarray, source: str) -> None:
    block = store.read_block("v", (10, 5, 3), (64, 48, 12), source=source)
    assert block.shape == (12, 48, 64) and block.flags.c_contiguous
    np.testing.assert_array_equal(block, volume[3:15, 5:53, 10:74])


def test_offset_and_size_as_strings(store: Store, volume: np.ndarray) -> None:
    np.testing.assert_array_equal(store.read_block("v", "1,2,3", "4,5,6"), volume[3:9, 2:7, 1:5])


@pytest.mark.parametrize("mip", [1, 2])
def test_block_at_a_mip(store: Store, volume: np.ndarray, mip: int) -> None:
    record = store.info("v")
    level = volume[None]
    for m in record["mips"][1 : mip + 1]:
        level = downsample_average(level, tuple(m["factor"]))
    x, y, z = record["mips"][mip]["shape"]
    np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (x, y, z), mip=mip), level[0])


def test_multichannel_is_czyx(store: Store) -> None:
    block = store.read_block("m", (0, 0, 0), (50, 40, 10))
    assert block.shape == (3, 10, 40, 50)
    np.testing.assert_array_equal(block, np.load(Path(store.root).parent / "m.npy"))


def test_error_boundary_names_the_bounds(store: Store) -> None:
    with pytest.raises(OutOfBounds, match=r"bounds are \[0,0,0 \.\. 90,70,20\)"):
        store.read_block("v", (80, 0, 0), (32, 32, 8))


def test_zero_boundary_and_mask(store: Store, volume: np.ndarray) -> None:
    block, mask = store.read_block("v", (-5, 60, 15), (20, 20, 10), boundary="zero", return_mask=True)
    np.testing.assert_array_equal(block, ref_zero(volume, (-5, 60, 15), (20, 20, 10)))
    assert mask.shape == block.shape and mask.dtype == bool
    assert mask.sum() == 15 * 10 * 5 and not mask[:, :, :5].any()


def test_fully_outside_with_zero_is_all_zero(store: Store) -> None:
    block, mask = store.read_block("v", (500, 500, 500), (8, 8, 8), boundary="zero", return_mask=True)
    assert not block.any() and not mask.any()


def test_clip_returns_true_offset(store: Store, volume: np.ndarray) -> None:
    block, offset = store.read_block("v", (80, -3, 18), (20, 10, 5), boundary="clip")
    assert offset == (80, 0, 18)
    np.testing.assert_array_equal(block, volume[18:20, 0:7, 80:90])


def test_reflect_mirrors_at_the_edge(store: Store, volume: np.ndarray) -> None:
    block = store.read_block("v", (86, 0, 0), (8, 4, 2), boundary="reflect")
    np.testing.assert_array_equal(block[..., :4], volume[0:2, 0:4, 86:90])
    np.testing.assert_array_equal(block[..., 4:], volume[0:2, 0:4, 86:90][..., ::-1])


@pytest.mark.parametrize("method", ["zscore", "minmax", "percentile"])
def test_normalize_uses_catalog_statistics(store: Store, volume: np.ndarray, method: str) -> None:
    stats = store.info("v")["stats"]
    block = store.read_block("v", (0, 0, 0), (16, 16, 4), normalize=method)
    raw = volume[0:4, 0:16, 0:16].astype(np.float64)
    if method == "zscore":
        want = (raw - stats["mean"]) / stats["std"]
    elif method == "minmax":
        want = (raw - stats["min"]) / (stats["max"] - stats["min"])
    else:
        p1, p99 = stats["percentiles"]["1"], stats["percentiles"]["99"]
        want = np.clip((raw - p1) / (p99 - p1), 0, 1)
    assert block.dtype == np.float32
    np.testing.assert_allclose(block, want, rtol=1e-5, atol=1e-6)


def test_dtype_cast(store: Store) -> None:
    assert store.read_block("v", (0, 0, 0), (4, 4, 4), dtype="float32").dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dataset": "nope"}, DatasetNotFound, "no dataset .nope. in the catalog"),
        ({"layer": "labels"}, LayerNotFound, "layers: image"),
        ({"mip": 9}, InvalidRequest, r"mip must be an integer in 0\.\.4, got 9"),
        ({"mip": -1}, InvalidRequest, "mip"),
        ({"offset": "1,2"}, InvalidRequest, "offset must be three integers"),
        ({"offset": "a,b,c"}, InvalidRequest, "offset"),
        ({"size": (0, 4, 4)}, InvalidRequest, "size must be positive"),
        ({"boundary": "wrap"}, InvalidRequest, "boundary must be one of"),
        ({"normalize": "l2"}, InvalidRequest, "normalize must be one of"),
        ({"dtype": "complex64"}, InvalidRequest, "dtype"),
        ({"dtype": "nonsense"}, InvalidRequest, "unknown dtype"),
        ({"source": "n5"}, InvalidRequest, "source must be one of"),
        ({"offset": (500, 0, 0), "boundary": "clip"}, OutOfBounds, "does not overlap"),
    ],
)
def test_bad_requests(store: Store, kwargs: dict[str, Any], error: type, match: str) -> None:
    args: dict[str, Any] = {"dataset": "v", "offset": (0, 0, 0), "size": (4, 4, 4)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        store.read_block(args.pop("dataset"), args.pop("offset"), args.pop("size"), **args)


def _copy_root(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_chunk_is_an_error_naming_it(tmp_path: Path, store_root: Path) -> None:
    root = _copy_root(store_root, tmp_path / "root")
    chunk = root / "precomputed/v/image/4_4_40/32-64_0-32_0-16"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(ChunkError, match="4_4_40/32-64_0-32_0-16.*corrupt"):
        Store(root).read_block("v", (0, 0, 0), (64, 32, 16))


def test_corrupt_zarr_chunk_is_an_error(tmp_path: Path, store_root: Path) -> None:
    root = _copy_root(store_root, tmp_path / "root")
    chunk = root / "zarr/v.zarr/0/c/0/0/1"
    chunk.write_bytes(b"\x00" * 40)
    with pytest.raises(ChunkError, match="0/c/0/0/1"):
        Store(root).read_block("v", (0, 0, 0), (64, 32, 16), source="zarr")


def test_missing_chunk_is_an_error_unless_the_layer_allows_fill(tmp_path: Path, store_root: Path) -> None:
    root = _copy_root(store_root, tmp_path / "root")
    (root / "precomputed/v/image/4_4_40/32-64_0-32_0-16").unlink()
    with pytest.raises(MissingChunk, match="32-64_0-32_0-16.*never written"):
        Store(root).read_block("v", (0, 0, 0), (64, 32, 16))
    catalog = json.loads((root / "catalog.json").read_text())
    catalog["datasets"]["v"]["layers"]["image"]["fill_missing"] = True
    (root / "catalog.json").write_text(json.dumps(catalog))
    block = Store(root).read_block("v", (0, 0, 0), (64, 32, 16))
    assert not block[:, :, 32:64].any() and block[:, :, :32].any()


def test_cache_reuses_chunks_and_counts(store_root: Path) -> None:
    store = Store(store_root)
    store.read_block("v", (0, 0, 0), (64, 32, 16))
    first = store.cache_stats()["memory"]
    assert first["misses"] == 2 and first["hits"] == 0 and first["bytes"] == 2 * 32 * 32 * 16 * 2
    store.read_block("v", (16, 0, 0), (32, 32, 16))  # overlaps both cached chunks
    second = store.cache_stats()["memory"]
    assert second["hits"] == 2 and second["misses"] == 2


def test_cache_byte_budget_evicts(store_root: Path) -> None:
    store = Store(store_root, cache_bytes=3 * 32 * 32 * 16 * 2)
    store.read_block("v", (0, 0, 0), (90, 70, 20))
    stats = store.cache_stats()["memory"]
    assert stats["bytes"] <= 3 * 32 * 32 * 16 * 2 and stats["evictions"] > 0


def test_rewriting_a_layer_invalidates_the_cache(tmp_path: Path) -> None:
    """Two overwriting ingests within a second: each gets its own version, no stale chunk is served."""
    from precomputed.catalog import layer_version

    a = np.full((8, 16, 16), 7, dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", a + 1)
    root = tmp_path / "root"
    opts = IngestOptions(chunk_size=(16, 16, 8), progress=False, workers=1)
    ingest(tmp_path / "a.npy", root, "x", opts)
    store = Store(root)
    first = layer_version(store.info("x"), "image")
    assert store.read_block("x", (0, 0, 0), (16, 16, 8)).max() == 7
    ingest(tmp_path / "b.npy", root, "x", IngestOptions(chunk_size=(16, 16, 8), progress=False, workers=1, overwrite=True))
    assert layer_version(store.info("x"), "image") != first
    assert store.read_block("x", (0, 0, 0), (16, 16, 8)).max() == 8
    # the reader of the old version was closed and replaced, not kept beside the new one
    assert store.reader_count() == 1


def test_segmentation_layers_read_from_their_zarr_copy(tmp_path: Path, store_root: Path, volume: np.ndarray) -> None:
    from precomputed.segmentation import write_segmentation

    root = _copy_root(store_root, tmp_path / "root")
    labels = (volume // 500).astype(np.uint32)
    write_segmentation(root, "v", "pred", labels, provenance={"model": "test"}, meshes=False)
    store = Store(root)
    record = store.info("v")
    for mip, level in enumerate(record["mips"]):
        x, y, z = level["shape"]
        a = store.read_block("v", (0, 0, 0), (x, y, z), layer="pred", mip=mip)
        b = store.read_block("v", (0, 0, 0), (x, y, z), layer="pred", mip=mip, source="zarr")
        np.testing.assert_array_equal(a, b, err_msg=f"mip {mip}")
    np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (90, 70, 20), layer="pred", source="zarr"), labels)
    assert store.reader_count() == 2  # one per (dataset, layer, source)
    catalog = json.loads((root / "catalog.json").read_text())
    del catalog["datasets"]["v"]["layers"]["pred"]["zarr"]  # a layer without a copy
    (root / "catalog.json").write_text(json.dumps(catalog))
    with pytest.raises(InvalidRequest, match="layer 'pred' has no OME-Zarr copy"):
        Store(root).read_block("v", (0, 0, 0), (8, 8, 8), layer="pred", source="zarr")


def test_a_record_without_layer_versions_still_reads(tmp_path: Path, store_root: Path, volume: np.ndarray) -> None:
    root = _copy_root(store_root, tmp_path / "root")
    catalog = json.loads((root / "catalog.json").read_text())
    del catalog["datasets"]["v"]["layers"]["image"]["version"]  # an older catalog
    (root / "catalog.json").write_text(json.dumps(catalog))
    store = Store(root)
    np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (16, 16, 4)), volume[0:4, 0:16, 0:16])


def test_close_ends_every_reader(store_root: Path) -> None:
    store = Store(store_root)
    store.read_block("v", (0, 0, 0), (90, 70, 20))
    store.read_block("v", (0, 0, 0), (8, 8, 8), source="zarr")
    assert store.reader_count() == 2
    store.close()
    assert store.reader_count() == 0
    assert store.read_block("v", (0, 0, 0), (4, 4, 4)).shape == (4, 4, 4)  # opens a new one


def test_malformed_record_is_unavailable_others_served(tmp_path: Path, store_root: Path) -> None:
    root = _copy_root(store_root, tmp_path / "root")
    catalog = json.loads((root / "catalog.json").read_text())
    catalog["datasets"]["m"]["shape"] = "big"
    (root / "catalog.json").write_text(json.dumps(catalog))
    store = Store(root)
    with pytest.raises(DatasetUnavailable, match="shape"):
        store.read_block("m", (0, 0, 0), (4, 4, 4))
    assert store.read_block("v", (0, 0, 0), (4, 4, 4)).shape == (4, 4, 4)


def test_iter_blocks_cover_the_volume(store: Store) -> None:
    boxes = list(store.iter_blocks("v", (32, 32, 8), (8, 8, 2)))
    covered = np.zeros(SHAPE_ZYX, dtype=bool)
    for box in boxes:
        assert box.size == (32, 32, 8)
        assert all(0 <= a and b <= n for a, b, n in zip(box.start, box.stop, (90, 70, 20)))
        covered[box.slices_zyx()] = True
    assert covered.all()
    starts_x = sorted({b.start[0] for b in boxes})
    assert starts_x == [0, 24, 48, 58]
    with pytest.raises(InvalidRequest, match="overlap"):
        list(store.iter_blocks("v", (32, 32, 8), (32, 0, 0)))


def test_open_store_uses_environment(monkeypatch: pytest.MonkeyPatch, store_root: Path) -> None:
    monkeypatch.setenv("BLOCKIO_ROOT", str(store_root))
    assert open_store().datasets() == ["m", "v"]


def test_store_after_fork_reads_correctly(store_root: Path, volume: np.ndarray) -> None:
    store = Store(store_root)
    store.read_block("v", (0, 0, 0), (8, 8, 8))
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's handles
        ok = np.array_equal(store.read_block("v", (40, 40, 10), (16, 16, 8)), volume[10:18, 40:56, 40:56])
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ox=st.integers(-40, 100), oy=st.integers(-40, 80), oz=st.integers(-10, 25),
    sx=st.integers(1, 70), sy=st.integers(1, 70), sz=st.integers(1, 24),
    source=st.sampled_from(["precomputed", "zarr"]),
)
def test_any_box_with_zero_boundary_matches_numpy(store: Store, volume: np.ndarray, ox: int, oy: int, oz: int, sx: int, sy: int, sz: int, source: str) -> None:
    got = store.read_block("v", (ox, oy, oz), (sx, sy, sz), boundary="zero", source=source)
    np.testing.assert_array_equal(got, ref_zero(volume, (ox, oy, oz), (sx, sy, sz)))


def _pyramid(volume: np.ndarray, record: dict[str, Any]) -> list[np.ndarray]:
    levels = [volume[None]]
    for m in record["mips"][1:]:
        levels.append(downsample_average(levels[-1], tuple(m["factor"])))
    return [lv[0] for lv in levels]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    boundary=st.sampled_from(["zero", "clip", "reflect", "error"]),
    source=st.sampled_from(["precomputed", "zarr"]),
    mip=st.integers(0, 4),
)
def test_any_box_any_mode_any_mip_matches_numpy(store: Store, volume: np.ndarray, data: st.DataObject, boundary: str, source: str, mip: int) -> None:
    """read_block equals slicing the source's pyramid level, padded as the boundary mode says."""
    level = _pyramid(volume, store.info("v"))[mip]
    nz, ny, nx = level.shape
    inside = boundary == "error"
    ox = data.draw(st.integers(0 if inside else -nx, nx - 1))
    oy = data.draw(st.integers(0 if inside else -ny, ny - 1))
    oz = data.draw(st.integers(0 if inside else -nz, nz - 1))
    # every box overlaps the volume: a box wholly outside is an error in clip and reflect (tested above)
    sx = data.draw(st.integers(max(1, 1 - ox), nx - ox if inside else 2 * nx))
    sy = data.draw(st.integers(max(1, 1 - oy), ny - oy if inside else 2 * ny))
    sz = data.draw(st.integers(max(1, 1 - oz), nz - oz if inside else 2 * nz))
    got = store.read_block("v", (ox, oy, oz), (sx, sy, sz), mip=mip, boundary=boundary, source=source)
    if boundary == "clip":
        got, (cx, cy, cz) = got
        want = level[cz : oz + sz, cy : oy + sy, cx : ox + sx]
        assert (cx, cy, cz) == (max(ox, 0), max(oy, 0), max(oz, 0))
        np.testing.assert_array_equal(got, want)
    elif boundary == "reflect":
        pads = [(max(0, -o), max(0, o + s - n)) for o, s, n in ((oz, sz, nz), (oy, sy, ny), (ox, sx, nx))]
        inner = level[max(oz, 0) : oz + sz, max(oy, 0) : oy + sy, max(ox, 0) : ox + sx]
        np.testing.assert_array_equal(got, np.pad(inner, pads, mode="symmetric"))
    else:
        np.testing.assert_array_equal(got, ref_zero(level, (ox, oy, oz), (sx, sy, sz)))


def test_block_size_limit_before_any_read(store_root: Path) -> None:
    store = Store(store_root, max_block_voxels=1000)
    with pytest.raises(InvalidRequest, match="exceeds the limit of 1000 voxels"):
        store.read_block("v", (0, 0, 0), (10, 10, 11))
    assert store.cache_stats()["memory"]["misses"] == 0
    assert store.read_block("v", (0, 0, 0), (10, 10, 10)).shape == (10, 10, 10)
    with pytest.raises(InvalidRequest, match="exceeds the limit of 134217728 voxels"):
        Store(store_root).read_block("v", (0, 0, 0), (1024, 1024, 129))


def test_record_whose_files_are_missing(tmp_path: Path, store_root: Path) -> None:
    import shutil

    root = _copy_root(store_root, tmp_path / "root")
    shutil.rmtree(root / "precomputed" / "v")
    with pytest.raises(ChunkError, match="cannot open precomputed layer"):
        Store(root).read_block("v", (0, 0, 0), (8, 8, 8))
    assert Store(root).read_block("m", (0, 0, 0), (8, 8, 8)).shape == (3, 8, 8, 8)
