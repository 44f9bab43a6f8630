"""The review page in headless Chromium against two gunicorn servers (``-w 2`` each) under host names other than localhost.

Neuroglancer's client is the one :mod:`viewer.bundle` builds from the npm
registry, served by the app itself at ``/neuroglancer/``; the view's state is
in the URL fragment, so a view opened on one server (``review-a.test``) reopens
on the other (``review-b.test``) from its URL alone, and every view, selection
and verdict works whichever worker answers. Chromium resolves ``*.test`` to
127.0.0.1 (``--host-resolver-rules``). Needs Debian's Chromium at
/usr/bin/chromium, the ``playwright`` package (never ``playwright install``),
gunicorn, and node/npm for the first build. Screenshots go to the test's
``tmp_path`` and to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from blockio.config import Settings
from viewer.bundle import build_client, default_cache

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RENDER_TIMEOUT_S = 90.0
# a panel that shows the EM image, not a uniform background
MIN_IMAGE_STD = 12.0
# a pixel whose channels differ this much is a segmentation colour: the raw panel is exactly grey
SATURATED = 20
# coloured fraction allowed in a grey panel: the crosshair and the volume's outline
GREY_MAX = 0.03
# coloured fraction of the 3-D panel's middle once meshes are drawn (black background otherwise)
MESH_MIN = 0.2
VIEW = "/view/demo?layout=overlay&pred=pred"


class Gunicorn:
    """``gunicorn -w N 'blockio.serving.app:create_app()'`` on a free loopback port; the access log names each worker's pid.

    ``conf``: with the shipped configuration (``-c python:blockio.serving.gunicorn_conf``: threaded
    workers, one socket each, /metrics over every worker), as the README's production command runs it.
    """

    def __init__(self, root: Path, cache: Path, log: Path, *, workers: int = 2, conf: bool = False) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "BLOCKIO_ROOT": str(root), "BLOCKIO_VIEWER_CACHE": str(cache), "BLOCKIO_COOKIE_SECURE": "0"}
        config = []
        if conf:
            config = ["-c", "python:blockio.serving.gunicorn_conf"]
            env["PROMETHEUS_MULTIPROC_DIR"] = str(log.parent / f"metrics-{self.port}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *config, "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--access-logfile", str(log),
             "--access-logformat", '%(p)s "%(r)s" %(s)s', "blockio.serving.app:create_app()"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start: {self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}") from None
                time.sleep(0.2)

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def served(self) -> list[tuple[str, str, int]]:
        """(worker pid, request line, status) of every request so far."""
        rows = []
        for line in self.log.read_text().splitlines():
            found = re.match(r'<(\d+)> "([^"]*)" (\d+)', line)
            if found:
                rows.append((found.group(1), found.group(2), int(found.group(3))))
        return rows

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def client_cache() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("no node/npm on PATH to build Neuroglancer's client: apt-get install nodejs npm")
    cache = default_cache(Settings.from_env().viewer_cache)
    build_client(cache)
    return cache


@pytest.fixture(scope="module")
def servers(demo_root: Path, client_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gunicorn, Gunicorn, str]]:
    pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("gunicorn")
    root = tmp / "root"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns(".cache", "reviews.json*", "review"))
    added = subprocess.run([sys.executable, "-m", "blockio.cli", "users", "add", "rev", "--role", "reviewer", "--root", str(root)], capture_output=True, text=True, check=True)
    token = added.stdout.strip().splitlines()[-1]
    a = Gunicorn(root, client_cache, tmp / "a.log")
    try:
        b = Gunicorn(root, client_cache, tmp / "b.log")
    except BaseException:
        a.stop()
        raise
    yield a, b, token
    a.stop()
    b.stop()


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
    """A browser page on a live server (``tests.live_server``) that records console and page errors."""

    def __init__(self, browser: Any, server: Any, tmp_path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.server = server
        self.tmp_path = tmp_path
        self.errors: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def shot(self, name: str, element: Any = None) -> Path:
        path = self.tmp_path / f"{name}.png"
        (element or self.page).screenshot(path=str(path))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path

    def close(self) -> None:
        self.page.close()


class Reviewer(Page):
    """A page in its own browser context, with a reviewer's Bearer token on every request."""

    def __init__(self, browser: Any, token: str, tmp_path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, extra_http_headers={"Authorization": f"Bearer {token}"})
        self.page = self.context.new_page()
        self.server = None
        self.tmp_path = tmp_path
        self.errors: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def open(self, url: str, panels: int = 3) -> Any:
        """Go to a view; returns Neuroglancer's frame once the page's script holds its viewer and the panels are there."""
        self.page.goto("about:blank")  # a new document even when only the fragment differs
        self.page.goto(url)
        self.page.wait_for_function("window.blockioReview !== undefined")
        self.page.evaluate("blockioReview.ready.then(() => true)")
        frame = next(f for f in self.page.frames if "/neuroglancer/" in f.url)
        frame.wait_for_function(f"document.querySelectorAll('.neuroglancer-rendered-data-panel').length === {panels}", timeout=RENDER_TIMEOUT_S * 1000)
        return frame

    def panels(self, frame: Any) -> list[Any]:
        loc = frame.locator(".neuroglancer-rendered-data-panel")
        return sorted((loc.nth(i) for i in range(loc.count())), key=lambda item: item.bounding_box()["x"])

    def selection(self) -> dict[str, Any]:
        return self.page.evaluate("(() => { const s = blockioReview.selection(); return {position: s.position, segments: s.segments, state: JSON.stringify(s.state)}; })()")  # type: ignore[no-any-return]

    def verdict(self, verdict: str, note: str = "") -> str:
        self.page.fill("#review input[name=note]", note)
        self.page.evaluate("document.getElementById('review-status').textContent = ''")
        self.page.click(f"#review button[value={verdict}]")
        self.page.wait_for_function("document.getElementById('review-status').textContent !== ''", timeout=10_000)
        return str(self.page.inner_text("#review-status"))

    def close(self) -> None:
        self.context.close()


