"""The review page without a browser: table, escaping, 404s, no injected URLs, thumbnails, reviews."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from precomputed.catalog import Catalog, now
from viewer import ReviewLog, build_state, parse_view

from .conftest import make_app, sign_in


def _tamper(root: Path, dataset: str, change: Any) -> None:
    def apply(old: dict[str, Any] | None) -> dict[str, Any]:
        assert old is not None
        new = json.loads(json.dumps(old))
        change(new)
        new["updated"] = now()
        return new

    Catalog(root).update(dataset, apply)


def _source_url(source: Any) -> str:
    if isinstance(source, list):
        source = source[0]
    return source if isinstance(source, str) else str(source["url"])


def test_index_lists_the_dataset(client: FlaskClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    html = resp.text
    assert 'id="ds-demo"' in html and "128 × 128 × 32" in html and "uint8" in html
    assert "8.0 × 8.0 × 40.0" in html and "from user" in html
    assert "<svg class=\"hist\"" in html
    assert "/thumb/demo/xy.png" in html and "/thumb/demo/xz.png" in html
    assert 'class="imputed"' in html  # axes and mips are defaults for a bare .npy


def test_index_links_views(root_copy: Path) -> None:
    # the metrics shown are tested through the real blockio evaluate, in test_queue.py
    html = make_app(root_copy).test_client().get("/").text
    assert "/view/demo?layout=overlay&amp;pred=pred" in html
    assert "/view/demo?layout=compare&amp;pred=pred,pred2" in html or "pred%2Cpred2" in html


def test_index_filters_and_pages(root_copy: Path) -> None:
    record = Catalog(root_copy).get("demo")
    for i in range(30):
        Catalog(root_copy).put({**record, "id": f"copy{i:02d}"})
    client = make_app(root_copy).test_client()
    page1 = client.get("/?per_page=10").text
    assert page1.count('class="dataset"') == 10 and "page 1 of 4" in page1
    page4 = client.get("/?per_page=10&page=4").text
    assert page4.count('class="dataset"') == 1
    filtered = client.get("/?q=copy1").text
    assert filtered.count('class="dataset"') == 10 and 'id="ds-demo"' not in filtered
    assert client.get("/?page=abc").status_code == 400


def test_provenance_detail_is_escaped(root_copy: Path) -> None:
    evil = '<script>alert("x")</script>'
    _tamper(root_copy, "demo", lambda r: r["provenance"].update(voxel_size={"source": "default", "detail": evil}))
    html = make_app(root_copy).test_client().get("/").text
    assert evil not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "src-default" in html  # the imputed voxel size is flagged


@pytest.mark.parametrize(
    "url",
    [
        "/view/nope",
        "/view/demo?layout=overlay&pred=nope",
        "/view/demo?layout=overlay&pred=image",
        "/view/demo?pred=http://evil.example/x",
        "/view/demo?pred=precomputed://http://evil.example/x",
        "/view/demo?layout=compare&pred=pred,http://evil",
        "/view/..%2F..%2Fetc",
        "/thumb/nope/xy.png",
        "/view/demo/state.json?pred=nope",
    ],
)
def test_unknown_datasets_layers_and_urls_are_404(client: FlaskClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code == 404
    assert b"evil.example" not in resp.data or b"no segmentation layer" in resp.data


def test_bad_layout_and_plane_are_400(client: FlaskClient) -> None:
    assert client.get("/view/demo?layout=http://evil").status_code == 400
    assert client.get("/thumb/demo/yz.png").status_code == 400


def test_state_uses_only_catalogued_sources(app: Flask) -> None:
    record = app.extensions["blockio.store"].info("demo")
    state = build_state(record, parse_view(record, "compare", "pred,pred2"), "http://127.0.0.1:5000/").to_json()
    sources = [_source_url(layer["source"]) for layer in state["layers"]]
    assert sources == [f"precomputed://http://127.0.0.1:5000/precomputed/demo/{n}" for n in ("image", "pred", "pred2")]
    assert state["dimensions"] == {"x": [8e-9, "m"], "y": [8e-9, "m"], "z": [4e-8, "m"]}
    assert state["position"] == [64.5, 64.5, 16.5]
    image = state["layers"][0]
    p = record["stats"]["percentiles"]
    assert image["shaderControls"]["normalized"]["range"] == [p["1"], p["99"]]
    assert state["layers"][1]["colorSeed"] == state["layers"][2]["colorSeed"]
    assert state["layout"]["type"] == "row" and [c["layers"] for c in state["layout"]["children"]] == [["image", "pred"], ["image", "pred2"], ["pred", "pred2"]]
    with pytest.raises(ValueError):
        build_state(record, parse_view(record, "overlay", "pred"), "javascript:alert(1)//")


def test_view_page_embeds_the_stateless_client(client: FlaskClient) -> None:
    resp = client.get("/view/demo?layout=overlay&pred=pred", base_url="http://review.example:8123")
    assert resp.status_code == 200
    assert "127.0.0.1" not in resp.text and 'name="token"' not in resp.text
    assert 'href="/view/demo?layout=overlay&amp;pred=pred"' in resp.text
    config = json.loads(resp.text.split('<script type="application/json" id="view-config">', 1)[1].split("</script>", 1)[0])
    assert config["viewerPrefix"] == "/neuroglancer/" and config["preds"] == ["pred"]
    assert [_source_url(layer["source"]) for layer in config["state"]["layers"]] == [
        f"precomputed://http://review.example:8123/precomputed/demo/{n}" for n in ("image", "pred")
    ]
    # the same query gives the same state on any worker: nothing is kept between requests
    state = client.get("/view/demo/state.json?layout=overlay&pred=pred", base_url="http://review.example:8123").get_json()
    assert state == config["state"]
    assert client.get("/view/other/state.json").status_code == 404


def test_thumbnails_are_cached_and_follow_the_layer_version(root_copy: Path) -> None:
    client = make_app(root_copy).test_client()
    first = client.get("/thumb/demo/xy.png")
    assert first.status_code == 200 and first.mimetype == "image/png" and first.data[:8] == b"\x89PNG\r\n\x1a\n"
    cache = root_copy / ".cache" / "thumbnails" / "demo"
    files = sorted(cache.glob("image.xy.*.png"))
    assert len(files) == 1
    # a cached file is served as it is
    files[0].write_bytes(b"\x89PNG cached")
    assert client.get("/thumb/demo/xy.png").data == b"\x89PNG cached"
    # a new layer version makes a new thumbnail and removes the old one
    _tamper(root_copy, "demo", lambda r: r["layers"]["image"].update(version="v2"))
    again = client.get("/thumb/demo/xy.png")
    assert again.data == first.data
    after = sorted(cache.glob("image.xy.*.png"))
    assert len(after) == 1 and after != files
    assert client.get("/thumb/demo/xz.png").status_code == 200


def test_review_post_stores_what_the_browser_read(client: FlaskClient) -> None:
    # no segment selected: the verdict is on the position, (x, y, z) voxels
    stored = client.post(
        "/view/demo/review", data={"verdict": "missing", "note": "a cell", "position": "64,64,16"}, headers={"Accept": "application/json"}
    ).get_json()["stored"]
    assert stored[0]["position"] == [64, 64, 16] and stored[0]["segment"] is None
    stored = client.post("/view/demo/review", json={"layer": "pred", "verdict": "false_merge", "note": "<b>x</b>", "segments": [7, 5]}).get_json()["stored"]
    assert [r["segment"] for r in stored] == [5, 7]
    assert client.post("/view/demo/review", json={"verdict": "great", "segments": [5]}).status_code == 400
    assert client.post("/view/demo/review", json={"layer": "image", "verdict": "correct", "segments": [5]}).status_code == 404
    assert client.post("/view/demo/review", json={"verdict": "correct"}).status_code == 400  # neither segments nor a position
    assert client.post("/view/demo/review", json={"verdict": "correct", "position": [128, 0, 0]}).status_code == 400  # outside
    assert client.post("/view/demo/review", json={"verdict": "correct", "segments": list(range(1, 102))}).status_code == 400
    # a plain form post is sent back to the table
    assert client.post("/view/demo/review", data={"verdict": "correct", "segments": "5,7"}).status_code == 303

    html = client.get("/").text
    assert "false merge" in html and "segment 7" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    exported = client.get("/reviews.json").get_json()["reviews"]
    assert [r["verdict"] for r in exported] == ["missing", "false_merge", "false_merge", "correct", "correct"]
    rows = list(csv.DictReader(io.StringIO(client.get("/reviews.csv").text)))
    assert [r["segment"] for r in rows] == ["", "5", "7", "5", "7"] and rows[0]["position"] == "64 64 16"
    assert client.get("/reviews.json?dataset=other").get_json()["reviews"] == []


def test_review_log_csv_neutralises_formulas(tmp_path: Path) -> None:
    log = ReviewLog(tmp_path)
    log.add(dataset="d", layer="p", verdict="correct", segment=3, note="=HYPERLINK(\"http://evil\")")
    from viewer import to_csv

    row = list(csv.DictReader(io.StringIO(to_csv(log.all()))))[0]
    assert row["note"].startswith("'=")
    with pytest.raises(ValueError):
        log.add(dataset="d", layer="p", verdict="correct")
    with pytest.raises(ValueError):
        log.add(dataset="d", layer="p", verdict="correct", segment=-1)


def test_concurrent_review_writes_lose_nothing(tmp_path: Path) -> None:
    threads, per = 8, 15

    def work(k: int) -> None:
        log = ReviewLog(tmp_path)  # one log object per writer, as separate processes would have
        for i in range(per):
            log.add(dataset="d", layer="p", verdict="correct", segment=k * 1000 + i + 1)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    reviews = ReviewLog(tmp_path).all()
    assert len(reviews) == threads * per
    assert len({r["segment"] for r in reviews}) == threads * per
    assert not list(tmp_path.glob(".reviews.*.tmp"))


def test_a_dataset_without_predictions_views_the_raw_image(root_copy: Path) -> None:
    catalog = Catalog(root_copy)
    record = catalog.get("demo")
    catalog.put({**record, "id": "rawonly", "layers": {"image": record["layers"]["image"]}})
    client = make_app(root_copy).test_client()
    assert client.get("/view/rawonly").status_code == 200
    assert client.get("/view/rawonly?layout=compare").status_code == 400
    assert 'id="review"' not in client.get("/view/rawonly").text


@pytest.mark.parametrize("layer", [["a", "b"], {"a": 1}, 7], ids=["list", "dict", "number"])
def test_a_review_layer_that_is_not_a_string_is_400(client: FlaskClient, layer: Any) -> None:
    resp = client.post("/view/demo/review", json={"layer": layer, "verdict": "correct", "segments": [5]})
    assert resp.status_code == 400 and "layer must be a string" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("segments", [[True], ["5"], [0], [2**64], [1.5], {"a": 1}, "x,y"], ids=["bool", "text", "zero", "big", "float", "dict", "words"])
def test_review_segments_must_be_ids(client: FlaskClient, segments: Any) -> None:
    resp = client.post("/view/demo/review", json={"verdict": "correct", "segments": segments})
    assert resp.status_code == 400 and "segment" in resp.get_json()["error"]["message"]


def test_a_deeply_nested_review_body_is_400(client: FlaskClient) -> None:
    body = b'{"token": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    resp = client.post("/view/demo/review", data=body, content_type="application/json")
    assert resp.status_code == 400 and "nested deeper" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("text", ["{not json", '{"reviews": 3}', '{"reviews": [1]}', "[" * 5000 + "]" * 5000], ids=["syntax", "shape", "entry", "deep"])
def test_a_malformed_review_log_leaves_the_page_up(root_copy: Path, text: str) -> None:
    (root_copy / "reviews.json").write_text(text)
    app = make_app(root_copy)
    client = app.test_client()
    sign_in(app, client)  # a reviewer, so the verdict below reaches the malformed log
    page = client.get("/")
    assert page.status_code == 200 and 'id="reviews-problem"' in page.text and "reviews.json" in page.text
    assert str(root_copy) not in page.text and "demo" in page.text
    view = client.get("/view/demo?layout=overlay&pred=pred")
    assert view.status_code == 200 and 'id="reviews-problem"' in view.text
    exported = client.get("/reviews.json")
    assert exported.status_code == 503 and exported.get_json()["error"]["code"] == "reviews_unavailable"
    # never written over while malformed
    assert client.post("/view/demo/review", json={"verdict": "missing", "position": [1, 2, 3]}).status_code == 503
    assert (root_copy / "reviews.json").read_text() == text
