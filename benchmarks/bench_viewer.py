"""Review page timings: ``/`` with 100 catalogued datasets, opening a view until its first panel renders, the next queue item.

    python benchmarks/bench_viewer.py            # both; the browser part needs /usr/bin/chromium + playwright
    python benchmarks/bench_viewer.py --no-browser

Goals: ``/`` <= 200 ms of server time once thumbnails exist (the anchor is
``/healthz`` in the same run, the app's cheapest route), and from
opening ``/view/<id>`` to the first rendered Neuroglancer panel (goal <= 2 s;
Neuroglancer's client is built from the npm registry on the first run, see
``python -m viewer.bundle``; the anchor is the bare client's start-up), and
from a verdict on a review queue item to the next item ready (goal <= 1 s).
"Ready" is Neuroglancer's own: every chunk a panel shows is in GPU memory
(polled on each animation frame in the page, never by screenshots); one
screenshot afterwards checks that the panel shows the image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import viewer  # noqa: E402
from blockio.serving.app import create_app  # noqa: E402
from precomputed.catalog import Catalog  # noqa: E402
from precomputed.ingest import IngestOptions, ingest  # noqa: E402
from precomputed.synthetic import make_em_volume  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def _median_ms(client, url: str, n: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, (url, resp.status_code)
    return statistics.median(times)


def bench_index(tmp: Path, datasets: int) -> None:
    root = tmp / "root100"
    np.save(tmp / "tiny.npy", np.random.default_rng(0).integers(0, 255, (8, 32, 32), dtype=np.uint8))
    record = ingest(tmp / "tiny.npy", root, "tiny", IngestOptions(voxel_size=(4, 4, 40), progress=False, workers=1))
    catalog = Catalog(root)
    for i in range(datasets - 1):
        catalog.update(f"tiny{i:03d}", lambda _old, i=i: {**record, "id": f"tiny{i:03d}"})
    app = create_app({"BLOCKIO_ROOT": str(root)})
    viewer.init_app(app)
    client = app.test_client()
    t0 = time.perf_counter()
    for dataset in app.extensions["blockio.store"].datasets():
        for plane in ("xy", "xz"):
            assert client.get(f"/thumb/{dataset}/{plane}.png").status_code == 200
    print(f"thumbnails: {2 * datasets} made in {time.perf_counter() - t0:.2f} s")
    first = _median_ms(client, f"/?per_page={datasets}", 1)
    index = _median_ms(client, f"/?per_page={datasets}", 20)
    thumb = _median_ms(client, "/thumb/tiny/xy.png", 20)
    anchor = _median_ms(client, "/healthz", 20)
    print(f"/ with {datasets} datasets on one page: first {first:.1f} ms, then median {index:.1f} ms (goal <= 200 ms); "
          f"cached thumbnail {thumb:.2f} ms; /healthz {anchor:.2f} ms (ratio {index / anchor:.0f}x)")


# Neuroglancer's own readiness, evaluated in its frame on every animation frame (no screenshots:
# a screenshot reads the GPU back and, on SwiftShader, slows the very rendering it waits for).
# A panel is ready when every chunk it shows of every visible layer is in GPU memory; layers
# must have loaded their sources first (a panel with no layer yet is trivially ready).
_READY_JS = """(which) => {
  const v = window.viewer;
  if (!v || !v.layerManager || v.layerManager.managedLayers.length === 0) return false;
  if (!v.layerManager.managedLayers.every(l => l.layer !== null && l.isReady())) return false;
  const panels = [...v.display.panels].filter(p => p.visible);
  if (panels.length < 3) return false;
  if (which === "first") return panels.some(p => p.sliceView !== undefined && p.sliceView.visibleLayers.size > 0 && p.isReady());
  return panels.every(p => p.isReady());
}"""


def _frame(page, timeout_s: float = 60.0) -> Any:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    while True:
        frames = [f for f in page.frames if "/neuroglancer/" in f.url]
        if frames:
            return frames[0]
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(f"no Neuroglancer frame within {timeout_s} s")
        page.wait_for_timeout(5)


def _ready(frame, which: str, t0: float) -> float:  # type: ignore[no-untyped-def]
    frame.wait_for_function(_READY_JS, arg=which, polling="raf", timeout=60_000)
    return time.perf_counter() - t0


def _check_drawn(frame) -> None:  # type: ignore[no-untyped-def]
    """Once, after the timing: the first panel really shows the image (a screenshot, not timed)."""
    import imagecodecs

    panel = frame.locator(".neuroglancer-rendered-data-panel").first
    rgb = np.asarray(imagecodecs.png_decode(panel.screenshot()))[..., :3].astype(np.int16)
    h, w = rgb.shape[:2]
    if not rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].std() > 12:
        raise SystemExit("Neuroglancer said ready but the first panel shows no image")


def _sign_in(context, base: str, token: str) -> Any:  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.goto(base + "/signin?next=/")
    page.fill("input[name=token]", token)
    page.click("#signin button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def bench_view(tmp: Path, runs: int, items: int) -> None:
    import logging

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from blockio.cli.main import main as cli
    from blockio.config import Settings
    from precomputed.segmentation import write_segmentation
    from viewer.bundle import build_client, default_cache

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    build_client(default_cache(Settings.from_env().viewer_cache))
    print(f"Neuroglancer's client: built or found in the cache in {time.perf_counter() - t0:.1f} s")
    volume = make_em_volume((512, 512, 64), seed=0)
    np.save(tmp / "demo.npy", volume.image)
    root = tmp / "rootview"
    ingest(tmp / "demo.npy", root, "demo", IngestOptions(voxel_size=(8, 8, 40), progress=False))
    write_segmentation(root, "demo", "pred", volume.labels, provenance={"model": "ground truth"})
    queue_size = items * (runs + 1) + 2
    assert cli(["review", "plan", "--root", str(root), "demo", "--pred", "pred", "--strategy", "largest", "--size", str(queue_size), "--name", "bench"]) == 0
    app = create_app({"BLOCKIO_ROOT": str(root), "BLOCKIO_COOKIE_SECURE": "0", "BLOCKIO_RATE_BURST": "100000"})
    viewer.init_app(app)
    token = app.extensions["blockio.users"].add("bench", "reviewer")[1]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    first, whole, anchor, nexts, moved = [], [], [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for _ in range(runs):
            # a new context each run: nothing in the browser's cache
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(base + "/neuroglancer/")
            page.wait_for_function("window.viewer !== undefined && document.querySelector('.neuroglancer-viewer') !== null", polling="raf")
            anchor.append(time.perf_counter() - t0)
            context.close()
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(base + "/view/demo?layout=overlay&pred=pred", wait_until="commit")
            frame = _frame(page)
            first.append(_ready(frame, "first", t0))
            whole.append(_ready(frame, "all", t0))
            _check_drawn(frame)
            context.close()

            # the next queue item: from the verdict's click to every panel ready on the next item
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = _sign_in(context, base, token)
            page.goto(base + "/view/demo?layout=overlay&pred=pred&queue=bench")
            page.wait_for_function("window.blockioReview !== undefined && blockioReview.item() !== null && !blockioReview.moving()")
            frame = _frame(page)
            _ready(frame, "all", time.perf_counter())
            for _ in range(items):
                before = page.evaluate("blockioReview.item().id")
                t0 = time.perf_counter()
                page.click("#review button[value=correct]")
                frame.evaluate("window.viewer.layerManager.managedLayers[1].layer.blockioMark = true")
                page.wait_for_function(f"!blockioReview.moving() && blockioReview.item() !== null && blockioReview.item().id !== {before}", polling="raf")
                moved.append(time.perf_counter() - t0)
                nexts.append(_ready(frame, "all", t0))
                if not frame.evaluate("window.viewer.layerManager.managedLayers[1].layer.blockioMark === true"):
                    raise SystemExit("the next item made new layers: their chunks and meshes were loaded again")
            context.close()
        browser.close()
    server.shutdown()
    med = statistics.median
    print(f"open /view -> first panel ready (512x512x64 demo, headless Chromium, SwiftShader, cold browser cache): "
          f"{', '.join(f'{t:.2f}' for t in first)} s; median {med(first):.2f} s (goal <= 2 s)")
    print(f"open /view -> every panel ready, meshes of the opening segments included: median {med(whole):.2f} s")
    print(f"next queue item (verdict click -> the next item's panels and meshes ready, same viewer): {len(nexts)} items, "
          f"median {med(nexts):.2f} s, max {max(nexts):.2f} s (goal <= 1 s); of which the verdict, the next item and its state "
          f"over HTTP until the viewer moved: median {med(moved) * 1000:.0f} ms")
    print(f"anchor: Neuroglancer's bare client at /neuroglancer/ until its viewer exists: median {med(anchor):.2f} s "
          f"(first panel / anchor: {med(first) / med(anchor):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=5, help="queue items reviewed per run")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_index(Path(tmp), args.datasets)
        if not args.no_browser:
            bench_view(Path(tmp), args.runs, args.items)


if __name__ == "__main__":
    main()
