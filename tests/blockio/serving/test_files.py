"""The precomputed file server: CORS, gzip, ranges, traversal, and real readers over HTTP."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
from cloudvolume import CloudVolume
from flask.testing import FlaskClient


def test_info_is_json_with_cors(client: FlaskClient) -> None:
    resp = client.get("/precomputed/v/image/info")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json()["type"] == "image" and resp.headers["Access-Control-Allow-Origin"] == "*"


def test_gz_chunks_sent_with_content_encoding(client: FlaskClient, served_root: Path) -> None:
    resp = client.get("/precomputed/g/image/4_4_40/0-32_0-32_0-16")
    assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert len(gzip.decompress(resp.data)) == 32 * 32 * 16 * 2


def test_range_requests(client: FlaskClient, served_root: Path) -> None:
    whole = (served_root / "precomputed/v/image/4_4_40/0-32_0-32_0-16").read_bytes()
    part = client.get("/precomputed/v/image/4_4_40/0-32_0-32_0-16", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    bad = client.get("/precomputed/v/image/4_4_40/0-32_0-32_0-16", headers={"Range": f"bytes={len(whole) + 10}-"})
    assert bad.status_code == 416 and bad.headers["Access-Control-Allow-Origin"] == "*"


def test_conditional_get(client: FlaskClient) -> None:
    first = client.get("/precomputed/v/image/info")
    again = client.get("/precomputed/v/image/info", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and first.headers["Last-Modified"]


TRAVERSALS = [
    "../../catalog.json",
    "..%2f..%2fcatalog.json",
    "%2e%2e/%2e%2e/catalog.json",
    "%2e%2e%2f%2e%2e%2fcatalog.json",
    "..%5c..%5ccatalog.json",
    "..\\..\\catalog.json",
    "info%00",
    "info%00.png",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "./info",
    "4_4_40/../info",
    "link-out",
    "4_4_40/link-dir/secret",
]


@pytest.fixture
def planted(served_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    outside = tmp_path / "secret"
    outside.write_text("top secret")
    layer = served_root / "precomputed/v/image"
    (layer / "link-out").symlink_to(outside)
    (layer / "4_4_40" / "link-dir").symlink_to(tmp_path)
    yield
    (layer / "link-out").unlink()
    (layer / "4_4_40" / "link-dir").unlink()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_get_404(client: FlaskClient, planted: None, path: str) -> None:
    resp = client.get("/precomputed/v/image/" + path)
    assert resp.status_code == 404, path
    assert b"top secret" not in resp.data and b"datasets" not in resp.data
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_only_catalogued_layers(client: FlaskClient) -> None:
    assert client.get("/precomputed/v/labels/info").status_code == 404
    assert client.get("/precomputed/nope/image/info").status_code == 404


def test_traversal_opens_nothing_outside_the_root(client: FlaskClient, planted: None, served_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    import builtins

    real_builtin_open = builtins.open

    def spy_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(file) if not isinstance(file, int) else str(file))
        return real_builtin_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    for path in TRAVERSALS:
        client.get("/precomputed/v/image/" + path)
    root = str(served_root.resolve())
    assert all(p.startswith(root) or p.isdigit() for p in opened), [p for p in opened if not p.startswith(root)]


def test_cloudvolume_and_tensorstore_read_over_http(live_server, served_volume: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    for dataset in ("v", "g"):
        url = f"{live_server.url}/precomputed/{dataset}/image"
        cv = CloudVolume(f"precomputed://{url}", progress=False, fill_missing=False)
        np.testing.assert_array_equal(np.asarray(cv[0:100, 0:80, 0:24])[..., 0].T, served_volume)
        store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"{url}/"}).result()
        np.testing.assert_array_equal(np.asarray(store.read().result())[..., 0].T, served_volume)
