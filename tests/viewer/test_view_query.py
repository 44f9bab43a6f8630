"""The view's query without a browser: place, segments, queue item, live layers, the preloaded client, the queue's OpenAPI paths."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.cli.main import main
from blockio.serving.live import live_layers

from .conftest import make_app, sign_in

CELLS = "cells=tests.blockio.inference.live_models:LABELS?block=64,64,32&overlap=4,4,4"
SCORES = "scores=tests.blockio.inference.live_models:SMOOTH?block=64,64,32&overlap=4,4,4"


def _layers(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in state["layers"]}


def _source(layer: dict[str, Any]) -> str:
    source = layer["source"]
    return str(source[0]["url"] if isinstance(source, list) else source["url"] if isinstance(source, dict) else source)


def test_position_and_segments_open_the_view_there(client: FlaskClient) -> None:
    state = client.get("/view/demo/state.json?layout=overlay&pred=pred&position=10,20,3&segments=7,5").get_json()
    assert state["position"] == [10.5, 20.5, 3.5]
    assert _layers(state)["pred"]["segments"] == ["5", "7"]
    html = client.get("/view/demo?layout=compare&pred=pred,pred2&position=10,20,3&segments=7").text
    frame = html.split('<iframe id="neuroglancer"', 1)[1].split(">", 1)[0]
    assert "%22position%22:%5B10.5,20.5,3.5%5D" in frame  # the frame opens there
    compare = client.get("/view/demo/state.json?layout=compare&pred=pred,pred2&position=10,20,3&segments=7").get_json()
    assert _layers(compare)["pred"]["segments"] == ["7"]
    assert _layers(compare)["pred2"]["segments"]  # the compared layer: its segments around that place
    opening = client.get("/view/demo/state.json?layout=overlay&pred=pred").get_json()
    assert opening["position"] == [64.5, 64.5, 16.5]


@pytest.mark.parametrize("query", ["position=1,2", "position=128,0,0", "position=a,b,c", "segments=0", "segments=x", f"segments={2**64}", "item=0", "queue=bad%20name"])
def test_a_bad_place_or_queue_is_400(client: FlaskClient, query: str) -> None:
    assert client.get(f"/view/demo/state.json?layout=overlay&pred=pred&{query}").status_code == 400
    assert client.get(f"/view/demo?layout=overlay&pred=pred&{query}").status_code == 400


def test_the_page_starts_the_client_with_the_page(client: FlaskClient) -> None:
    html = client.get("/view/demo?layout=overlay&pred=pred").text
    frame = html.split('<iframe id="neuroglancer"', 1)[1].split(">", 1)[0]
    assert 'src="/neuroglancer/#!' in frame  # loading before the page's script runs
    from viewer.client_files import client_assets

    with client.application.test_request_context():
        assets = client_assets()
    if assets:  # the client is built on this machine: its module and styles are preloaded
        script = next(name for kind, name in assets if kind == "script")
        assert f'<link rel="modulepreload" crossorigin href="/neuroglancer/{script}">' in html
        assert client.get(f"/neuroglancer/{script}").status_code == 200


@pytest.fixture
def queued(root_copy: Path) -> Flask:
    assert main(["review", "plan", "--root", str(root_copy), "demo", "--pred", "pred2", "--vs", "pred", "--strategy", "disagreement", "--name", "merges"]) == 0
    return make_app(root_copy)


def test_a_queue_item_opens_on_the_page_with_its_state(queued: Flask) -> None:
    client = queued.test_client()
    sign_in(queued, client)
    taken = client.post("/api/review/queues/merges/next").get_json()
    item = taken["item"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(taken["view_url"]).query)
    assert query["queue"] == ["merges"] and query["item"] == [str(item["id"])]
    state = client.get(taken["state_url"]).get_json()
    assert state["position"] == [v + 0.5 for v in item["position"]]
    assert _layers(state)["pred2"]["segments"] == [str(s) for s in item["segments"]]
    html = client.get(taken["view_url"]).text
    assert 'id="queue-bar" data-queue="merges"' in html and 'id="next-item"' in html
    config = html.split('id="view-config">', 1)[1].split("</script>", 1)[0]
    assert '"nextUrl": "/api/review/queues/merges/next"' in config and f'"item": {item["id"]}' in config
    # the index page starts a reviewer on the queue
    index = client.get("/").text
    link = index.split('class="review-queue" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert link == "/view/demo?layout=compare&pred=pred2,pred&queue=merges"
    assert 'data-queue="merges"' in client.get(link).text


def test_the_queue_routes_are_in_the_openapi_document(queued: Flask) -> None:
    paths = queued.test_client().get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/review/queues", "/api/review/queues/{name}", "/api/review/queues/{name}/next", "/api/review/queues/{name}/items/{item_id}/verdict",
                 "/api/review/queues/{name}/items/{item_id}/release", "/api/review/queues/{name}/export.csv", "/api/review/queues/{name}/annotations.json"):  # fmt: skip
        assert path in paths, path
    verdict = paths["/api/review/queues/{name}/items/{item_id}/verdict"]["post"]
    assert verdict["requestBody"]["content"]["application/json"]["schema"]["properties"]["verdict"]["enum"][0] == "correct"
    for rule in queued.url_map.iter_rules():  # every queue route is documented, none invented
        if rule.rule.startswith("/api/review/queues"):
            assert rule.rule.replace("<", "{").replace(">", "}").replace("int:", "") in paths, rule.rule


@pytest.fixture
def live_app(root_copy: Path) -> Flask:
    return make_app(root_copy, BLOCKIO_LIVE_MODELS=f"{CELLS};{SCORES}")


def test_a_live_layer_opens_like_any_prediction(live_app: Flask) -> None:
    client = live_app.test_client()
    sign_in(live_app, client)
    assert live_layers(live_app) == ["live/cells", "live/scores"]
    state = client.get("/view/demo/state.json?layout=overlay&pred=live/cells").get_json()
    cells = _layers(state)["live/cells"]
    assert cells["type"] == "segmentation" and _source(cells).endswith("://http://localhost/precomputed/demo/live/cells")
    assert [panel["layers"] for panel in state["layout"]["children"]] == [["image"], ["image", "live/cells"], ["live/cells"]]
    scores = _layers(client.get("/view/demo/state.json?layout=overlay&pred=live/scores").get_json())["live/scores"]
    assert scores["type"] == "image" and _source(scores).endswith("/precomputed/demo/live/scores")
    compare = client.get("/view/demo/state.json?layout=compare&pred=pred,live/cells").get_json()
    assert set(_layers(compare)) == {"image", "pred", "live/cells"}
    # the index offers them, the view page lists the live segmentation layer for verdicts, and a verdict on it is stored
    index = client.get("/").text
    assert "/view/demo?layout=overlay&amp;pred=live/cells" in index and "/view/demo?layout=overlay&amp;pred=live/scores" in index
    page = client.get("/view/demo?layout=overlay&pred=live/cells").text
    assert '<option value="live/cells">' in page
    stored = client.post("/view/demo/review", json={"layer": "live/cells", "verdict": "correct", "segments": [3]}).get_json()["stored"]
    assert [(r["layer"], r["segment"]) for r in stored] == [("live/cells", 3)]
    assert client.get("/view/demo/state.json?layout=overlay&pred=live/nope").status_code == 404
    # without live models the name is unknown
    plain = make_app(Path(live_app.extensions["blockio.store"].root))
    assert plain.test_client().get("/view/demo/state.json?layout=overlay&pred=live/cells").status_code == 404
