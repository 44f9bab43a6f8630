"""A live model layer in Neuroglancer (headless Chromium): rendered, equal to ``blockio predict``'s layer, cached.

Neuroglancer's client and its server come from the ``neuroglancer`` Python
package; the layer is ``precomputed://http://127.0.0.1:PORT/precomputed/demo/live/cells``
of a blockio app on another loopback port. The screenshot goes to the test's
``tmp_path`` and to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from blockio.serving.app import create_app
from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest
from precomputed.synthetic import make_em_volume
from tests.browser import WEBGL_ARGS, launch_chromium
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RENDER_TIMEOUT_S = 90.0
SHAPE = (128, 128, 32)
MODEL = "blockio.inference.models:membrane_watershed"
PLAN = "block=64,64,32&overlap=16,16,8"
SATURATED = 20  # a pixel whose channels differ this much is a segment colour; the image is grey


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser-live")
    np.save(tmp / "demo.npy", make_em_volume(SHAPE, voxel_size=(8.0, 8.0, 40.0), seed=3).image)
    root = tmp / "root"
    ingest(tmp / "demo.npy", root, "demo", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(64, 64, 16), progress=False, workers=1))
    return root


@pytest.fixture
def server(demo: Path) -> Iterator[LiveServer]:
    app = create_app({"BLOCKIO_ROOT": str(demo), "BLOCKIO_LIVE_MODELS": f"cells={MODEL}?output=segmentation&{PLAN}", "TESTING": True})
    live = LiveServer(app)
    yield live
    live.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with launch_chromium(*WEBGL_ARGS) as launched:
        yield launched


@pytest.fixture
def neuroglancer_viewer(server: LiveServer) -> Iterator[Any]:
    neuroglancer = pytest.importorskip("neuroglancer")
    neuroglancer.set_server_bind_address("127.0.0.1", 0)
    viewer = neuroglancer.Viewer()
    base = f"precomputed://{server.url}/precomputed/demo"
    with viewer.txn() as s:
        s.layers["image"] = neuroglancer.ImageLayer(source=f"{base}/image")
        s.layers["cells"] = neuroglancer.SegmentationLayer(source=f"{base}/live/cells")
        s.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[8, 8, 40])
        s.layout = "xy"
        s.position = [SHAPE[0] / 2, SHAPE[1] / 2, SHAPE[2] / 2]
        s.cross_section_scale = SHAPE[0] / 700  # the volume fills most of the panel
    yield viewer
    neuroglancer.stop()


def live_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {r: float(v) for r, v in re.findall(r'^blockio_live_chunks_total\{model="cells",result="([^"]+)"\} (\S+)$', text, re.M)}


def panel_pixels(page: Any) -> np.ndarray:
    panel = page.locator(".neuroglancer-rendered-data-panel").first
    rgb = np.asarray(imagecodecs.png_decode(panel.screenshot()))[..., :3].astype(np.int16)
    rows, cols = rgb.shape[:2]
    return rgb[rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4]


def coloured_fraction(rgb: np.ndarray) -> float:
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > SATURATED).mean())


def wait_coloured(page: Any) -> np.ndarray:
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    rgb = np.zeros((1, 1, 3), dtype=np.int16)
    while time.monotonic() < deadline:
        if page.locator(".neuroglancer-rendered-data-panel").count():
            rgb = panel_pixels(page)
            if rgb.std() > 12 and coloured_fraction(rgb) > 0.3:
                return rgb
        page.wait_for_timeout(250)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-layer-failed.png"))
    raise AssertionError(f"the live layer never rendered (std {rgb.std():.1f}, coloured {coloured_fraction(rgb):.3f})")


def test_neuroglancer_shows_a_live_layer_served_from_the_cache_the_second_time(browser: Any, server: LiveServer, neuroglancer_viewer: Any, demo: Path, tmp_path: Path) -> None:
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(neuroglancer_viewer.get_viewer_url())
        first = wait_coloured(page)
        shot = tmp_path / "live-layer.png"
        page.screenshot(path=str(shot))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        after_first = live_counts(server.url)
        assert after_first.get("miss", 0) >= 1  # computed on request: nothing was written

        # a second view of the same region (a new page, Neuroglancer's own cache empty): every chunk a cache hit
        page.close()
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(neuroglancer_viewer.get_viewer_url())
        second = wait_coloured(page)
        after_second = live_counts(server.url)
        assert after_second.get("miss", 0) == after_first["miss"]
        assert after_second.get("hit", 0) > after_first.get("hit", 0)
        assert np.abs(second - first).mean() < 5  # the same picture
        assert errors == []
    finally:
        page.close()

    # the chunks Neuroglancer showed are those blockio predict writes with the same options
    from cloudvolume import chunks

    from blockio.cli.main import main

    assert main(["predict", "demo", "--root", str(demo), "--model", MODEL, "--name", "pred", "--block", "64,64,32", "--overlap", "16,16,8", "--no-meshes", "--quiet"]) == 0
    written = Store(demo).read_block("demo", (0, 0, 0), SHAPE, layer="pred")
    layer = server.app.extensions["blockio.live"]["cells"]
    live = np.zeros_like(written)
    for x in range(0, SHAPE[0], 64):
        for y in range(0, SHAPE[1], 64):
            for z in range(0, SHAPE[2], 16):
                payload, hit = layer.chunk("demo", "8_8_40", f"{x}-{x + 64}_{y}-{y + 64}_{z}-{z + 16}")
                assert hit
                live[z : z + 16, y : y + 64, x : x + 64] = np.asarray(chunks.decode(payload, "compressed_segmentation", shape=(64, 64, 16, 1), dtype=np.uint32, block_size=(8, 8, 8)))[..., 0].T
    assert written.max() > 5
    np.testing.assert_array_equal(live, written)
