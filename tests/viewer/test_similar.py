"""``GET /view/<id>/similar.json`` and the view page's "find similar" controls (viewer.similar)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.embeddings.overview import write_overview
from blockio.embeddings.run import run_embedding
from blockio.store import open_store
from tests.viewer.conftest import make_app

CELL = (16, 16, 4)


@pytest.fixture(scope="module")
def sets_root(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("similar") / "root"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns(".cache", "reviews.json*", "review"))
    run_embedding(root, "demo", name="cells", cell=CELL, progress=False)
    run_embedding(root, "demo", name="segs", segments="pred", progress=False)
    write_overview(root, "demo", "cells")
    return root


@pytest.fixture
def web(sets_root: Path) -> FlaskClient:
    return make_app(sets_root).test_client()


def test_similar_cells_at_a_position_as_an_annotation_layer_and_coloured_segments(web: FlaskClient, sets_root: Path) -> None:
    resp = web.get("/view/demo/similar.json?name=cells&position=64,64,16&k=5&layer=pred")
    assert resp.status_code == 200, resp.text
    answer = resp.get_json()
    want = open_store(sets_root).embeddings("demo", "cells").knn(position=(64, 64, 16), k=5)["results"]
    layer = answer["annotations"]
    assert layer["name"] == "similar" and layer["type"] == "annotation"
    assert [p["id"] for p in layer["annotationProperties"]] == ["rank", "distance"]
    assert layer["source"][0]["transform"]["outputDimensions"] == {"x": [8e-09, "m"], "y": [8e-09, "m"], "z": [4e-08, "m"]}
    assert [p["props"][0] for p in layer["annotations"]] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([p["props"][1] for p in layer["annotations"]], [r["distance"] for r in want], rtol=1e-6)
    assert [p["point"] for p in layer["annotations"]] == [r["position"]["voxels"] for r in want]
    # the segments of 'pred' under the neighbours' centres, in rank order, the nearest red
    labels = open_store(sets_root).read_block("demo", (0, 0, 0), (128, 128, 32), layer="pred")
    under = []
    for r in want:
        x, y, z = (int(v) for v in r["position"]["voxels"])
        if labels[z, y, x] and str(labels[z, y, x]) not in under:
            under.append(str(labels[z, y, x]))
    segs = answer["segments"]
    assert segs["layer"] == "pred" and segs["ids"] == under and segs["state"]["segments"] == under
    assert segs["state"]["name"] == "similar segments" and segs["state"]["notSelectedAlpha"] == 0
    assert segs["colors"][under[0]] == "#ff0000" and segs["state"]["segmentColors"] == segs["colors"]
    assert segs["state"]["source"][0]["url"] == "precomputed://http://localhost/precomputed/demo/pred"


def test_similar_segments_of_the_selected_segment(web: FlaskClient, sets_root: Path) -> None:
    sims = open_store(sets_root).embeddings("demo", "segs")
    some = sims.knn(position=(64, 64, 16), k=1)["query"]["key"]
    answer = web.get(f"/view/demo/similar.json?name=segs&segment={some}&k=4").get_json()
    want = sims.knn(segment=int(some), k=4)["results"]
    assert answer["segments"]["ids"] == [r["segment"] for r in want] and some not in answer["segments"]["ids"]
    assert answer["segments"]["layer"] == "pred" and len(answer["annotations"]["annotations"]) == 4


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("name=cells&segment=3", 400, "one vector per cell"),
        ("name=cells", 400, "position=x,y,z"),
        ("name=cells&position=1,2,3&segment=3", 400, "one of the two"),
        ("name=cells&position=1,2", 400, "x,y,z"),
        ("name=cells&position=1,2,3&k=0", 400, "between 1 and 100"),
        ("name=cells&position=1,2,3&layer=image", 404, "no segmentation layer 'image'"),
        ("name=nope&position=1,2,3", 404, "no embedding set 'nope'"),
        ("name=segs&segment=-1", 400, "positive 64-bit"),
    ],
)
def test_bad_queries_say_what_is_wrong(web: FlaskClient, query: str, status: int, words: str) -> None:
    resp = web.get(f"/view/demo/similar.json?{query}")
    assert resp.status_code == status, resp.text
    assert words in resp.get_json()["error"]["message"]


def test_the_view_page_offers_find_similar_and_the_hidden_overview_layer(web: FlaskClient, demo_root: Path) -> None:
    page = web.get("/view/demo?layout=overlay&pred=pred").text
    assert 'id="similar-at-cursor"' in page and "similar.js" in page
    found = re.search(r'<script type="application/json" id="similar-config">(.*?)</script>', page, flags=re.S)
    assert found
    config = json.loads(found.group(1))
    assert [s["name"] for s in config["sets"]] == ["cells", "segs"] and config["colourLayer"] == "pred"
    (overview,) = config["overviews"]
    assert overview["name"] == "cells-pca" and overview["visible"] is False and overview["type"] == "image"
    assert overview["source"][0]["url"] == "precomputed://http://localhost/precomputed/demo/cells-pca"
    assert "getDataValue(2)" in overview["shader"]
    assert web.get("/precomputed/demo/cells-pca/info").get_json()["num_channels"] == 3  # the file server serves it
    assert web.get("/static/viewer/similar.js").status_code == 200
    # a dataset without embedding sets: no controls
    plain = make_app(demo_root).test_client().get("/view/demo?layout=overlay&pred=pred").text
    assert 'id="similar"' not in plain and "similar.js" not in plain
