"""Neuroglancer renders layers written with shard=True, read from the app's file server by Range requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask, request

from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume
from tests.live_server import LiveServer
from tests.viewer.conftest import SHAPE_XYZ, VOXEL_SIZE, make_app
from tests.viewer.test_browser import GREY_MAX, MIN_IMAGE_STD, RENDER_TIMEOUT_S, Page, browser, centre, saturated_fraction, wait_rendered

pytestmark = pytest.mark.browser

__all__ = ["browser"]  # the module's browser fixture, shared


@pytest.fixture(scope="module")
def sharded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("viewer-sharded")
    volume = make_em_volume(SHAPE_XYZ, voxel_size=VOXEL_SIZE, seed=3)
    np.save(tmp / "sh.npy", volume.image)
    root = tmp / "root"
    ingest(tmp / "sh.npy", root, "sh", IngestOptions(voxel_size=VOXEL_SIZE, chunk_size=(32, 32, 8), progress=False, workers=1, shard=True))
    write_segmentation(root, "sh", "pred", volume.labels, provenance={"model": "ground truth"}, shard=True)
    return root


@pytest.fixture
def app(sharded_root: Path) -> Flask:
    app = make_app(sharded_root)
    app.extensions["test.ranges"] = ranges = []

    @app.after_request
    def record(response: Any) -> Any:
        if request.path.endswith(".shard"):
            ranges.append((request.path, request.headers.get("Range"), response.status_code))
        return response

    return app


@pytest.fixture
def page(browser: Any, live_server: LiveServer, tmp_path: Path) -> Iterator[Page]:
    p = Page(browser, live_server, tmp_path)
    yield p
    p.close()


def _panels(page: Page, count: int) -> list[Any]:
    """The data panels of whichever frame holds the Neuroglancer client, left to right."""
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    while time.monotonic() < deadline:
        for frame in page.page.frames[1:]:
            loc = frame.locator(".neuroglancer-rendered-data-panel")
            if loc.count() == count:
                return sorted((loc.nth(i) for i in range(count)), key=lambda item: item.bounding_box()["x"])
        page.page.wait_for_timeout(100)
    raise AssertionError(f"no Neuroglancer frame showed {count} data panels: {[f.url for f in page.page.frames]}")


def test_neuroglancer_renders_sharded_image_and_segmentation(page: Page) -> None:
    page.page.goto(page.server.url + "/view/sh?layout=overlay&pred=pred")
    raw_panel, overlay_panel, *_ = _panels(page, 3)
    raw = wait_rendered(raw_panel)
    overlay = wait_rendered(overlay_panel, coloured=True)
    page.shot("sharded-overlay-page")
    assert centre(raw).std() > MIN_IMAGE_STD
    assert saturated_fraction(centre(raw)) < GREY_MAX
    assert saturated_fraction(centre(overlay)) > 0.3
    # Neuroglancer read the shards by byte range (shard index, minishard index, chunks), all answered
    ranges = page.server.app.extensions["test.ranges"]
    assert any("/precomputed/sh/image/" in path for path, _, _ in ranges) and any("/precomputed/sh/pred/" in path for path, _, _ in ranges)
    assert ranges and all(rng is not None and status == 206 for _, rng, status in ranges)
    assert page.errors == []
