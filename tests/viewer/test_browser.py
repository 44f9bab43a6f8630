"""The review page in headless Chromium: Neuroglancer renders our layers, panels are linked, verdicts are stored.

Needs Debian's Chromium at /usr/bin/chromium and the ``playwright`` package
(never ``playwright install``). Screenshots go to the test's ``tmp_path`` and
are copied to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RENDER_TIMEOUT_S = 60.0
# a panel that shows the EM image, not a uniform background
MIN_IMAGE_STD = 12.0
# a pixel whose channels differ this much is a segmentation colour: the raw panel is exactly grey
SATURATED = 20
# coloured fraction allowed in a grey panel: the crosshair and the volume's outline
GREY_MAX = 0.03



@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed: pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A browser page that records console errors and page errors."""

    def __init__(self, browser: Any, server: LiveServer, tmp_path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.server = server
        self.tmp_path = tmp_path
        self.errors: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def neuroglancer(self, panels: int = 3) -> Any:
        """The Neuroglancer frame, once it shows the state's ``panels`` data panels."""
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        while time.monotonic() < deadline:
            for frame in self.page.frames:
                # the client starts with its default layout, then applies the state from the server
                if "/v/" in frame.url and frame.locator(".neuroglancer-rendered-data-panel").count() == panels:
                    self.page.wait_for_timeout(200)
                    if frame.locator(".neuroglancer-rendered-data-panel").count() == panels:
                        return frame
            # sleeping in Playwright lets the page's events (frame navigations) through
            self.page.wait_for_timeout(100)
        raise AssertionError(f"the Neuroglancer frame never showed a data panel: {[f.url for f in self.page.frames]}")

    def panels(self, frame: Any) -> list[Any]:
        """The data panels, left to right."""
        loc = frame.locator(".neuroglancer-rendered-data-panel")
        items = [loc.nth(i) for i in range(loc.count())]
        return sorted(items, key=lambda item: item.bounding_box()["x"])

    def shot(self, name: str, element: Any = None) -> Path:
        path = self.tmp_path / f"{name}.png"
        (element or self.page).screenshot(path=str(path))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path

    def close(self) -> None:
        self.page.close()


def pixels(element: Any) -> np.ndarray:
    """An element's screenshot as an RGB [rows, cols, 3] array."""
    rgb = imagecodecs.png_decode(element.screenshot())
    return np.asarray(rgb)[..., :3].astype(np.int16)


def centre(rgb: np.ndarray) -> np.ndarray:
    """The middle half of a panel: the data, without the axis labels and the scale bar."""
    rows, cols = rgb.shape[:2]
    return rgb[rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4]


def saturated_fraction(rgb: np.ndarray) -> float:
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > SATURATED).mean())


def wait_rendered(panel: Any, *, coloured: bool = False) -> np.ndarray:
    """Poll a panel until it shows the image (and segmentation colours when asked); returns its pixels."""
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    rgb = pixels(panel)
    while time.monotonic() < deadline:
        rgb = pixels(panel)
        data = centre(rgb)
        if data.std() > MIN_IMAGE_STD and (not coloured or saturated_fraction(data) > 0.2):
            return rgb
        time.sleep(0.2)
    raise AssertionError(f"panel not rendered after {RENDER_TIMEOUT_S} s (std {centre(rgb).std():.1f}, saturated {saturated_fraction(centre(rgb)):.3f})")


@pytest.fixture
def page(browser: Any, live_server: LiveServer, tmp_path: Path) -> Iterator[Page]:
    p = Page(browser, live_server, tmp_path)
    yield p
    p.close()


def test_raw_view_renders_the_image(page: Page) -> None:
    # a dataset with no prediction layer: one xy panel of the image
    from precomputed.catalog import Catalog

    catalog = Catalog(page.server.app.extensions["blockio.store"].root)
    record = catalog.get("demo")
    catalog.put({**record, "id": "rawonly", "layers": {"image": record["layers"]["image"]}})
    page.page.goto(page.server.url + "/view/rawonly")
    frame = page.neuroglancer(panels=1)
    raw = wait_rendered(page.panels(frame)[0])
    page.shot("raw-view")
    assert centre(raw).std() > MIN_IMAGE_STD
    assert saturated_fraction(centre(raw)) < GREY_MAX
    assert page.errors == []


