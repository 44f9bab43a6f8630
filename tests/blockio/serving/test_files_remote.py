"""The app on an s3:// root: blocks and precomputed files (Range, gzip, ETag, 404s) answer as on the local root."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.serving.app import create_app
from precomputed.storage import open_root
from tests.blockio.remote_roots import bucket_environment, build_root, copy_root, counting_s3_gets
from tests.cloud_servers import S3Server, s3_server  # noqa: F401

pytestmark = pytest.mark.cloud

CHUNK = "4_4_40/32-64_0-32_0-16"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[tuple[Path, str]]:
    local = build_root(tmp_path_factory.mktemp("files-remote"))
    with bucket_environment(s3_server, None, tmp_path_factory.mktemp("aws")):
        url = f"s3://{s3_server.create_bucket()}/root"
        copy_root(local, url)
        yield local, url


@pytest.fixture(scope="module")
def clients(roots: tuple[Path, str]) -> tuple[FlaskClient, FlaskClient]:
    local, url = roots
    apps: list[Flask] = [create_app({"BLOCKIO_ROOT": str(local), "TESTING": True}), create_app({"BLOCKIO_ROOT": url, "TESTING": True})]
    return apps[0].test_client(), apps[1].test_client()


@pytest.mark.parametrize(
    "query",
    [
        "offset=0,0,0&size=90,70,20",
        "offset=5,7,3&size=40,28,9&mip=1",
        "offset=-5,-5,0&size=30,30,4&boundary=zero&format=npy",
        "offset=60,50,10&size=50,40,20&boundary=clip&source=zarr",
        "offset=10,10,2&size=20,20,8&layer=seg",
    ],
)
def test_blocks_from_the_bucket_equal_the_local_ones(clients: tuple[FlaskClient, FlaskClient], query: str) -> None:
    here, there = (c.get(f"/api/datasets/v/block?{query}") for c in clients)
    assert here.status_code == there.status_code == 200, there.get_data(as_text=True)
    assert there.data == here.data and there.headers["X-Block-Shape"] == here.headers["X-Block-Shape"]


def test_dataset_list_and_records_come_from_the_bucket(clients: tuple[FlaskClient, FlaskClient]) -> None:
    here, there = (c.get("/api/datasets/v") for c in clients)
    assert there.status_code == 200 and there.get_json() == here.get_json()


@pytest.mark.parametrize("path", ["v/image/info", f"v/image/{CHUNK}", f"v/seg/{CHUNK}", "v/image/checksums/4_4_40.json", f"g/image/{CHUNK}"])
def test_files_from_the_bucket_equal_the_local_ones(clients: tuple[FlaskClient, FlaskClient], path: str) -> None:
    here, there = (c.get(f"/precomputed/{path}") for c in clients)
    assert here.status_code == there.status_code == 200
    assert there.data == here.data and there.mimetype == here.mimetype
    assert there.headers.get("Content-Encoding") == here.headers.get("Content-Encoding")
    assert there.headers["Access-Control-Allow-Origin"] == "*" and there.headers["Accept-Ranges"] == "bytes"


def test_gz_twins_are_sent_with_content_encoding(clients: tuple[FlaskClient, FlaskClient]) -> None:
    resp = clients[1].get(f"/precomputed/g/image/{CHUNK}")
    assert resp.headers["Content-Encoding"] == "gzip" and len(gzip.decompress(resp.data)) == 32 * 32 * 16 * 2


def test_an_object_uploaded_with_content_encoding_is_sent_with_it(roots: tuple[Path, str], clients: tuple[FlaskClient, FlaskClient]) -> None:
    # what CloudFiles writes to a bucket for a compressed chunk: the plain name, Content-Encoding: gzip
    local, url = roots
    storage = open_root(url)
    payload = (local / "precomputed/v/image" / CHUNK).read_bytes()
    storage.cf.put("precomputed/v/image/4_4_40/extra-gzip-object", payload, compress="gzip", content_type="application/octet-stream")
    resp = clients[1].get("/precomputed/v/image/4_4_40/extra-gzip-object")
    assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip" and gzip.decompress(resp.data) == payload
    part = clients[1].get("/precomputed/v/image/4_4_40/extra-gzip-object", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.headers["Content-Encoding"] == "gzip" and part.data == resp.data[:10]


def test_range_requests_read_only_the_range(roots: tuple[Path, str], clients: tuple[FlaskClient, FlaskClient]) -> None:
    whole = (roots[0] / "precomputed/v/image" / CHUNK).read_bytes()
    for header, expected, first, last in (("bytes=100-199", whole[100:200], 100, 199), ("bytes=-50", whole[-50:], len(whole) - 50, len(whole) - 1), (f"bytes={len(whole) - 5}-", whole[-5:], len(whole) - 5, len(whole) - 1)):
        here, there = (c.get(f"/precomputed/v/image/{CHUNK}", headers={"Range": header}) for c in clients)
        assert there.status_code == here.status_code == 206 and there.data == here.data == expected, header
        assert there.headers["Content-Range"] == here.headers["Content-Range"] == f"bytes {first}-{last}/{len(whole)}"
    with counting_s3_gets() as gets:
        clients[1].get(f"/precomputed/v/image/{CHUNK}", headers={"Range": "bytes=100-199"})
    assert gets.ranges == ["bytes=100-199"]  # the bucket sent those 100 bytes, not the file
    gz_whole = (roots[0] / "precomputed/g/image" / (CHUNK + ".gz")).read_bytes()
    part = clients[1].get(f"/precomputed/g/image/{CHUNK}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == gz_whole[:10] and part.headers["Content-Encoding"] == "gzip"
    bad = clients[1].get(f"/precomputed/v/image/{CHUNK}", headers={"Range": f"bytes={len(whole) + 10}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(whole)}" and bad.headers["Access-Control-Allow-Origin"] == "*"


def test_conditional_get_from_the_bucket(clients: tuple[FlaskClient, FlaskClient]) -> None:
    first = clients[1].get("/precomputed/v/image/info")
    again = clients[1].get("/precomputed/v/image/info", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize(
    "path",
    ["v/image/../../catalog.json", "v/image/%2e%2e/%2e%2e/catalog.json", "v/image/info%00", "v/image//info", "v/image/4_4_40/../info", "v/nope/info", "nope/image/info", "v/image/missing", "v/image/..%5c..%5ccatalog.json"],
)
def test_nothing_outside_a_catalogued_layer(clients: tuple[FlaskClient, FlaskClient], path: str) -> None:
    resp = clients[1].get(f"/precomputed/{path}")
    assert resp.status_code == 404 and b"datasets" not in resp.data and resp.headers["Access-Control-Allow-Origin"] == "*"


def test_cloudvolume_reads_the_bucket_through_the_server(roots: tuple[Path, str], clients: tuple[FlaskClient, FlaskClient]) -> None:
    from blockio.store import Store
    from tests.live_server import LiveServer

    server = LiveServer(create_app({"BLOCKIO_ROOT": roots[1], "TESTING": True}))
    try:
        from cloudvolume import CloudVolume

        for dataset in ("v", "g"):
            cv = CloudVolume(f"{server.url}/precomputed/{dataset}/image", progress=False)
            assert np.array_equal(np.asarray(cv[:, :, :])[..., 0].T, Store(roots[0]).read_block(dataset, (0, 0, 0), (90, 70, 20)))
    finally:
        server.stop()
