"""PUT blocks into a segmentation layer: auth, alignment, pyramid, cache, concurrency."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.serving.app import create_app
from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest
from precomputed.pyramid import downsample_mode
from precomputed.segmentation import write_segmentation

TOKEN = "s3cret"


@pytest.fixture
def seg_root(tmp_path: Path) -> Path:
    np.save(tmp_path / "v.npy", np.zeros((16, 64, 96), dtype=np.uint8))
    root = tmp_path / "root"
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(root, "v", "pred", np.zeros((16, 64, 96), dtype=np.uint32), provenance={"model": "test"}, meshes=False)
    return root


@pytest.fixture
def wclient(seg_root: Path) -> FlaskClient:
    return create_app({"BLOCKIO_ROOT": str(seg_root), "BLOCKIO_WRITE_TOKEN": TOKEN}).test_client()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def put(client: FlaskClient, offset: str, block: np.ndarray, token: str | None = TOKEN, layer: str = "pred"):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.put(f"/api/datasets/v/layers/{layer}/block?offset={offset}", data=_npy(block), headers=headers)


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
