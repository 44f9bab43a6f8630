"""Review page timings: ``/`` with 100 catalogued datasets, and opening a view until its first panel renders.

    python benchmarks/bench_viewer.py            # both; the browser part needs /usr/bin/chromium + playwright
    python benchmarks/bench_viewer.py --no-browser

Goals: ``/`` <= 200 ms of server time once thumbnails exist (the anchor is
``/healthz`` in the same run, the app's cheapest route), and from
opening ``/view/<id>`` to the first rendered Neuroglancer panel (goal <= 2 s;
Neuroglancer's client is built from the npm registry on the first run, see
``python -m viewer.bundle``; the anchor is the bare client's start-up).
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


def _panels(page, timeout_s: float = 60.0) -> Any:  # type: ignore[no-untyped-def]
    """Neuroglancer's data panels in the page's frame, once there are three."""
    t0 = time.perf_counter()
    while True:
        frames = [f for f in page.frames if "/neuroglancer/" in f.url]
        panels = frames[0].locator(".neuroglancer-rendered-data-panel") if frames else None
        if panels is not None and panels.count() == 3:
            return panels
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(f"no Neuroglancer panels within {timeout_s} s")
        page.wait_for_timeout(20)


def _until(panel, ok, t0: float, timeout_s: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    import imagecodecs

    while True:
        rgb = np.asarray(imagecodecs.png_decode(panel.screenshot()))[..., :3].astype(np.int16)
        h, w = rgb.shape[:2]
        if ok(rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(f"a panel was not drawn within {timeout_s} s")
        time.sleep(0.02)


def bench_view(tmp: Path, runs: int) -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from blockio.config import Settings
    from precomputed.segmentation import write_segmentation
    from viewer.bundle import build_client, default_cache

    t0 = time.perf_counter()
    build_client(default_cache(Settings.from_env().viewer_cache))
    print(f"Neuroglancer's client: built or found in the cache in {time.perf_counter() - t0:.1f} s")
    volume = make_em_volume((512, 512, 64), seed=0)
    np.save(tmp / "demo.npy", volume.image)
    root = tmp / "rootview"
    ingest(tmp / "demo.npy", root, "demo", IngestOptions(voxel_size=(8, 8, 40), progress=False))
    write_segmentation(root, "demo", "pred", volume.labels, provenance={"model": "ground truth"})
    app = create_app({"BLOCKIO_ROOT": str(root)})
    viewer.init_app(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def image(data: np.ndarray) -> bool:
        return bool(data.std() > 12)

    def meshes(data: np.ndarray) -> bool:
        return bool(((data.max(axis=-1) - data.min(axis=-1)) > 20).mean() > 0.2)

    first, whole, anchor = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for _ in range(runs):
            # a new context each run: nothing in the browser's cache
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(base + "/neuroglancer/")
            page.wait_for_function("window.viewer !== undefined && document.querySelector('.neuroglancer-viewer') !== null", polling=20)
            anchor.append(time.perf_counter() - t0)
            context.close()
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(base + "/view/demo?layout=overlay&pred=pred")
            panels = _panels(page)
            first.append(_until(panels.nth(0), image, t0))
            whole.append(_until(panels.nth(2), meshes, t0))
            context.close()
        browser.close()
    server.shutdown()
    med = statistics.median
    print(f"open /view -> first rendered panel (512x512x64 demo, headless Chromium, SwiftShader, cold browser cache): "
          f"{', '.join(f'{t:.2f}' for t in first)} s; median {med(first):.2f} s (goal <= 2 s)")
    print(f"open /view -> meshes of the opening segments in the 3-D panel: median {med(whole):.2f} s")
    print(f"anchor: Neuroglancer's bare client at /neuroglancer/ until its viewer exists: median {med(anchor):.2f} s "
          f"(first panel / anchor: {med(first) / med(anchor):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_index(Path(tmp), args.datasets)
        if not args.no_browser:
            bench_view(Path(tmp), args.runs)


if __name__ == "__main__":
    main()
