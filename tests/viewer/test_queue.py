"""Review queues through the page's API, and the metrics of the real ``blockio evaluate`` on the index page."""

from __future__ import annotations

import csv
import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import neuroglancer
import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.cli.main import main
from tests.live_server import LiveServer

from .conftest import make_app, sign_in


def test_index_shows_what_blockio_evaluate_stores(root_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--root", str(root_copy), "demo", "--pred", "pred2", "--truth", "pred", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    html = make_app(root_copy).test_client().get("/").text
    line = html.split('data-truth="pred"', 1)[1].split("</div>", 1)[0]  # nested under the truth layer's name
    assert line.startswith(">vs pred: ")
    assert f"adapted Rand error {result['adapted_rand_error']:.4f}" in line
    assert f"VI split {result['vi_split']:.4f}" in line and f"VI merge {result['vi_merge']:.4f}" in line
    assert f"true segments {result['truth_segments']}" in line and result["adapted_rand_error"] > 0


def _plan(root: Path, *extra: str) -> None:
    args = ["review", "plan", "--root", str(root), "demo", "--pred", "pred2", "--vs", "pred", "--strategy", "disagreement", "--name", "merges", *extra]
    assert main(args) == 0


@pytest.fixture
def queued(root_copy: Path) -> Flask:
    _plan(root_copy)  # pred2 merges four pairs of pred's segments, so pred splits each: four items
    return make_app(root_copy)


def _second(app: Flask, name: str) -> FlaskClient:
    other = app.test_client()
    sign_in(app, other, name=name)
    return other


def test_two_reviewers_get_different_items_and_close_them(queued: Flask, client: FlaskClient) -> None:
    bob = _second(queued, "bob")
    first = client.post("/api/review/queues/merges/next").get_json()
    again = client.post("/api/review/queues/merges/next").get_json()
    theirs = bob.post("/api/review/queues/merges/next").get_json()
    item = first["item"]
    assert item["kind"] == "split" and item["reviewer"] == "rev" and len(item["segments"]) == 1
    assert again["item"]["id"] == item["id"]  # the same until closed
    assert theirs["item"]["id"] != item["id"] and theirs["item"]["reviewer"] == "bob"
    x, y, z = item["position"]
    assert f"position={x},{y},{z}" in first["view_url"].replace("%2C", ",") and "layout=compare" in first["view_url"]
    assert f"segments={item['segment']}" in first["view_url"]

    url = f"/api/review/queues/merges/items/{item['id']}/verdict"
    assert bob.post(url, json={"verdict": "false_merge"}).status_code == 409  # not bob's
    assert client.post(url, json={"verdict": "maybe"}).status_code == 400
    assert queued.test_client().post(url, json={"verdict": "false_merge"}).status_code in (401, 403)
    done = client.post(url, json={"verdict": "false_merge", "note": "two cells"}).get_json()
    assert done["item"]["state"] == "done" and done["progress"] == {"open": 2, "assigned": 1, "done": 1, "total": 4}
    stored = client.get("/api/datasets/demo/reviews").get_json()["items"]
    assert [(r["segment"], r["verdict"], r["reviewer"]) for r in stored] == [(item["segment"], "false_merge", "rev")]
    assert client.post(url, json={"verdict": "correct"}).status_code == 409  # closed

    following = client.post("/api/review/queues/merges/next").get_json()["item"]
    assert following["id"] not in (item["id"], theirs["item"]["id"])
    released = bob.post(f"/api/review/queues/merges/items/{theirs['item']['id']}/release").get_json()["item"]
    assert released["state"] == "open" and released["reviewer"] is None

    html = client.get("/").text
    row = html.split('id="queue-merges"', 1)[1].split("</tr>", 1)[0]
    assert "1 of 4" in row and 'data-reviewer="rev">rev: 1 done, 1 assigned' in row and "bob" not in row


def test_exports_json_csv_and_an_annotation_layer(queued: Flask, client: FlaskClient) -> None:
    item = client.post("/api/review/queues/merges/next").get_json()["item"]
    client.post(f"/api/review/queues/merges/items/{item['id']}/verdict", json={"verdict": "correct"})
    exported = client.get("/api/review/queues/merges/export.json").get_json()
    assert exported["strategy"] == "disagreement" and [i["state"] for i in exported["items"]] == ["done", "open", "open", "open"]
    rows = list(csv.DictReader(io.StringIO(client.get("/api/review/queues/merges/export.csv").text)))
    assert len(rows) == 4 and rows[0]["verdict"] == "correct" and rows[0]["position"] == " ".join(map(str, item["position"]))
    layer_json = client.get("/api/review/queues/merges/annotations.json").get_json()
    # Neuroglancer's own state classes read it back
    state = neuroglancer.ViewerState({"layers": [layer_json]})
    layer = state.layers["queue merges"].layer
    assert isinstance(layer, neuroglancer.AnnotationLayer) and len(layer.annotations) == 4
    assert layer.source[0].url == "local://annotations"
    point = layer.annotations[0]
    assert list(point.point) == [v + 0.5 for v in item["position"]]
    assert point.description.startswith("correct by rev") and [int(s) for s in point.segments[0]] == item["segments"]
    assert list(layer.source[0].transform.output_dimensions.scales) == pytest.approx([8e-9, 8e-9, 40e-9])


def test_unknown_queue_is_404(queued: Flask, client: FlaskClient) -> None:
    assert client.post("/api/review/queues/nope/next").status_code == 404
    assert client.get("/api/review/queues/bad%20name").status_code == 400


def test_many_reviewers_at_once_review_each_item_once(root_copy: Path) -> None:
    _plan(root_copy)
    app = make_app(root_copy)
    tokens = [app.extensions["blockio.users"].add(f"r{i}", "reviewer")[1] for i in range(6)]
    server = LiveServer(app)
    reviewed: list[tuple[str, int]] = []
    failures: list[str] = []

    def post(token: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(server.url + path, data=data, method="POST", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def reviewer(token: str, name: str) -> None:
        try:
            while (item := post(token, "/api/review/queues/merges/next")["item"]) is not None:
                post(token, f"/api/review/queues/merges/items/{item['id']}/verdict", {"verdict": "correct"})
                reviewed.append((name, item["id"]))
        except (urllib.error.URLError, KeyError) as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=reviewer, args=(token, f"r{i}")) for i, token in enumerate(tokens)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert not failures
    ids = [item_id for _name, item_id in reviewed]
    assert len(ids) == len(set(ids)) == 4
    queue = app.test_client().get("/api/review/queues/merges", headers={"Authorization": f"Bearer {tokens[0]}"}).get_json()
    assert queue["progress"] == {"open": 0, "assigned": 0, "done": 4, "total": 4}
