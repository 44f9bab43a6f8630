"""PUT blocks into a segmentation layer on an s3:// root (moto): both stores, every mip, manifests; failures change nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.serving.app import create_app
from blockio.store import Store
from precomputed.catalog import Catalog
from precomputed.errors import StoreError
from precomputed.ingest import IngestOptions, ingest
from precomputed.pyramid import downsample_mode
from precomputed.segmentation import write_segmentation
from precomputed.storage import open_root
from tests.cloud_servers import s3_root, s3_server  # noqa: F401
from tests.precomputed.test_ingest_remote import bucket_tree, local_tree

pytestmark = pytest.mark.cloud

TOKEN = "s3cret"
REPO = Path(__file__).resolve().parents[3]
SHAPE_ZYX = (16, 64, 96)


def _make(root: str | Path, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros(SHAPE_ZYX, dtype=np.uint8))
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(root, "v", "pred", np.zeros(SHAPE_ZYX, dtype=np.uint32), provenance={"model": "test"}, meshes=False)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def put(client: FlaskClient, offset: str, block: np.ndarray):  # type: ignore[no-untyped-def]
    return client.put(f"/api/datasets/v/layers/pred/block?offset={offset}", data=_npy(block), headers={"Authorization": f"Bearer {TOKEN}"})


def _trees(url: str) -> tuple[dict[str, str], dict[str, str]]:
    meta = Catalog(url).get("v")["layers"]["pred"]
    storage = open_root(url)
    return bucket_tree(storage, meta["path"]), bucket_tree(storage, meta["zarr"])


A = np.full((16, 32, 32), 7, np.uint32)
B = np.full((5, 10, 9), 9, np.uint32)


def test_put_on_s3_updates_both_stores_every_mip_and_manifests_as_locally(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    local = tmp_path / "local"
    (tmp_path / "l").mkdir()
    _make(local, tmp_path / "l")
    _make(s3_root, tmp_path)
    store = Store(s3_root)
    assert not store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred").any()
    before = store.info("v")["layers"]["pred"]["version"]
    for root in (str(local), s3_root):
        client = create_app({"BLOCKIO_ROOT": root, "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()
        r = put(client, "32,0,0", A)
        assert r.status_code == 200 and r.get_json()["aligned"] is True and r.get_json()["chunks"]["zarr"] > 0
        r = put(client, "3,40,2", B)
        assert r.status_code == 200 and r.get_json()["aligned"] is False
    meta, want_meta = Catalog(s3_root).get("v")["layers"]["pred"], Catalog(local).get("v")["layers"]["pred"]
    assert meta["version"] != before and set(meta["stale"]) == {"mesh", "segment_properties"}
    # every chunk object of every mip, in both stores, and the checksum manifests: the bytes a local PUT writes
    layer, labels = _trees(s3_root)
    files = {k: v for k, v in local_tree(local, want_meta["path"]).items() if not k.endswith(".lock")}  # a local root's file locks
    assert layer == files and any(k.startswith("checksums/") for k in layer)
    assert labels == local_tree(local, want_meta["zarr"])
    want = np.zeros(SHAPE_ZYX, np.uint32)
    want[:, 0:32, 32:64] = 7
    want[2:7, 40:50, 3:12] = 9
    import time

    time.sleep(1.1)  # the bucket catalog's re-read TTL: the store sees the new version, not its cached zeros
    np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (96, 64, 16), layer="pred"), want)
    record, level = store.info("v"), want[None]
    for mip in range(1, len(record["mips"])):
        level = downsample_mode(level, tuple(record["mips"][mip]["factor"]))
        x, y, z = record["mips"][mip]["shape"]
        np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (x, y, z), layer="pred", mip=mip), level[0], err_msg=f"mip {mip}")
        np.testing.assert_array_equal(store.read_block("v", (0, 0, 0), (x, y, z), layer="pred", mip=mip, source="zarr"), level[0], err_msg=f"zarr mip {mip}")
    storage = open_root(s3_root)
    assert not list(storage.list(".staging/")) and not list(storage.list(".locks/"))


def test_refused_and_failed_puts_on_s3_change_nothing(s3_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    _make(s3_root, tmp_path)
    client = create_app({"BLOCKIO_ROOT": s3_root, "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()
    assert put(client, "32,0,0", A).status_code == 200
    storage = open_root(s3_root)
    before, record = _trees(s3_root), Catalog(s3_root).get("v")
    assert put(client, "90,0,0", A).status_code == 400  # leaves the layer
    assert put(client, "0,0,0", -np.ones((4, 4, 4), np.int32)).status_code == 400
    assert _trees(s3_root) == before

    # the catalog write fails after every new chunk was PUT in place: each is put back
    def lost(self: Catalog, *args: object, **kwargs: object) -> None:
        raise StoreError("the network went away")

    monkeypatch.setattr(Catalog, "update", lost)
    r = put(client, "3,40,2", B)
    assert r.status_code >= 500
    monkeypatch.undo()
    assert _trees(s3_root) == before and Catalog(s3_root).get("v") == record
    assert not list(storage.list(".staging/")) and not list(storage.list(".locks/"))


def test_a_put_killed_mid_write_on_s3_is_undone_by_the_next(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    _make(s3_root, tmp_path)
    before = _trees(s3_root)
    code = (
        "import os, numpy as np\n"
        "from precomputed import block_writes\nfrom precomputed.catalog import Catalog\n"
        "Catalog.update = lambda *a, **k: os._exit(9)  # killed after its chunks were PUT, before the catalog write\n"
        f"block_writes.write_block({s3_root!r}, 'v', 'pred', (3, 40, 2), np.full((5, 10, 9), 9, np.uint32))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    storage = open_root(s3_root)
    assert _trees(s3_root) != before and storage.exists(".staging/v/pred-write/journal.json") and storage.exists(".locks/v.pred.lock")
    # the next write takes the dead writer's lease at once, restores its chunks, then writes its own
    client = create_app({"BLOCKIO_ROOT": s3_root, "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()
    assert put(client, "32,0,0", A).status_code == 200
    import time

    time.sleep(1.1)
    want = np.zeros(SHAPE_ZYX, np.uint32)
    want[:, 0:32, 32:64] = 7
    np.testing.assert_array_equal(Store(s3_root).read_block("v", (0, 0, 0), (96, 64, 16), layer="pred"), want)
    assert not list(storage.list(".staging/")) and not list(storage.list(".locks/"))