def pixels(element: Any) -> np.ndarray:
    """An element's screenshot as an RGB [rows, cols, 3] array."""
    return np.asarray(imagecodecs.png_decode(element.screenshot()))[..., :3].astype(np.int16)


def centre(rgb: np.ndarray) -> np.ndarray:
    """The middle half of a panel: the data, without the axis labels and the scale bar."""
    rows, cols = rgb.shape[:2]
    return rgb[rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4]


def saturated_fraction(rgb: np.ndarray) -> float:
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > SATURATED).mean())


def wait_for(panel: Any, ok: Any, what: str) -> np.ndarray:
    """Poll a panel until ``ok(centre pixels)``; returns its pixels."""
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    while True:
        rgb = pixels(panel)
        if ok(centre(rgb)):
            return rgb
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not drawn after {RENDER_TIMEOUT_S} s (std {centre(rgb).std():.1f}, saturated {saturated_fraction(centre(rgb)):.3f})")
        time.sleep(0.2)


def wait_rendered(panel: Any, *, coloured: bool = False) -> np.ndarray:
    """Poll a panel until it shows the image (and segmentation colours when asked); returns its pixels."""
    return wait_for(panel, overlay_drawn if coloured else image_drawn, "the overlay" if coloured else "the image")


def image_drawn(data: np.ndarray) -> bool:
    return bool(data.std() > MIN_IMAGE_STD)


def overlay_drawn(data: np.ndarray) -> bool:
    return bool(data.std() > MIN_IMAGE_STD and saturated_fraction(data) > 0.3)


def mesh_drawn(data: np.ndarray) -> bool:
    return saturated_fraction(data) > MESH_MIN


def widget_position(frame: Any) -> list[int]:
    """The position Neuroglancer's own top bar shows."""
    inputs = frame.locator(".neuroglancer-position-dimension-coordinate")
    return [int(inputs.nth(i).input_value()) for i in range(3)]


@pytest.fixture
def reviewer(browser: Any, servers: tuple[Gunicorn, Gunicorn, str], tmp_path: Path) -> Iterator[Reviewer]:
    page = Reviewer(browser, servers[2], tmp_path)
    yield page
    page.close()