def test_overlay_renders_linked_panels_and_stores_a_review(page: Page) -> None:
    pg = page.page
    pg.goto(page.server.url + "/")
    assert pg.locator("tr#ds-demo").count() == 1
    t0 = time.monotonic()
    pg.locator("tr#ds-demo a.view-overlay", has_text="pred").first.click()
    frame = page.neuroglancer()
    raw_panel, overlay_panel, mesh_panel = page.panels(frame)
    raw = wait_rendered(raw_panel)
    first_render_s = time.monotonic() - t0
    overlay = wait_rendered(overlay_panel, coloured=True)
    page.shot("overlay-page")
    page.shot("overlay-raw-panel", raw_panel)
    page.shot("overlay-pred-panel", overlay_panel)
    print(f"overlay: first panel rendered {first_render_s:.2f} s after following the link")

    # the raw panel shows the EM image in grey; the overlay panel adds saturated segment colours
    assert centre(raw).std() > MIN_IMAGE_STD
    assert saturated_fraction(centre(raw)) < GREY_MAX
    assert saturated_fraction(centre(overlay)) > 0.3
    assert mesh_panel.bounding_box()["x"] > overlay_panel.bounding_box()["x"]

    # navigation is linked: z+ typed into the raw panel moves both panels and the Python viewer's state
    token = frame.url.rstrip("/").rsplit("/", 1)[-1]
    spec, ng = page.server.app.extensions["viewer.pool"].get(token)
    assert spec.preds == ("pred",)
    layout = ng.state.to_json()["layout"]
    assert layout["type"] == "row" and [c["layers"] for c in layout["children"]] == [["image"], ["image", "pred"], ["pred"]]
    assert all(c.get("position", {}).get("link", "linked") == "linked" for c in layout["children"])
    z0 = float(ng.state.position[2])
    raw_panel.hover()
    raw_panel.click()
    for _ in range(8):
        pg.keyboard.press("Period")
    deadline = time.monotonic() + 10
    while float(ng.state.position[2]) < z0 + 7 and time.monotonic() < deadline:
        pg.wait_for_timeout(100)
    assert float(ng.state.position[2]) == pytest.approx(z0 + 8)
    pg.wait_for_timeout(1000)
    page.shot("overlay-after-move")
    raw_after = wait_rendered(raw_panel)
    overlay_after = wait_rendered(overlay_panel, coloured=True)
    page.shot("overlay-after-move")
    assert np.abs(centre(raw_after) - centre(raw)).mean() > 5
    assert np.abs(centre(overlay_after) - centre(overlay)).mean() > 5

    # a verdict through the page: double-click selects the segment under the mouse, the button stores it
    box = overlay_panel.bounding_box()
    pg.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    deadline = time.monotonic() + 10
    while not list(ng.state.layers["pred"].segments) and time.monotonic() < deadline:
        pg.wait_for_timeout(100)
    selected = sorted(int(s) for s in ng.state.layers["pred"].segments)
    pg.fill("#review input[name=note]", "two cells <joined>")
    pg.click("#review button[value=false_merge]")
    pg.wait_for_function("document.getElementById('review-status').textContent.startsWith('stored')", timeout=10_000)
    page.shot("overlay-reviewed")
    reviews = page.server.app.extensions["viewer.reviews"].for_dataset("demo")
    assert reviews and reviews[0]["verdict"] == "false_merge" and reviews[0]["note"] == "two cells <joined>"
    if selected:
        assert reviews[0]["segment"] == selected[0]
    else:
        assert reviews[0]["position"] is not None

    pg.goto(page.server.url + "/")
    listed = pg.locator("tr#ds-demo li.review").first.inner_text()
    assert "false merge" in listed and "two cells <joined>" in listed
    page.shot("index-with-review")
    assert page.errors == []


def test_compare_shows_both_predictions(page: Page) -> None:
    page.page.goto(page.server.url + "/view/demo?layout=compare&pred=pred,pred2")
    frame = page.neuroglancer()
    a_panel, b_panel, _mesh = page.panels(frame)
    a = wait_rendered(a_panel, coloured=True)
    b = wait_rendered(b_panel, coloured=True)
    page.shot("compare-page")
    assert saturated_fraction(centre(a)) > 0.3 and saturated_fraction(centre(b)) > 0.3
    assert page.errors == []


def test_copy_state_gives_the_live_json(page: Page) -> None:
    page.page.goto(page.server.url + "/view/demo")
    page.neuroglancer(panels=3)
    page.page.wait_for_timeout(500)
    page.page.click("#copy-state")
    page.page.wait_for_function("document.getElementById('state-json').value.length > 0", timeout=10_000)
    import json

    state = json.loads(page.page.input_value("#state-json"))
    assert state["layers"][0]["name"] == "image"
    assert state["layers"][0]["source"].startswith("precomputed://" + page.server.url + "/precomputed/demo/image")
    assert page.errors == []
