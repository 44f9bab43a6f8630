"""Stateless views without a browser: the opening state, its URL, the segments it selects, and the client's files."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.config import Settings
from precomputed.synthetic import make_em_volume
from viewer import build_state, parse_view, state_url
from viewer.bundle import ClientBuildError, build_client, client_folder, default_cache
from viewer.state import KEY_BINDINGS, key_label, voxel_index
from viewer.visible import MAX_OPENING_SEGMENTS, central_segments

from .conftest import SHAPE_XYZ, VOXEL_SIZE, make_app


@pytest.fixture(scope="module")
def built_client() -> Path:
    """Neuroglancer's client, built from the npm registry into the user's cache (once per machine)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("no node/npm on PATH: apt-get install nodejs npm")
    return build_client(default_cache(Settings.from_env().viewer_cache))


def test_key_hints_read_like_keys(client: FlaskClient) -> None:
    assert key_label("alt+keyc") == "Alt+C" and key_label("control+shift+keym") == "Control+Shift+M" and key_label("alt+digit1") == "Alt+1"
    html = client.get("/view/demo?layout=overlay&pred=pred").text
    help_text = html.split('id="review-help"', 1)[1].split("</p>", 1)[0]
    assert "alt+key" not in help_text
    for key, verdict in KEY_BINDINGS.values():
        assert f"<kbd>{key_label(key)}</kbd> {verdict.replace('_', ' ')}" in help_text


def test_position_is_the_voxel_neuroglancer_shows(app: Flask) -> None:
    record = app.extensions["blockio.store"].info("demo")
    spec = parse_view(record, "overlay", "pred")
    state = build_state(record, spec, "http://h:1/").to_json()
    # the centre of voxel (64, 64, 16); Neuroglancer's position widget shows floor(): 64, 64, 16
    assert state["position"] == [64.5, 64.5, 16.5]
    assert voxel_index(state["position"]) == [s // 2 for s in SHAPE_XYZ]
    assert voxel_index([0.0, 0.999, 127.5]) == [0, 0, 127]
    moved = build_state(record, spec, "http://h:1/", position=(3, 4, 5)).to_json()
    assert moved["position"] == [3.5, 4.5, 5.5]


def test_state_url_carries_the_whole_state(app: Flask) -> None:
    record = app.extensions["blockio.store"].info("demo")
    state = build_state(record, parse_view(record, "compare", "pred,pred2"), "http://review.example:80/", segments={"pred": [5, 3], "pred2": [9]})
    url = state_url(state, "/neuroglancer/")
    prefix, fragment = url.split("#!", 1)
    assert prefix == "/neuroglancer/" and " " not in fragment and "\n" not in fragment
    assert json.loads(urllib.parse.unquote(fragment)) == state.to_json()
    layers = {layer["name"]: layer for layer in state.to_json()["layers"]}
    assert layers["pred"]["segments"] == ["3", "5"] and layers["pred2"]["segments"] == ["9"]
    # unselected segments stay drawn in the 2-D panels
    assert 0 < layers["pred"]["notSelectedAlpha"] <= layers["pred"]["selectedAlpha"]


def test_a_view_opens_with_the_central_segments_selected(app: Flask, client: FlaskClient) -> None:
    labels = make_em_volume(SHAPE_XYZ, voxel_size=VOXEL_SIZE, seed=3).labels  # the conftest's 'pred', [z, y, x]
    cx, cy, cz = (s // 2 for s in SHAPE_XYZ)
    section = labels[cz]
    ids, counts = np.unique(section[section > 0], return_counts=True)
    by_area = [int(i) for _c, i in sorted(zip(-counts, ids, strict=True))]
    centre = int(section[cy, cx])
    expected = ([centre] + [i for i in by_area if i != centre])[:MAX_OPENING_SEGMENTS]
    record = app.extensions["blockio.store"].info("demo")
    assert central_segments(app.extensions["blockio.store"], record, "pred") == expected

    state = client.get("/view/demo/state.json?layout=overlay&pred=pred").get_json()
    pred = next(layer for layer in state["layers"] if layer["name"] == "pred")
    assert sorted(int(s) for s in pred["segments"]) == sorted(expected) and centre in expected
    # the 3-D panel shows that layer, so its meshes are drawn from the start
    assert state["layout"]["children"][2] == {"type": "viewer", "layers": ["pred"], "layout": "3d"} or state["layout"]["children"][2]["layers"] == ["pred"]


def test_an_unreadable_layer_opens_with_no_segments(root_copy: Path) -> None:
    for chunk in (root_copy / "precomputed" / "demo" / "pred").rglob("*"):
        if chunk.is_file() and chunk.parent.name != "mesh" and chunk.name not in ("info", "provenance") and "-" in chunk.name:
            chunk.write_bytes(b"\x1f\x8b broken")
    client = make_app(root_copy).test_client()
    state = client.get("/view/demo/state.json?layout=overlay&pred=pred").get_json()
    pred = next(layer for layer in state["layers"] if layer["name"] == "pred")
    assert pred.get("segments", []) == []
    assert client.get("/view/demo?layout=overlay&pred=pred").status_code == 200


def test_without_npm_the_client_is_a_clear_503(root_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ClientBuildError, match="needs Node.js 20\\+ and npm"):
        build_client(tmp_path / "cache")
    client = make_app(root_copy, BLOCKIO_VIEWER_CACHE=str(tmp_path / "cache")).test_client()
    deadline = time.monotonic() + 30
    resp = client.get("/neuroglancer/")
    while "could not be built" not in resp.text and time.monotonic() < deadline:
        assert resp.status_code == 503 and resp.headers["Retry-After"] and "Building Neuroglancer" in resp.text
        time.sleep(0.05)
        resp = client.get("/neuroglancer/")
    assert resp.status_code == 503 and "needs Node.js 20+ and npm" in resp.text and "python -m viewer.bundle" in resp.text
    assert client.get("/neuroglancer/assets/x.js").status_code == 503
    assert not (client_folder(tmp_path / "cache") / "dist").exists()


def test_the_built_client_is_served_from_the_page_origin(built_client: Path, root_copy: Path) -> None:
    client = make_app(root_copy, BLOCKIO_VIEWER_CACHE=str(built_client.parents[1])).test_client()
    index = client.get("/neuroglancer/")
    assert index.status_code == 200 and index.mimetype == "text/html" and index.headers["Cache-Control"] == "no-cache"
    scripts = [part.split('"', 1)[0] for part in index.text.split('src="')[1:]]
    assert scripts and all(s.startswith("./assets/") for s in scripts)
    script = client.get("/neuroglancer/" + scripts[0][2:])
    assert script.status_code == 200 and script.mimetype == "text/javascript" and "immutable" in script.headers["Cache-Control"]
    wasm = next(p for p in (built_client / "assets").iterdir() if p.suffix == ".wasm")
    assert client.get(f"/neuroglancer/assets/{wasm.name}").mimetype == "application/wasm"
    assert client.get("/neuroglancer/assets/nope.js").status_code == 404
    assert client.get("/neuroglancer/../catalog.json").status_code == 404
    # no Neuroglancer code in the repository: only the build inputs
    client_dir = Path(__file__).resolve().parents[2] / "viewer" / "client"
    assert sorted(p.name for p in client_dir.iterdir()) == sorted(["index.html", "main.js", "package.json", "package-lock.json", "vite.config.js"])
