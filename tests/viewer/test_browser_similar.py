"""``blockio demo``'s review page finds similar cells and segments in Chromium.

The demo (small: 128 x 128 x 32 voxels, no serving) writes its embedding sets,
``cells`` (per 16 x 16 x 4 cell, with the PCA overview layer ``cells-pca``)
and ``pred-segments`` (per segment of ``pred``); the app serves the review
page with Neuroglancer's client built from npm. In the page, "at the cursor"
and "to the selected segment" add the ``similar`` annotation layer and the
``similar segments`` layer: the test reads them from the viewer's own state
and checks them against the Python API's answers. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blockio.serving.app import create_app
from blockio.store import open_store
from tests.live_server import LiveServer
from tests.viewer.test_browser import Page, browser, centre, client_cache, image_drawn, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["browser", "client_cache"]  # the shared module fixtures

SHAPE = (128, 128, 32)
VIEW = "/view/demo?layout=overlay&pred=pred"
STATE = "JSON.stringify(window.frames[0].viewer.state.toJSON())"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from blockio.cli.demo import run_demo

    root = tmp_path_factory.mktemp("similar") / "data"
    assert run_demo(root=str(root), shape=SHAPE, serve=False, progress=False) == 0
    return root


@pytest.fixture(scope="module")
def server(demo_root: Path, client_cache: Path) -> Iterator[LiveServer]:
    live = LiveServer(create_app({"BLOCKIO_ROOT": str(demo_root), "TESTING": True}))
    yield live
    live.stop()


def layers(page: Any) -> dict[str, dict[str, Any]]:
    state = json.loads(page.evaluate(STATE))
    return {layer["name"]: layer for layer in state["layers"]}


def test_the_demo_writes_embedding_sets_and_its_overview(demo_root: Path) -> None:
    record = open_store(demo_root).info("demo")
    assert set(record["embeddings"]) == {"cells", "pred-segments"}
    assert record["embeddings"]["cells"]["grid"] == [8, 8, 8] and record["embeddings"]["pred-segments"]["granularity"] == "segment"
    assert record["layers"]["cells-pca"]["provenance"]["embedding"] == "cells"


def test_find_similar_at_the_cursor_and_to_the_selected_segment(browser: Any, server: LiveServer, demo_root: Path, tmp_path: Path) -> None:
    page = Page(browser, server, tmp_path)
    pg = page.page
    try:
        pg.goto(server.url + VIEW)
        pg.wait_for_function("window.blockioSimilar !== undefined")
        pg.evaluate("blockioSimilar.ready.then(() => true)")
        frame = next(f for f in pg.frames if "/neuroglancer/" in f.url)
        frame.wait_for_function("document.querySelectorAll('.neuroglancer-rendered-data-panel').length === 3", timeout=90_000)
        panel = sorted((frame.locator(".neuroglancer-rendered-data-panel").nth(i) for i in range(3)), key=lambda p: p.bounding_box()["x"])[1]
        pg.wait_for_function(f"{STATE}.includes('cells-pca')", timeout=10_000)
        before = wait_for(panel, image_drawn, "the overlay")
        overview = layers(pg)["cells-pca"]
        assert overview["type"] == "image" and overview["visible"] is False
        assert f'"precomputed://{server.url}/precomputed/demo/cells-pca"' in json.dumps(overview["source"])

        # at the cursor: the centre voxel (64, 64, 16); ten points, ranked, with the Python API's distances
        pg.click("#similar-at-cursor")
        pg.wait_for_function("document.getElementById('similar-status').textContent.includes('similar cells')", timeout=30_000)
        found = layers(pg)
        points = found["similar"]["annotations"]
        expected = open_store(demo_root).embeddings("demo", "cells").knn(position=(64, 64, 16), k=10)["results"]
        assert found["similar"]["type"] == "annotation" and len(points) == 10
        assert [p["props"][0] for p in points] == list(range(1, 11))
        np.testing.assert_allclose([p["props"][1] for p in points], [r["distance"] for r in expected], rtol=1e-5)
        np.testing.assert_allclose([p["point"] for p in points], [r["position"]["voxels"] for r in expected])
        assert points[0]["description"].startswith("#1 distance ")
        coloured = found["similar segments"]
        assert coloured["segments"] and set(coloured["segmentColors"]) == set(coloured["segments"])
        assert coloured["segmentColors"][coloured["segments"][0]] == "#ff0000"  # the nearest is red
        panels = [p["layers"] for p in layers_layout(pg)]
        assert "similar" in panels[1] and "similar" in panels[2] and "similar" not in panels[0]  # the raw panel stays raw
        pg.wait_for_timeout(1500)
        page.shot("similar-at-cursor-page")
        page.shot("similar-at-cursor-overlay", panel)

        # to the selected segment (the view opens with the central segments selected), in the segment set
        pg.select_option("#similar-set", "pred-segments")
        selected = layers(pg)["pred"]["segments"][0]
        pg.click("#similar-to-segment")
        pg.wait_for_function("document.getElementById('similar-status').textContent.includes('similar segment')", timeout=30_000)
        found = layers(pg)
        want = open_store(demo_root).embeddings("demo", "pred-segments").knn(segment=int(selected), k=10)["results"]
        assert found["similar segments"]["segments"] == [r["segment"] for r in want]
        assert [p["props"][0] for p in found["similar"]["annotations"]] == list(range(1, len(want) + 1))
        page.shot("similar-to-segment-page")

        # the overview shown: the overlay panel changes colour
        pg.evaluate("(() => { const v = window.frames[0].viewer; const s = v.state.toJSON(); s.layers.find(l => l.name === 'cells-pca').visible = true; v.state.restoreState(s); })()")
        base = centre(before)

        def changed(rgb: np.ndarray) -> bool:
            rows, cols = min(rgb.shape[0], base.shape[0]), min(rgb.shape[1], base.shape[1])
            return bool(np.abs(rgb[:rows, :cols] - base[:rows, :cols]).mean() > 10)

        wait_for(panel, changed, "the overview layer")
        page.shot("similar-overview-overlay", panel)
        assert page.errors == []
    finally:
        page.close()


def layers_layout(page: Any) -> list[dict[str, Any]]:
    state = json.loads(page.evaluate(STATE))
    return list(state["layout"]["children"])
