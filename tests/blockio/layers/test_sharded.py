"""Reading sharded precomputed layers written by others, and what a damaged shard does.

The layers are written by CloudVolume: its own sharded writer (``vol[box] =
data`` per shard, with the spec igneous recommends, computed by CloudVolume's
copy of igneous' ``create_sharded_image_info``), and, for a
``murmurhash3_x86_128`` spec with raw encodings (which CloudVolume's image
writer does not take), its ``synthesize_shard_files`` over chunks its codecs
encoded. igneous itself is not installed: ``igneous-pipeline`` pins
``DracoPy<2`` (a downgrade of what CloudVolume uses here) and pulls
opencv-python-headless (61 MB), scikit-learn and grpcio. TensorStore is the
reference every read is checked against.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts

from blockio.errors import ChunkError, MissingChunk
from blockio.layers.sharded import ShardedScale
from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

SHAPE_ZYX = (32, 96, 160)
CHUNK = (32, 32, 8)
HASHED = {"@type": "neuroglancer_uint64_sharded_v1", "hash": "murmurhash3_x86_128", "preshift_bits": 1, "minishard_bits": 2, "shard_bits": 2, "minishard_index_encoding": "raw", "data_encoding": "raw"}


def _tensorstore(layer: Path, mip: int) -> np.ndarray:
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "scale_index": mip}).result()
    return np.asarray(store.read().result()).T[0]  # (x, y, z, c) -> [z, y, x]


def _rewrite_sharded(layer: Path, variant: str) -> None:
    """Replace an unsharded layer by the same voxels in shards that CloudVolume writes."""
    from cloudvolume import CloudVolume, chunks
    from cloudvolume.datasource.precomputed.common import compressed_morton_code
    from cloudvolume.datasource.precomputed.sharding import ShardingSpecification, compute_shard_params_for_image, image_shard_shape_from_spec

    source = CloudVolume(f"file://{layer}", progress=False, fill_missing=True)
    levels = [np.asarray(CloudVolume(f"file://{layer}", mip=m, progress=False, fill_missing=True)[:, :, :]) for m in range(len(source.info["scales"]))]
    info = json.loads((layer / "info").read_text())
    shutil.rmtree(layer)
    layer.mkdir()
    for scale in info["scales"]:
        if variant == "igneous":
            spec = compute_shard_params_for_image(scale["size"], scale["chunk_sizes"][0], scale["encoding"], info["data_type"], uncompressed_shard_bytesize=4 * int(np.prod(scale["chunk_sizes"][0])) * np.dtype(info["data_type"]).itemsize).to_dict()
            scale["sharding"] = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in spec.items()}
        else:
            scale["sharding"] = dict(HASHED)
    (layer / "info").write_text(json.dumps(info))
    for mip, scale in enumerate(info["scales"]):
        vol = CloudVolume(f"file://{layer}", mip=mip, progress=False)
        size, chunk = np.array(scale["size"]), np.array(scale["chunk_sizes"][0])
        if variant == "igneous":  # CloudVolume's sharded writer: one shard-aligned box at a time
            shape = np.array(image_shard_shape_from_spec(scale["sharding"], size, chunk), dtype=np.int64)
            for z in range(0, size[2], shape[2]):
                for y in range(0, size[1], shape[1]):
                    for x in range(0, size[0], shape[0]):
                        stop = np.minimum([x, y, z] + shape, size)
                        vol[x : stop[0], y : stop[1], z : stop[2]] = levels[mip][x : stop[0], y : stop[1], z : stop[2]]
            continue
        grid = np.ceil(size / chunk).astype(int)
        data = {}
        for gz in range(grid[2]):
            for gy in range(grid[1]):
                for gx in range(grid[0]):
                    a = np.array([gx, gy, gz]) * chunk
                    b = np.minimum(a + chunk, size)
                    cut = np.asfortranarray(levels[mip][a[0] : b[0], a[1] : b[1], a[2] : b[2]])
                    code = int(compressed_morton_code([gx, gy, gz], grid))
                    data[code] = chunks.encode(cut, scale["encoding"], block_size=scale.get("compressed_segmentation_block_size", (8, 8, 8)))
        folder = layer / scale["key"]
        folder.mkdir(parents=True, exist_ok=True)
        for name, shard in ShardingSpecification.from_dict(scale["sharding"]).synthesize_shards(data).items():
            (folder / name).write_bytes(shard)


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    tmp = tmp_path_factory.mktemp("sharded-read")
    rng = np.random.default_rng(9)
    image = rng.integers(1, 250, size=SHAPE_ZYX, dtype=np.uint8)
    np.save(tmp / "v.npy", image)
    root = tmp / "root"
    ingest(tmp / "v.npy", root, "v", IngestOptions(voxel_size=(4, 4, 40), chunk_size=CHUNK, progress=False, workers=1))
    labels = (image // 60).astype(np.uint32) * 1000 + 7
    labels[:, :10, :] = 0  # background, which a sharded writer may leave out
    write_segmentation(root, "v", "seg", labels, meshes=False)
    return root, image, labels


@pytest.fixture(scope="module", params=["igneous", "hashed"])
def foreign_root(request: pytest.FixtureRequest, clean_root: tuple[Path, np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    root0, image, labels = clean_root
    root = Path(shutil.copytree(root0, tmp_path_factory.mktemp(f"foreign-{request.param}") / "root"))
    for name in ("image", "seg"):
        _rewrite_sharded(root / "precomputed" / "v" / name, request.param)
    return root, image, labels


@pytest.mark.parametrize("layer", ["image", "seg"])
def test_foreign_sharded_layers_read_like_tensorstore(foreign_root: tuple[Path, np.ndarray, np.ndarray], layer: str) -> None:
    root, image, labels = foreign_root
    store = Store(root)
    path = root / "precomputed" / "v" / layer
    info = json.loads((path / "info").read_text())
    assert all(s.get("sharding") for s in info["scales"]) and not (path / "checksums").exists()
    for mip, scale in enumerate(info["scales"]):
        want = _tensorstore(path, mip)
        if mip == 0:
            np.testing.assert_array_equal(want, image if layer == "image" else labels)
        sx, sy, sz = scale["size"]
        np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (sx, sy, sz), mip=mip, layer=layer), want)
    # an unaligned block across shards, read cold
    got = Store(root).read_block("v", (13, 5, 3), (120, 81, 27), layer=layer)
    np.testing.assert_array_equal(got, _tensorstore(path, 0)[3:30, 5:86, 13:133])


def test_the_remote_path_reads_what_the_local_one_does(foreign_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    # CloudFiles' ranged gets (the gs:// and s3:// branch) over file://, against pread
    root, _, _ = foreign_root
    layer = root / "precomputed" / "v" / "image"
    scale = json.loads((layer / "info").read_text())["scales"][0]
    from blockio.boxes import VoxelBox, chunk_grid

    bounds = VoxelBox((0, 0, 0), tuple(scale["size"]))  # type: ignore[arg-type]
    chunks = list(chunk_grid(bounds, CHUNK, bounds))
    kwargs: dict[str, Any] = dict(key=scale["key"], spec=scale["sharding"], bounds=bounds, chunk_size=CHUNK, cloudpath=f"file://{layer}", where=str(layer))
    local = ShardedScale(local_base=str(layer), **kwargs).get_many(chunks)
    remote = ShardedScale(local_base=None, **kwargs).get_many(chunks)
    assert local == remote and all(data for data in local)


# -- damage ------------------------------------------------------------------------


@pytest.fixture
def damaged(foreign_root: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> Path:
    return Path(shutil.copytree(foreign_root[0], tmp_path / "root"))


def _shard(root: Path, layer: str = "image") -> Path:
    key = json.loads((root / "precomputed" / "v" / layer / "info").read_text())["scales"][0]["key"]
    return sorted((root / "precomputed" / "v" / layer / key).glob("*.shard"))[0]


def _read_all(root: Path, layer: str = "image") -> np.ndarray:
    return Store(root).read_block("v", (0, 0, 0), SHAPE_ZYX[::-1], layer=layer)  # type: ignore[no-any-return]


@pytest.mark.parametrize("how", ["index-garbage", "truncated", "empty", "minishard-garbage"])
@pytest.mark.parametrize("layer", ["image", "seg"])
def test_a_damaged_shard_is_an_error_naming_it(damaged: Path, how: str, layer: str) -> None:
    shard = _shard(damaged, layer)
    data = bytearray(shard.read_bytes())
    spec = json.loads((shard.parents[1] / "info").read_text())["scales"][0]["sharding"]
    index_bytes = 16 << spec["minishard_bits"]
    if how == "index-garbage":
        data[:index_bytes] = np.random.default_rng(2).integers(0, 256, size=index_bytes, dtype=np.uint8).tobytes()
    elif how == "truncated":
        data = data[: (index_bytes + len(data)) // 2]
    elif how == "empty":
        data = bytearray()
    else:  # the minishard indices are the file's tail
        index = np.frombuffer(bytes(data[:index_bytes]), dtype="<u8").reshape(-1, 2)
        start = int(index[index[:, 1] > index[:, 0]][0, 0]) + index_bytes
        data[start:] = b"\xff" * (len(data) - start)
    shard.write_bytes(bytes(data))
    with pytest.raises(ChunkError, match=rf"{shard.parent.name}/{shard.name}"):
        _read_all(damaged, layer)


def test_a_missing_shard_is_missing_chunks_or_background(damaged: Path, foreign_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    _shard(damaged, "image").unlink()
    with pytest.raises(MissingChunk):
        _read_all(damaged, "image")
    shard = _shard(damaged, "seg")
    shard.unlink()
    got = _read_all(damaged, "seg")  # the layer reads never-written chunks as background, as TensorStore does
    np.testing.assert_array_equal(got, _tensorstore(shard.parents[1], 0))
    assert (got == 0).sum() > (foreign_root[2] == 0).sum()


def test_a_flipped_bit_inside_our_shard_fails_its_checksum(tmp_path: Path, clean_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    _, image, _ = clean_root
    np.save(tmp_path / "v.npy", image)
    ingest(tmp_path / "v.npy", tmp_path / "root", "v", IngestOptions(voxel_size=(4, 4, 40), chunk_size=CHUNK, progress=False, workers=1, shard=True))
    np.testing.assert_array_equal(_read_all(tmp_path / "root"), image)
    shard = _shard(tmp_path / "root")
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x04  # inside the chunk data: raw chunks still have the right length
    shard.write_bytes(bytes(data))
    with pytest.raises(ChunkError, match=r"4_4_40/\d+-\d+_\d+-\d+_\d+-\d+.*crc32c"):
        _read_all(tmp_path / "root")