def reviews(server: Gunicorn, token: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(server.url("127.0.0.1") + "/reviews.json?dataset=demo", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["reviews"]  # type: ignore[no-any-return]


def test_a_view_renders_and_reviews_on_either_server_from_its_url_alone(reviewer: Reviewer, servers: tuple[Gunicorn, Gunicorn, str], browser: Any, tmp_path: Path) -> None:
    a, b, token = servers
    pg = reviewer.page
    frame = reviewer.open(a.url("review-a.test") + VIEW)
    raw_panel, overlay_panel, mesh_panel = reviewer.panels(frame)
    raw = wait_for(raw_panel, image_drawn, "the raw image")
    overlay = wait_for(overlay_panel, overlay_drawn, "the overlay")
    mesh = wait_for(mesh_panel, mesh_drawn, "the meshes of the opening segments")
    reviewer.shot("view-a-page")
    reviewer.shot("view-a-raw-panel", raw_panel)
    reviewer.shot("view-a-overlay-panel", overlay_panel)
    reviewer.shot("view-a-mesh-panel", mesh_panel)
    assert saturated_fraction(centre(raw)) < GREY_MAX
    assert saturated_fraction(centre(overlay)) > 0.3 and saturated_fraction(centre(mesh)) > MESH_MIN

    # the layers are read from the host the browser asked, never a fixed address
    sel = reviewer.selection()
    assert f"precomputed://{a.url('review-a.test')}/precomputed/demo/image" in sel["state"] and "127.0.0.1" not in sel["state"]
    # the page and Neuroglancer agree on the position: the centre voxel (64, 64, 16) of 128 x 128 x 32
    assert sel["position"] == widget_position(frame) == [64, 64, 16]
    opening = sel["segments"]["pred"]
    assert opening and pg.inner_text("#selection") == "selected: " + ", ".join(opening)

    # a verdict on the selected segments, read in the browser and posted by the page
    assert reviewer.verdict("false_merge", "two cells <joined>") == f"stored {len(opening)} verdict(s)"
    # Alt+C over the overlay marks the segment under the mouse
    box = overlay_panel.bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
    pg.wait_for_timeout(300)
    hovered = pg.evaluate("blockioReview.underMouse('pred')")
    pg.keyboard.press("Alt+KeyC")
    pg.wait_for_function("document.getElementById('review-status').textContent.startsWith('stored 1 ')", timeout=10_000)

    # move 4 sections up; the page's own URL follows (its fragment), and reopens the same view on server B
    raw_panel.click()
    for _ in range(4):
        pg.keyboard.press("Period")
    pg.wait_for_function("blockioReview.selection().position[2] === 20", timeout=10_000)
    pg.wait_for_function("location.hash.includes('20.5')", timeout=10_000)
    shared = pg.url.replace(a.url("review-a.test"), b.url("review-b.test"))
    assert reviewer.errors == []

    other = Reviewer(browser, token, tmp_path)
    try:
        frame_b = other.open(shared)
        assert other.selection()["position"] == [64, 64, 20] and other.selection()["segments"]["pred"] == opening
        wait_for(other.panels(frame_b)[2], mesh_drawn, "the meshes on server B")
        assert widget_position(frame_b) == [64, 64, 20]
        other.shot("view-b-shared-link")
        assert other.verdict("correct") == f"stored {len(opening)} verdict(s)"

        # no segment selected: the 3-D panel is empty and the verdict is on the voxel Neuroglancer shows
        frame_c = other.open(b.url("review-b.test") + VIEW + "#!" + urllib.parse.quote(json.dumps({"segments": {"pred": []}})))
        empty = wait_for(other.panels(frame_c)[1], overlay_drawn, "the overlay without a selection")
        assert saturated_fraction(centre(empty)) > 0.3  # unselected segments stay drawn in 2-D
        # the 3-D panel may still show the previous view's frame for a moment: wait for it to clear
        wait_for(other.panels(frame_c)[2], lambda data: saturated_fraction(data) < MESH_MIN / 4, "an empty 3-D panel")
        assert other.page.inner_text("#selection") == "no segment selected: marks position 64, 64, 16"
        assert other.verdict("missing", "a cell") == "stored 1 verdict(s)"
        other.shot("view-b-no-selection")
        assert other.errors == []
    finally:
        other.close()

    stored = reviews(a, token)
    by_verdict = {v: [r for r in stored if r["verdict"] == v] for v in ("false_merge", "correct", "missing")}
    assert sorted(str(r["segment"]) for r in by_verdict["false_merge"]) == sorted(opening)
    assert by_verdict["false_merge"][0]["note"] == "two cells <joined>"
    key_marked = [r for r in by_verdict["correct"] if r["segment"] is None or str(r["segment"]) not in opening or r["note"] == ""]
    assert len(by_verdict["correct"]) == 1 + len(opening)
    if hovered["segments"]:
        assert any(str(r["segment"]) == hovered["segments"][0] for r in key_marked)
    assert [r["position"] for r in by_verdict["missing"]] == [[64, 64, 16]]

    # every request of the page succeeded, whichever of each server's two workers answered it
    for server in (a, b):
        served = server.served()
        failed = [row for row in served if row[2] >= 400]
        assert failed == [], failed
        assert len({pid for pid, _line, _status in served}) == 2, "both workers answered"
    posts = [row for server in (a, b) for row in server.served() if row[1].startswith("POST /view/demo/review")]
    assert len(posts) == 4  # false merge and Alt+C on A, correct and missing on B


def test_views_and_verdicts_over_http_on_every_worker(servers: tuple[Gunicorn, Gunicorn, str]) -> None:
    # without a browser: 40 views and 40 verdicts, none lost, each worker of each server serving some
    a, b, token = servers
    before = len(reviews(a, token))
    for i in range(40):
        server = (a, b)[i % 2]
        with urllib.request.urlopen(server.url("127.0.0.1") + VIEW, timeout=30) as resp:
            assert resp.status == 200 and "127.0.0.1" in resp.read().decode()  # the request's own host
        body = json.dumps({"layer": "pred", "verdict": "correct", "position": [i, 1, 2]}).encode()
        req = urllib.request.Request(server.url("127.0.0.1") + "/view/demo/review", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
    after = reviews(b, token)
    assert len(after) == before + 40
    assert sorted(r["position"][0] for r in after if r["position"] and r["position"][1:] == [1, 2]) == list(range(40))
    for server in (a, b):
        pids = {pid for pid, line, status in server.served() if line.startswith("POST /view/demo/review") and status == 200}
        assert pids, "a server answered no verdict"
