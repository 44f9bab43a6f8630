"""The live layer routes over real HTTP: the chunks equal ``blockio predict``'s layer; a second view is cache hits."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask

from blockio.cli.main import main
from blockio.config import Settings
from blockio.errors import InvalidSettings
from blockio.serving.app import create_app
from blockio.serving.live import live_layers
from blockio.store import Store
from tests.blockio.inference.conftest import make_small_root
from tests.blockio.inference.test_live import decode
from tests.live_server import LiveServer

CELLS = "cells=tests.blockio.inference.live_models:LABELS?block=32,32,16&overlap=4,4,4"
SCORES = "scores=tests.blockio.inference.live_models:SMOOTH?block=32,32,16&overlap=4,4,4"


@pytest.fixture(scope="module")
def em(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_root(tmp_path_factory.mktemp("live-routes"))


@pytest.fixture
def app(em: Path) -> Flask:
    return create_app({"BLOCKIO_ROOT": str(em), "BLOCKIO_LIVE_MODELS": f"{CELLS};{SCORES}", "TESTING": True})


@pytest.fixture
def server(app: Flask) -> Iterator[LiveServer]:
    live = LiveServer(app)
    yield live
    live.stop()


def get(url: str) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def fetch_layer(base: str) -> np.ndarray:
    """Every chunk of a precomputed layer over HTTP, decoded and assembled into [c, z, y, x]."""
    status, body, headers = get(f"{base}/info")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    info = json.loads(body)
    scale = info["scales"][0]
    size, chunk = scale["size"], scale["chunk_sizes"][0]
    out = np.zeros((info["num_channels"], *reversed(size)), dtype=info["data_type"])
    for z in range(0, size[2], chunk[2]):
        for y in range(0, size[1], chunk[1]):
            for x in range(0, size[0], chunk[0]):
                start = (x, y, z)
                stop = tuple(min(a + c, n) for a, c, n in zip(start, chunk, size))
                status, payload, headers = get(f"{base}/{scale['key']}/" + "_".join(f"{a}-{b}" for a, b in zip(start, stop)))
                assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
                out[:, z : stop[2], y : stop[1], x : stop[0]] = decode(payload, info, start, stop)
    return out


def live_counts(base: str) -> dict[tuple[str, str], float]:
    text = get(f"{base}/metrics")[1].decode()
    return {(m, r): float(v) for m, r, v in re.findall(r'^blockio_live_chunks_total\{model="([^"]+)",result="([^"]+)"\} (\S+)$', text, re.M)}


def test_the_live_layer_equals_what_blockio_predict_writes(server: LiveServer, em: Path) -> None:
    live = fetch_layer(f"{server.url}/precomputed/em/live/cells")
    # blockio predict with another block size: the same global ids (face union, raster-order numbering)
    spec = "tests.blockio.inference.live_models:LABELS"
    assert main(["predict", "em", "--root", str(em), "--model", spec, "--name", "pred", "--block", "16,16,16", "--overlap", "4,4,4", "--no-meshes", "--quiet", "--overwrite"]) == 0
    written = Store(em).read_block("em", (0, 0, 0), (64, 64, 16), layer="pred")
    assert live.shape == (1, 16, 64, 64) and live.max() > 1
    np.testing.assert_array_equal(live[0], written)
    # and the live layer is not a catalogued layer: the record is unchanged
    assert "live/cells" not in Store(em).layers("em")


def test_a_second_view_is_served_from_the_cache_and_counted(server: LiveServer) -> None:
    base = f"{server.url}/precomputed/em/live/scores"
    first = fetch_layer(base)
    after_first = live_counts(server.url)
    assert after_first[("scores", "miss")] == 4  # one per 32x32x16 task core
    assert after_first[("scores", "hit")] == 12
    second = fetch_layer(base)
    after_second = live_counts(server.url)
    assert after_second[("scores", "miss")] == 4 and after_second[("scores", "hit")] == 12 + 16
    np.testing.assert_array_equal(first, second)


def test_unknown_layers_and_chunks_are_404_with_cors(server: LiveServer) -> None:
    for path in ("/precomputed/em/live/nope/info", "/precomputed/em/live/cells/8_8_40/1-16_0-16_0-16", "/precomputed/em/live/cells/9_9_9/0-16_0-16_0-16", "/precomputed/nope/live/cells/info"):
        status, body, headers = get(server.url + path)
        assert status == 404, path
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert json.loads(body)["error"]["code"] in ("layer_not_found", "dataset_not_found")


def test_the_review_page_can_list_the_live_layers(app: Flask, em: Path) -> None:
    assert live_layers(app) == ["live/cells", "live/scores"]
    assert live_layers(create_app({"BLOCKIO_ROOT": str(em), "TESTING": True})) == []


def test_settings_read_the_live_models() -> None:
    settings = Settings.from_env({"BLOCKIO_LIVE_MODELS": f" {CELLS} ; {SCORES} "})
    assert settings.live_models == (CELLS, SCORES)
    for bad in ("cells", "cells=nomodule", "a b=pkg.mod:fn"):
        with pytest.raises(InvalidSettings, match="BLOCKIO_LIVE_MODELS"):
            Settings.from_env({"BLOCKIO_LIVE_MODELS": bad})
    with pytest.raises(InvalidSettings, match="live_models"):
        Settings(live_models=("x",))


def test_serve_model_options_reach_the_app(em: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import werkzeug.serving

    served: list[Flask] = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda host, port, app, **kw: served.append(app))
    assert main(["serve", "--root", str(em), "--port", "0", "--model", CELLS, "--model", SCORES]) == 0
    assert live_layers(served[0]) == ["live/cells", "live/scores"]
    assert served[0].test_client().get("/precomputed/em/live/scores/info").get_json()["type"] == "image"
