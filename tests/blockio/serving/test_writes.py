"""PUT blocks into a segmentation layer: auth, alignment, pyramid, cache, concurrency."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.serving.app import create_app
from blockio.store import Store
from precomputed.pyramid import downsample_mode

from .conftest import TOKEN, make_write_root, npy_bytes


def put(client: FlaskClient, offset: str, block: np.ndarray, token: str | None = TOKEN, layer: str = "pred"):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.put(f"/api/datasets/v/layers/{layer}/block?offset={offset}", data=npy_bytes(block), headers=headers)


def test_writes_refused_without_configured_token(seg_root: Path) -> None:
    client = create_app({"BLOCKIO_ROOT": str(seg_root)}).test_client()
    assert put(client, "0,0,0", np.ones((16, 32, 32), np.uint32)).status_code == 403


def test_wrong_or_missing_token(wclient: FlaskClient) -> None:
    assert put(wclient, "0,0,0", np.ones((16, 32, 32), np.uint32), token="nope").status_code == 401
    assert put(wclient, "0,0,0", np.ones((16, 32, 32), np.uint32), token=None).status_code == 401


@pytest.mark.parametrize(
    ("offset", "block", "layer", "status"),
    [
        ("0,0,0", np.ones((16, 32, 32), np.float32), "pred", 400),
        ("0,0,0", -np.ones((16, 32, 32), np.int32), "pred", 400),
        ("90,0,0", np.ones((16, 32, 32), np.uint32), "pred", 400),
        ("0,0,0", np.ones((32, 32), np.uint32), "pred", 400),
        ("0,0,0", np.ones((16, 32, 32), np.uint32), "image", 400),
        ("0,0,0", np.ones((16, 32, 32), np.uint32), "nope", 404),
        ("0,0", np.ones((16, 32, 32), np.uint32), "pred", 400),
    ],
)
def test_bad_writes(wclient: FlaskClient, offset: str, block: np.ndarray, layer: str, status: int) -> None:
    assert put(wclient, offset, block, layer=layer).status_code == status


def test_aligned_and_unaligned_writes_update_every_mip_and_the_cache(wclient: FlaskClient, seg_root: Path) -> None:
    store = Store(seg_root)
    assert not store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred").any()  # now cached
    a = np.full((16, 32, 32), 7, np.uint32)
    r = put(wclient, "32,0,0", a)
    assert r.status_code == 200 and r.get_json()["aligned"] is True
    b = np.full((5, 10, 9), 9, np.uint32)
    r = put(wclient, "3,40,2", b)
    assert r.status_code == 200 and r.get_json()["aligned"] is False
    want = np.zeros((16, 64, 96), np.uint32)
    want[:, 0:32, 32:64] = 7
    want[2:7, 40:50, 3:12] = 9
    got = store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred")  # new version: not the cached zeros
    np.testing.assert_array_equal(got, want)
    record = store.info("v")
    level = want[None]
    for mip in range(1, len(record["mips"])):
        level = downsample_mode(level, tuple(record["mips"][mip]["factor"]))
        x, y, z = record["mips"][mip]["shape"]
        np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (x, y, z), layer="pred", mip=mip), level[0], err_msg=f"mip {mip}")
    assert set(record["layers"]["pred"]["stale"]) == {"mesh", "segment_properties"}


def test_two_writers_keep_each_others_chunks(seg_root: Path) -> None:
    app = create_app({"BLOCKIO_ROOT": str(seg_root), "BLOCKIO_WRITE_TOKEN": TOKEN})
    statuses: list[int] = []

    def writer(k: int) -> None:
        client = app.test_client()
        for i in range(3):
            # unaligned blocks inside the same chunks: only a locked read-modify-write keeps both
            x = 4 + 10 * i
            block = np.full((4, 8, 8), 10 * k + i + 1, np.uint32)
            statuses.append(put(client, f"{x},{2 + 16 * k},1", block).status_code)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6
    got = Store(seg_root).read_block("v", (0, 0, 0), (96, 64, 16), layer="pred")
    for k in range(2):
        for i in range(3):
            x, y = 4 + 10 * i, 2 + 16 * k
            assert (got[1:5, y : y + 8, x : x + 8] == 10 * k + i + 1).all(), (k, i)


# -- versions, readers, both stores, all-or-nothing ---------------------------------


def _layer_files(root: Path) -> dict[str, bytes]:
    """Every file of the segmentation layer, its OME-Zarr labels and its checksum manifests, by path."""
    out = {}
    for base in (root / "precomputed/v/pred", root / "zarr/v.zarr/labels/pred"):
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def _labels(seed: int, shape_zyx: tuple[int, int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5000, size=shape_zyx, dtype=np.uint32)


def test_put_updates_both_stores_at_every_mip(wclient: FlaskClient, seg_root: Path) -> None:
    from precomputed.catalog import Catalog
    from tests.precomputed.stores import assert_layer_stores_equal

    want = np.zeros((16, 64, 96), np.uint32)
    for offset, block in (("32,0,0", _labels(1, (16, 32, 32))), ("3,40,2", _labels(2, (5, 10, 9))), ("60,10,0", _labels(3, (16, 50, 36)))):
        assert put(wclient, offset, block).status_code == 200
        x, y, z = map(int, offset.split(","))
        want[z : z + block.shape[0], y : y + block.shape[1], x : x + block.shape[2]] = block
    record = Catalog(seg_root).get("v")
    assert_layer_stores_equal(seg_root, record, "pred", want[None])
    store = Store(seg_root)
    np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred", source="zarr"), want)
    # every chunk file is in its scale's checksum manifest with exactly the digest of its bytes
    from precomputed.checksums import digest, load_manifest, read_payload, scale_keys

    layer = seg_root / "precomputed/v/pred"
    for key in scale_keys(layer):
        manifest = load_manifest(layer, key)
        assert manifest is not None
        names = [p.name.removesuffix(".gz") for p in (layer / key).iterdir() if not p.name.startswith(".")]
        assert names and all(manifest.chunks[n] == (digest(read_payload(layer, key, n) or b""),) for n in names), key
    assert not list(seg_root.rglob("*.tmp"))


def test_segmentation_write_keeps_the_image_version_and_its_cached_chunks(wclient: FlaskClient, seg_root: Path) -> None:
    from precomputed.catalog import layer_version

    store = Store(seg_root)
    before = store.info("v")
    store.read_block("v", (0, 0, 0), (96, 64, 16))  # every image chunk now cached
    misses = store.cache_stats()["memory"]["misses"]
    r = put(wclient, "0,0,0", np.full((16, 32, 32), 3, np.uint32))
    assert r.status_code == 200
    after = store.info("v")
    assert layer_version(after, "image") == layer_version(before, "image")
    assert layer_version(after, "pred") == r.get_json()["version"] != layer_version(before, "pred")
    hits = store.cache_stats()["memory"]["hits"]
    store.read_block("v", (0, 0, 0), (96, 64, 16))
    stats = store.cache_stats()["memory"]
    assert stats["misses"] == misses and stats["hits"] == hits + 6  # 3 x 2 x 1 chunks, all hits


@pytest.mark.slow
def test_many_puts_keep_readers_and_threads_bounded(seg_root: Path) -> None:
    app = create_app({"BLOCKIO_ROOT": str(seg_root), "BLOCKIO_WRITE_TOKEN": TOKEN})
    client = app.test_client()
    store: Store = app.extensions["blockio.store"]
    versions = set()
    threads = None
    for i in range(200):
        r = put(client, f"{(i % 3) * 32},0,0", np.full((16, 32, 32), i + 1, np.uint32))
        assert r.status_code == 200
        versions.add(r.get_json()["version"])
        # 3 x 2 chunks: a read that fetches on the reader's threads, opening a reader for the new version
        block = store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred")
        assert block[0, 0, (i % 3) * 32] == i + 1
        if threads is None:
            threads = threading.active_count()
    assert len(versions) == 200
    assert store.reader_count() == 1
    # the readers of older versions were closed: at most one pool of fetch threads, and the one just closed ending
    assert threading.active_count() <= threads + 16


def test_rollback_when_the_catalog_cannot_be_written(wclient: FlaskClient, seg_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from precomputed.catalog import Catalog

    assert put(wclient, "0,0,0", _labels(4, (16, 32, 32))).status_code == 200
    before = _layer_files(seg_root)
    catalog_before = (seg_root / "catalog.json").read_bytes()

    def broken(self: Catalog, *args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error", str(self.path))

    monkeypatch.setattr(Catalog, "update", broken)  # after every chunk was renamed into place
    r = put(wclient, "0,0,0", _labels(5, (16, 64, 96)))
    assert r.status_code == 507, r.get_json()
    assert r.get_json()["error"]["code"] == "write_failed" and "nothing was changed" in r.get_json()["error"]["message"]
    assert _layer_files(seg_root) == before
    assert (seg_root / "catalog.json").read_bytes() == catalog_before


def test_put_over_a_damaged_chunk_changes_nothing(wclient: FlaskClient, seg_root: Path) -> None:
    assert put(wclient, "0,0,0", _labels(6, (16, 32, 32))).status_code == 200
    chunk = next((seg_root / "precomputed/v/pred/8_8_40").glob("0-32_0-32_0-16*"))
    chunk.write_bytes(chunk.read_bytes()[:200])
    before = _layer_files(seg_root)
    r = put(wclient, "4,4,2", np.ones((4, 4, 4), np.uint32))
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "chunk_error"
    assert _layer_files(seg_root) == before


def test_put_on_a_full_disk_is_507_and_changes_nothing(tmp_path: Path, small_disk: Path) -> None:
    from precomputed.catalog import Catalog
    from tests.precomputed.stores import assert_layer_stores_equal

    root = make_write_root(small_disk / "root", tmp_path)
    client = create_app({"BLOCKIO_ROOT": str(root), "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()
    first = _labels(7, (16, 32, 32))
    assert put(client, "0,0,0", first).status_code == 200
    before = _layer_files(root)
    catalog_before = (root / "catalog.json").read_bytes()
    free = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - (64 << 10)))  # leave 64 KiB
    big = _labels(8, (16, 64, 96))  # random labels: ~1 MB of chunks in each store
    r = put(client, "0,0,0", big)
    assert r.status_code == 507, r.get_json()
    assert "disk is full" in r.get_json()["error"]["message"]
    assert _layer_files(root) == before  # byte-identical, and no temporary file left behind
    assert (root / "catalog.json").read_bytes() == catalog_before
    filler.unlink()
    assert put(client, "0,0,0", big).status_code == 200
    assert_layer_stores_equal(root, Catalog(root).get("v"), "pred", big[None])


def test_a_write_killed_mid_commit_is_rolled_back_by_the_next_one(seg_root: Path) -> None:
    import subprocess
    import sys
    import textwrap

    from precomputed.block_writes import journal_path, write_block

    before = _layer_files(seg_root)
    # the child dies (no cleanup, as under kill -9) after the third of its renames
    code = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from precomputed import block_writes, file_swap
        calls = []
        real = os.replace
        def dying_replace(src, dst):
            if ".new" in os.path.basename(str(src)):  # a staged chunk going live
                calls.append(dst)
                if len(calls) == 3:
                    os._exit(9)
            real(src, dst)
        os.replace = dying_replace
        block = np.random.default_rng(1).integers(1, 5000, size=(16, 64, 64), dtype=np.uint32)
        block_writes.write_block({str(seg_root)!r}, "v", "pred", (0, 0, 0), block)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr[-800:]
    journal = journal_path(seg_root / "precomputed/v/pred")
    assert journal.exists()
    assert _layer_files(seg_root) != before  # half old, half new: what the kill left
    # the next write, under the same lock, first puts the killed one's old files back
    write_block(seg_root, "v", "pred", (64, 32, 0), np.full((16, 32, 32), 7, np.uint32))
    assert not journal.exists()
    store = Store(seg_root)
    for source in ("precomputed", "zarr"):
        block = store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred", source=source)
        assert not block[:, :, :64].any() and (block[:, 32:, 64:] == 7).all(), source
    assert not [p for p in seg_root.rglob("*.tmp")]
