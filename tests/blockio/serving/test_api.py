"""The REST API: records, blocks, conditional requests, limits, errors."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.serving.app import create_app


def test_datasets_paged(client: FlaskClient) -> None:
    body = client.get("/api/datasets?per_page=1").get_json()
    assert body["total"] == 2 and len(body["items"]) == 1 and body["items"][0]["id"] == "g"
    assert client.get("/api/datasets?page=2&per_page=1").get_json()["items"][0]["id"] == "v"
    assert client.get("/api/datasets?page=0").status_code == 400


def test_one_record(client: FlaskClient) -> None:
    record = client.get("/api/datasets/v").get_json()
    assert record["shape"] == [100, 80, 24]
    err = client.get("/api/datasets/nope")
    assert err.status_code == 404 and err.get_json()["error"]["code"] == "dataset_not_found"


def test_block_npy_and_headers(client: FlaskClient, served_volume: np.ndarray) -> None:
    resp = client.get("/api/datasets/v/block?offset=10,20,3&size=40,30,8")
    assert resp.status_code == 200 and resp.mimetype == "application/x-npy"
    block = np.load(io.BytesIO(resp.data))
    np.testing.assert_array_equal(block, served_volume[3:11, 20:50, 10:50])
    assert resp.headers["X-Block-Shape"] == "8,30,40"
    assert resp.headers["X-Block-Dtype"] == "uint16"
    assert resp.headers["X-Block-Axes"] == "zyx"
    assert resp.headers["X-Block-Offset"] == "10,20,3"
    assert resp.headers["ETag"] and "max-age" in resp.headers["Cache-Control"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_block_raw(client: FlaskClient, served_volume: np.ndarray) -> None:
    resp = client.get("/api/datasets/v/block?offset=0,0,0&size=16,8,4&format=raw")
    got = np.frombuffer(resp.data, dtype=np.uint16).reshape(4, 8, 16)
    np.testing.assert_array_equal(got, served_volume[0:4, 0:8, 0:16])


def test_etag_if_none_match(client: FlaskClient) -> None:
    url = "/api/datasets/v/block?offset=0,0,0&size=16,16,4"
    tag = client.get(url).headers["ETag"]
    again = client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["ETag"] == tag
    assert client.get("/api/datasets/v/block?offset=1,0,0&size=16,16,4", headers={"If-None-Match": tag}).status_code == 200


def test_clip_sends_true_offset(client: FlaskClient) -> None:
    resp = client.get("/api/datasets/v/block?offset=90,-5,0&size=20,20,4&boundary=clip")
    assert resp.headers["X-Block-Offset"] == "90,0,0" and resp.headers["X-Block-Shape"] == "4,15,10"


def test_normalized_block_is_float32(client: FlaskClient) -> None:
    resp = client.get("/api/datasets/v/block?offset=0,0,0&size=8,8,8&normalize=percentile")
    block = np.load(io.BytesIO(resp.data))
    assert block.dtype == np.float32 and 0 <= block.min() and block.max() <= 1


@pytest.mark.parametrize(
    ("query", "status", "needle"),
    [
        ("offset=95,0,0&size=10,10,4", 400, "bounds are [0,0,0 .. 100,80,24)"),
        ("offset=0,0&size=10,10,4", 400, "offset must be three integers"),
        ("size=10,10,4", 400, "required"),
        ("offset=0,0,0&size=10,10,4&mip=99", 400, "mip"),
        ("offset=0,0,0&size=10,10,4&mip=x", 400, "mip must be an integer"),
        ("offset=0,0,0&size=10,10,4&boundary=wrap", 400, "boundary"),
        ("offset=0,0,0&size=10,10,4&format=tiff", 400, "format"),
        ("offset=0,0,0&size=10,10,4&layer=labels", 404, "no layer"),
        ("offset=0,0,0&size=1024,1024,1024", 413, "exceeds the limit"),
    ],
)
def test_block_errors_are_json(client: FlaskClient, query: str, status: int, needle: str) -> None:
    resp = client.get(f"/api/datasets/v/block?{query}")
    assert resp.status_code == status
    assert needle in resp.get_json()["error"]["message"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    resp = client.get("/api/nothing")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_byte_limit_answers_413_before_reading(served_root) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_MAX_BLOCK_BYTES": 1000})
    resp = app.test_client().get("/api/datasets/v/block?offset=0,0,0&size=32,32,1")
    assert resp.status_code == 413
    assert app.extensions["blockio.store"].cache_stats()["memory"]["misses"] == 0


def test_saturated_workers_answer_503_with_retry_after(served_root) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_MAX_INFLIGHT": 1, "BLOCKIO_QUEUE_TIMEOUT_S": 0.05})
    store = app.extensions["blockio.store"]
    real = store.read_block
    gate = threading.Event()

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        gate.wait(5)
        return real(*args, **kwargs)

    store.read_block = slow
    results: list[int] = []
    t = threading.Thread(target=lambda: results.append(app.test_client().get("/api/datasets/v/block?offset=0,0,0&size=8,8,8").status_code))
    t.start()
    time.sleep(0.2)
    busy = app.test_client().get("/api/datasets/v/block?offset=0,0,0&size=8,8,8")
    gate.set()
    t.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert results == [200]


def test_healthz_metrics_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json()["status"] == "ok"
    client.get("/api/datasets/v/block?offset=0,0,0&size=8,8,8")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'blockio_http_requests_total{method="GET",route="/api/datasets/<dataset>/block",status="200"}' in text
    assert "blockio_http_request_seconds_bucket" in text and 'blockio_cache_misses{tier="memory"}' in text
    assert "blockio_http_sent_bytes_total" in text
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/datasets/{dataset}/block" in doc["paths"]


def test_cors_allowlist(served_root) -> None:  # type: ignore[no-untyped-def]
    app: Flask = create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_CORS_ORIGINS": "http://a.example, http://b.example"})
    c = app.test_client()
    assert c.get("/healthz", headers={"Origin": "http://b.example"}).headers["Access-Control-Allow-Origin"] == "http://b.example"
    assert "Access-Control-Allow-Origin" not in c.get("/healthz", headers={"Origin": "http://evil.example"}).headers


# -- bad input is a 4xx, answers reveal nothing private ---------------------------------------


def _root_copy(served_root, tmp_path):  # type: ignore[no-untyped-def]
    import shutil

    dest = tmp_path / "root"
    shutil.copytree(served_root, dest, ignore=shutil.ignore_patterns(".cache"))
    return dest


def _strict_json(text: str):  # type: ignore[no-untyped-def]
    import json

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_in_a_record_lists_it_as_unavailable_in_valid_json(served_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = _root_copy(served_root, tmp_path)
    catalog = root / "catalog.json"
    import json

    data = json.loads(catalog.read_text())
    data["datasets"]["v"]["stats"]["mean"] = float("nan")
    catalog.write_text(json.dumps(data))  # Python writes the NaN that no JSON parser reads
    client = create_app({"BLOCKIO_ROOT": str(root)}).test_client()
    listing = client.get("/api/datasets")
    assert listing.status_code == 200
    items = {item["id"]: item for item in _strict_json(listing.get_data(as_text=True))["items"]}
    assert items["g"]["shape"] == [100, 80, 24]
    assert items["v"]["error"]["code"] == "dataset_unavailable" and "stats.mean" in items["v"]["error"]["message"]
    one = client.get("/api/datasets/v")
    assert one.status_code == 503 and _strict_json(one.get_data(as_text=True))["error"]["code"] == "dataset_unavailable"


def test_errors_name_paths_relative_to_the_root_and_list_no_ids(served_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = _root_copy(served_root, tmp_path)
    (root / "precomputed" / "v" / "image" / "info").unlink()
    client = create_app({"BLOCKIO_ROOT": str(root)}).test_client()
    missing = client.get("/api/datasets/nope").get_data(as_text=True)
    assert str(root) not in missing and "'g'" not in missing and "g, v" not in missing
    broken = client.get("/api/datasets/v/block?offset=0,0,0&size=8,8,8")
    text = broken.get_data(as_text=True)
    assert broken.status_code == 500 and broken.get_json()["error"]["code"] == "chunk_error"
    assert str(tmp_path) not in text and "precomputed/v/image" in text


def test_if_none_match_star_validates_first(client: FlaskClient) -> None:
    star = {"If-None-Match": "*"}
    assert client.get("/api/datasets/v/block?offset=95,0,0&size=10,10,4", headers=star).status_code == 400
    assert client.get("/api/datasets/v/block?offset=0,0,0&size=10,10,4&mip=9", headers=star).status_code == 400
    assert client.get("/api/datasets/v/block?offset=0,0,0&size=10,10,4&normalize=l2", headers=star).status_code == 400
    assert client.get("/api/datasets/v/block?offset=0,0,0&size=10,10,4&source=n5", headers=star).status_code == 400
    assert client.get("/api/datasets/v/block?offset=0,0,0&size=10,10,4&layer=labels", headers=star).status_code == 404
    assert client.get("/api/datasets/v/block?offset=0,0,0&size=10,10,4", headers=star).status_code == 304


def test_an_id_with_a_trailing_newline_is_refused(client: FlaskClient) -> None:
    for url in ("/api/datasets/v%0A", "/api/datasets/v%0A/block?offset=0,0,0&size=8,8,8"):
        resp = client.get(url)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_request", url


def test_byte_limit_counts_the_layers_own_dtype(served_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from precomputed.segmentation import write_segmentation

    root = _root_copy(served_root, tmp_path)
    labels = np.arange(24 * 80 * 100, dtype=np.uint64).reshape(24, 80, 100) + np.uint64(2**40)
    write_segmentation(root, "v", "seg64", labels, provenance={"model": "test"}, meshes=False, dtype="uint64")
    client = create_app({"BLOCKIO_ROOT": str(root), "BLOCKIO_MAX_BLOCK_BYTES": 4096}).test_client()
    query = "offset=0,0,0&size=16,16,4"  # 1024 voxels: 2 KiB of uint16 image, 8 KiB of uint64 labels
    assert client.get(f"/api/datasets/v/block?{query}").status_code == 200
    resp = client.get(f"/api/datasets/v/block?{query}&layer=seg64")
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "too_large" and "uint64" in resp.get_json()["error"]["message"]


def test_the_store_enforces_the_apps_block_limit(served_root) -> None:  # type: ignore[no-untyped-def]
    from blockio.errors import TooLarge

    app = create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_MAX_BLOCK_VOXELS": 64**3 // 8})
    with pytest.raises(TooLarge):
        app.extensions["blockio.store"].read_block("v", (0, 0, 0), (64, 64, 9))
