"""Reading from a bucket root: s3:// (moto's server) and gs:// (gcp-storage-emulator) read exactly what the local root reads."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blockio.errors import ChunkError, StoreNotFound
from blockio.store import Store, open_store
from precomputed.storage import open_root
from tests.blockio.remote_roots import CHUNK, bucket_environment, build_root, copy_root, counting_s3_gets
from tests.cloud_servers import GcsServer, S3Server, gcs_server, s3_server  # noqa: F401

pytestmark = pytest.mark.cloud

BOXES = [((0, 0, 0), (90, 70, 20)), ((5, 7, 3), (40, 33, 9)), ((60, 50, 10), (50, 40, 20)), ((-6, -4, -2), (20, 20, 6))]


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("remote-src"))


@pytest.fixture(scope="module")
def buckets(local_root: Path, s3_server: S3Server, gcs_server: GcsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The local root copied into one S3 and one GCS bucket, read (never changed) by the tests of this module."""
    with bucket_environment(s3_server, gcs_server, tmp_path_factory.mktemp("aws")):
        urls = {"s3": f"s3://{s3_server.create_bucket()}/root", "gs": f"gs://{gcs_server.create_bucket()}/root"}
        for url in urls.values():
            copy_root(local_root, url)
        yield urls


@pytest.fixture
def s3_store_root(buckets: dict[str, str]) -> str:
    return buckets["s3"]


@pytest.fixture(params=["s3", "gs"])
def bucket_root(request: pytest.FixtureRequest, buckets: dict[str, str]) -> str:
    return buckets[request.param]


@pytest.fixture(scope="module")
def damaged_root(buckets: dict[str, str], local_root: Path, s3_server: S3Server) -> str:
    """A second S3 copy for the tests that damage chunks (each its own dataset)."""
    url = f"s3://{s3_server.create_bucket()}/root"
    copy_root(local_root, url)
    return url


