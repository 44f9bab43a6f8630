"""Live model layers: first view against the model's own time, and cached chunks, anchors in the same run.

    python benchmarks/bench_live.py [--shape 256,256,64] [--rounds 3] [--repeats 200]

On the synthetic EM volume in 64^3 chunks, with ``membrane_watershed`` and
predict's default plan (128^3 cores, 16-voxel halo), served by ``create_app``
on a loopback port (werkzeug, threaded) and fetched over HTTP one request at
a time:

* **image** layer (the model's scores): the first view of one xy section
  (every chunk it crosses), against the model's own time on the windows of
  the tasks that own those chunks (block already read and normalised);
* **segmentation** layer (``output=segmentation``, ``workers=1``): the first
  chunk of a cold layer, which segments the whole volume (predict's segment
  pass, face union, relabelling, encoding), against the model's own time on
  every task's window, one after the other;
* a **cached** 64^3 chunk of each (median and 95th percentile over
  ``--repeats`` GETs, a new connection each), against a GET of the image
  layer's own 64^3 chunk file from the file server.

Targets: first view at most the model's time plus 20 % (ratio <= 1.2); a
cached chunk at most 5 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "blockio.inference.models:membrane_watershed"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as response:
        return response.read()  # type: ignore[no-any-return]


def latency(url: str, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile of a GET, in ms."""
    get(url)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def model_time(store: Any, plan: Any, tasks: list[int]) -> float:
    """Seconds of the model alone on the windows of ``tasks`` (inputs read before the clock starts)."""
    from blockio.inference.models import membrane_watershed

    total = 0.0
    for i in tasks:
        w = plan.window(i)
        block = store.read_block("em", w.start, w.size, boundary="reflect", normalize="percentile", dtype=np.float32)[np.newaxis]
        t = time.perf_counter()
        membrane_watershed(np.ascontiguousarray(block))
        total += time.perf_counter() - t
    return total


@contextlib.contextmanager
def serving(app: Any) -> Iterator[tuple[Any, str]]:
    """The app on a loopback port (werkzeug, threaded) while the block runs."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="256,256,64")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="cold first views (and anchors) measured; the best of each is kept")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    from blockio.inference.plan import RunPlan
    from blockio.serving.app import create_app
    from blockio.store import Store
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.synthetic import make_em_volume

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    base = Path(tempfile.mkdtemp(prefix="blockio-bench-live-"))
    try:
        np.save(base / "img.npy", make_em_volume(shape, voxel_size=(8, 8, 40), seed=0).image)
        root = base / "root"
        ingest(base / "img.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(64, 64, 64), progress=False, workers=2))
        models = f"scores={MODEL};cells={MODEL}?output=segmentation&workers=1"
        store = Store(root)
        core = (128, 128, 128)
        plan = RunPlan(str(root), "em", "bench", MODEL, MODEL, "", shape, core, (16, 16, 16), 0, "percentile", 0.5, False)  # type: ignore[arg-type]
        print(f"volume {list(shape)} (x, y, z) in 64^3 chunks, {MODEL}, cores {list(core)} + 16 halo, {plan.tasks} tasks; best of {args.rounds} rounds")
        z0 = (shape[2] // 2) // 64 * 64
        names, owners = [], set()
        for y0 in range(0, shape[1], 64):
            for x0 in range(0, shape[0], 64):
                names.append(f"{x0}-{min(x0 + 64, shape[0])}_{y0}-{min(y0 + 64, shape[1])}_{z0}-{min(z0 + 64, shape[2])}")
                owners.add(plan.index((x0 // core[0], y0 // core[1], z0 // core[2])))
        first_image, anchor_image, first_seg, anchor_seg = [], [], [], []
        for _ in range(args.rounds):
            # each round a new app: cold caches; the model's own time measured between, on the same machine state
            with serving(create_app({"BLOCKIO_ROOT": str(root), "BLOCKIO_LIVE_MODELS": models})) as (app, url):
                key = json.loads(get(f"{url}/precomputed/em/live/scores/info"))["scales"][0]["key"]  # one probe call, not part of the view
                t = time.perf_counter()
                for name in names:
                    get(f"{url}/precomputed/em/live/scores/{key}/{name}")
                first_image.append(time.perf_counter() - t)
                anchor_image.append(model_time(store, plan, sorted(owners)))
                key_s = json.loads(get(f"{url}/precomputed/em/live/cells/info"))["scales"][0]["key"]
                t = time.perf_counter()
                get(f"{url}/precomputed/em/live/cells/{key_s}/{names[0]}")
                first_seg.append(time.perf_counter() - t)
                anchor_seg.append(model_time(store, plan, list(range(plan.tasks))))
        print(f"image, first view of one section ({len(names)} chunks, {len(owners)} tasks): {min(first_image):.2f} s; "
              f"the model alone on those windows {min(anchor_image):.2f} s; ratio {min(first_image) / min(anchor_image):.2f} (target <= 1.2)")
        print(f"segmentation, first chunk (segments the whole volume, {plan.tasks} tasks, 1 worker): {min(first_seg):.2f} s; "
              f"the model alone on every window {min(anchor_seg):.2f} s; ratio {min(first_seg) / min(anchor_seg):.2f} (target <= 1.2)")
        with serving(app) as (_, url):  # the last round's app: its caches are warm
            image_key = json.loads(get(f"{url}/precomputed/em/image/info"))["scales"][0]["key"]
            static = latency(f"{url}/precomputed/em/image/{image_key}/0-64_0-64_0-64", args.repeats)
            t = time.perf_counter()
            for name in names[1:]:
                get(f"{url}/precomputed/em/live/cells/{key_s}/{name}")
            rest = time.perf_counter() - t
            cached_image = latency(f"{url}/precomputed/em/live/scores/{key}/{names[0]}", args.repeats)
            cached_seg = latency(f"{url}/precomputed/em/live/cells/{key_s}/{names[0]}", args.repeats)
            sizes = [len(get(f"{url}/precomputed/em/live/{n}/{k}/{names[0]}")) for n, k in (("scores", key), ("cells", key_s))]
        print(f"segmentation, the section's other {len(names) - 1} chunks after the first: {rest * 1e3:.1f} ms in all")
        print(f"anchor: a 64^3 chunk file of the image layer (file server): median {static[0]:.2f} ms, p95 {static[1]:.2f} ms")
        for what, (median, p95), size in (("image (float32 raw)", cached_image, sizes[0]), ("segmentation (compressed)", cached_seg, sizes[1])):
            print(f"cached 64^3 live chunk, {what}, {size / 1024:.0f} KiB: median {median:.2f} ms, p95 {p95:.2f} ms "
                  f"({median / static[0]:.2f}x the static chunk; target <= 5 ms)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