def _reads(store: Store, *, full: bool) -> dict[tuple[object, ...], np.ndarray]:
    """Blocks of BOXES, each layer and source, several mips and boundary modes (``full``: all of them, else a sample)."""
    out: dict[tuple[object, ...], np.ndarray] = {}
    for (dataset, layer, source), (offset, size), mip, boundary in itertools.product(
        [("v", "image", "precomputed"), ("v", "image", "zarr"), ("g", "image", "precomputed"), ("v", "seg", "precomputed"), ("v", "seg", "zarr")],
        BOXES if full else BOXES[1:3],
        [0, 1, 2] if full else [0, 2],
        ["zero", "clip", "reflect"] if full else ["zero", "reflect"],
    ):
        full, here = store.bounds(dataset, 0, layer).size, store.bounds(dataset, mip, layer).size
        off = tuple(o * h // f for o, h, f in zip(offset, here, full))  # the same region at this mip (2x2x1 or 2x2x2)
        sz = tuple(max(1, s * h // f) for s, h, f in zip(size, here, full))
        got = store.read_block(dataset, off, sz, mip=mip, layer=layer, source=source, boundary=boundary)
        out[(dataset, layer, source, off, sz, mip, boundary)] = got[0] if boundary == "clip" else got
    return out


def test_every_block_from_the_bucket_equals_the_local_read(local_root: Path, bucket_root: str) -> None:
    full = bucket_root.startswith("s3://")  # the GCS emulator is slow: a sample of the same reads
    local, remote = _reads(Store(local_root, cache_bytes=0), full=full), _reads(open_store(bucket_root, cache_bytes=0), full=full)
    assert local.keys() == remote.keys()
    for key, expected in local.items():
        assert remote[key].dtype == expected.dtype and np.array_equal(remote[key], expected), key


def test_the_catalog_and_geometry_come_from_the_bucket(local_root: Path, bucket_root: str) -> None:
    store, here = open_store(bucket_root), Store(local_root)
    assert store.datasets() == here.datasets() == ["g", "v"]
    assert store.info("v") == here.info("v") and store.root == bucket_root and not store.storage.is_local
    assert [store.bounds("v", m) for m in range(3)] == [here.bounds("v", m) for m in range(3)]


def test_a_bucket_prefix_without_a_catalog_is_not_a_store(buckets: dict[str, str]) -> None:
    for url in buckets.values():
        with pytest.raises(StoreNotFound, match=rf"no blockio store at {url}/typo: no catalog\.json"):
            open_store(url + "/typo")


def test_a_cold_block_is_one_concurrent_batch_of_gets(s3_store_root: str) -> None:
    store = open_store(s3_store_root)
    store.bounds("v")  # the layer opened: info and geometry read
    offset, size = (5, 7, 3), (80, 60, 16)  # unaligned: 3 x 3 x 2 chunks
    expected = len(list(itertools.product(*(range(o // c, (o + s - 1) // c + 1) for o, s, c in zip(offset, size, CHUNK)))))
    with counting_s3_gets() as cold:
        store.read_block("v", offset, size)
    chunks = cold.chunk_gets("4_4_40")
    assert len(chunks) == expected == 18 and len(set(chunks)) == 18  # one GET per chunk, none retried or probed twice
    assert cold.most_in_flight > 1  # in flight together, not one round trip after another
    with counting_s3_gets() as warm:
        store.read_block("v", offset, size)
    assert warm.paths == []  # the cache in front answers


def test_a_damaged_chunk_in_the_bucket_is_a_chunk_error_naming_it(damaged_root: str) -> None:
    storage = open_root(damaged_root)
    key = "precomputed/v/image/4_4_40/32-64_0-32_0-16"
    data = bytearray(storage.get(key) or b"")
    data[100] ^= 0x01
    storage.put(key, bytes(data))
    store = open_store(damaged_root)
    with pytest.raises(ChunkError, match=r"chunk 4_4_40/32-64_0-32_0-16 of s3://.*/precomputed/v/image is corrupt: its crc32c is"):
        store.read_block("v", (0, 0, 0), (64, 32, 16))
    assert np.array_equal(store.read_block("v", (0, 32, 0), (32, 32, 16)), Store(storage.url).read_block("v", (0, 32, 0), (32, 32, 16)))


def test_a_truncated_gz_twin_in_the_bucket_is_a_chunk_error(damaged_root: str) -> None:
    storage = open_root(damaged_root)
    key = "precomputed/g/image/4_4_40/0-32_0-32_0-16.gz"
    storage.put(key, (storage.get(key) or b"")[:40])
    with pytest.raises(ChunkError, match=r"chunk 4_4_40/0-32_0-32_0-16 of s3://.*/precomputed/g/image is corrupt"):
        open_store(damaged_root).read_block("g", (0, 0, 0), (32, 32, 16))


def test_an_endpoint_in_the_url_reads_like_the_environment(local_root: Path, s3_store_root: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    url = "s3://" + s3_server.endpoint + "/" + s3_store_root.removeprefix("s3://")
    block = open_store(url).read_block("v", (3, 4, 5), (50, 40, 10), source="zarr")
    assert np.array_equal(block, Store(local_root).read_block("v", (3, 4, 5), (50, 40, 10)))


def test_cloudvolume_and_tensorstore_read_the_bucket_voxel_for_voxel(local_root: Path, s3_store_root: str, s3_server: S3Server) -> None:
    import tensorstore as ts
    from cloudvolume import CloudVolume

    here = Store(local_root)
    storage = open_root(s3_store_root)
    bucket, _, prefix = s3_store_root.removeprefix("s3://").partition("/")
    kvstore = {"driver": "s3", "bucket": bucket, "endpoint": s3_server.endpoint, "aws_region": "us-east-1", "aws_credentials": {"type": "environment"}}
    for layer, mip in (("image", 0), ("image", 1), ("seg", 0)):
        ours = here.read_block("v", (0, 0, 0), tuple(here.bounds("v", mip, layer).size), mip=mip, layer=layer)
        cv = CloudVolume(storage.url_for(f"precomputed/v/{layer}"), mip=mip, progress=False)
        assert np.array_equal(np.asarray(cv[:, :, :])[..., 0].T, ours), (layer, mip)
        path = f"{prefix}/precomputed/v/{layer}/"
        arr = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {**kvstore, "path": path}, "scale_index": mip}).result()
        assert np.array_equal(arr.read().result()[..., 0].T, ours), (layer, mip)
    zarr = ts.open({"driver": "zarr3", "kvstore": {**kvstore, "path": f"{prefix}/zarr/v.zarr/0/"}}).result()
    assert np.array_equal(zarr.read().result(), here.read_block("v", (0, 0, 0), (90, 70, 20), source="zarr"))


def test_block_dataset_over_s3_gives_the_local_items(local_root: Path, s3_store_root: str) -> None:
    torch = pytest.importorskip("torch")
    from blockio.data.dataset import BlockDataset

    local = BlockDataset(local_root, ["v"], patch_size=(32, 32, 8), samples_per_epoch=5, seed=3, label_layer="seg")
    remote = BlockDataset(s3_store_root, ["v"], patch_size=(32, 32, 8), samples_per_epoch=5, seed=3, label_layer="seg")
    assert len(local) == len(remote) == 5
    for i in range(5):
        a, b = local[i], remote[i]
        assert a["dataset"] == b["dataset"] and torch.equal(a["offset"], b["offset"])
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_a_bucket_catalog_is_read_again_after_its_ttl(damaged_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from blockio import catalog_view
    from precomputed.catalog import Catalog

    store = open_store(damaged_root)
    assert "v2" not in store.datasets()
    record = copy.deepcopy(Catalog(damaged_root).get("v"))
    Catalog(damaged_root).put({**record, "id": "v2"})
    monkeypatch.setattr(catalog_view, "REMOTE_CATALOG_TTL_S", 3600.0)
    assert "v2" not in store.datasets()  # within the TTL: the records read before
    monkeypatch.setattr(catalog_view, "REMOTE_CATALOG_TTL_S", 0.0)
    assert "v2" in store.datasets() and store.info("v2")["id"] == "v2"
