"""Two reviewers at once work through one review queue in Chromium, against ``gunicorn -w 4`` with the shipped configuration.

The dataset is demo-like: a synthetic EM image, its ground truth as layer
``truth`` and a prediction ``pred`` that merges some cells and splits others;
``blockio review plan --truth`` makes a queue of 20 disagreements and
``blockio users add`` the reviewers' tokens, each signed in through the form in
its own browser context, under the host name ``review.test`` (Chromium's
``--host-resolver-rules``). Each verdict closes the reviewer's item and the
page opens the next one in the same viewer; afterwards the database holds 20
verdicts, one per item, none lost and none twice. Also in Chromium: a reader
can neither take an item nor store a verdict, and a reviewer cannot PUT.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume
from tests.viewer.test_browser import (
    MESH_MIN,
    Gunicorn,
    Page,
    browser,
    client_cache,
    overlay_drawn,
    saturated_fraction,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["browser", "client_cache"]  # the shared module fixtures

SHAPE = (192, 192, 32)
QUEUE = "q20"
ITEMS = 20
HOST = "review.test"
VERDICTS = ("correct", "false_merge", "false_split", "missing")


def demo_like_prediction(truth: np.ndarray) -> np.ndarray:
    """``truth`` [z, y, x] with its 12 largest cells merged in pairs (6 splits for the queue) and the next 14 cut in
    half along x (14 merges): 20 disagreements of a prediction with its ground truth."""
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    largest = [int(i) for i in ids[np.argsort(-counts)]]
    pred = truth.copy()
    for a, b in zip(largest[0:12:2], largest[1:12:2], strict=True):
        pred[truth == b] = a
    fresh = int(truth.max()) + 1
    xs = np.broadcast_to(np.arange(truth.shape[2]), truth.shape)
    for k, cell in enumerate(largest[12:26]):
        inside = truth == cell
        cut = int(np.median(xs[inside]))
        pred[inside & (xs >= cut)] = fresh + k
    return pred


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "blockio.cli", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def queue_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("queue")
    volume = make_em_volume(SHAPE, voxel_size=(8.0, 8.0, 40.0), cell_size_nm=500.0, seed=5)
    np.save(tmp / "demo.npy", volume.image)
    root = tmp / "root"
    ingest(tmp / "demo.npy", root, "demo", IngestOptions(voxel_size=(8.0, 8.0, 40.0), chunk_size=(64, 64, 16), progress=False, workers=1))
    write_segmentation(root, "demo", "truth", volume.labels, provenance={"model": "ground truth"})
    write_segmentation(root, "demo", "pred", demo_like_prediction(volume.labels), provenance={"model": "merges and splits of the truth"})
    planned = cli("review", "plan", "--root", str(root), "demo", "--pred", "pred", "--truth", "truth", "--strategy", "disagreement", "--size", str(ITEMS), "--name", QUEUE)
    assert planned
    tokens = {name: cli("users", "add", name, "--role", role, "--root", str(root)).strip().splitlines()[-1]
              for name, role in (("ann", "reviewer"), ("ben", "reviewer"), ("rea", "reader"), ("wri", "writer"))}  # fmt: skip
    return root, tokens


@pytest.fixture(scope="module")
def server(queue_root: tuple[Path, dict[str, str]], client_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install -e '.[test]'")
    served = Gunicorn(queue_root[0], client_cache, tmp_path_factory.mktemp("gunicorn-queue") / "access.log", workers=4, conf=True)
    yield served
    served.stop()


class SignedIn(Page):
    """A user's page in its own browser context, signed in through the sign-in form with their token."""

    def __init__(self, browser: Any, base: str, token: str, tmp_path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.server, self.tmp_path, self.errors = None, tmp_path, []
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" and "403" not in msg.text else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.goto(f"{base}/signin?next=/")
        self.page.fill("input[name=token]", token)
        self.page.click("#signin button[type=submit]")
        self.page.wait_for_url(f"{base}/")

    def start_queue(self) -> Any:
        """From the index page's queue row to the view of the reviewer's first item; returns Neuroglancer's frame."""
        self.page.click(f"#queue-{QUEUE} a.review-queue")
        self.page.wait_for_function("window.blockioReview !== undefined")
        self.page.wait_for_function("blockioReview.item() !== null && blockioReview.item().kind !== undefined && !blockioReview.moving()", timeout=60_000)
        frame = next(f for f in self.page.frames if "/neuroglancer/" in f.url)
        frame.wait_for_function("document.querySelectorAll('.neuroglancer-rendered-data-panel').length === 3", timeout=60_000)
        return frame

    def item(self) -> dict[str, Any] | None:
        return self.page.evaluate("blockioReview.item()")  # type: ignore[no-any-return]

    def click_verdict(self, verdict: str) -> None:
        self.page.click(f"#review button[value={verdict}]")

    def wait_next(self, previous: int) -> dict[str, Any] | None:
        """Wait until the page shows another item than ``previous`` (or none is left)."""
        self.page.wait_for_function(f"!blockioReview.moving() && (blockioReview.item() === null || blockioReview.item().id !== {previous})", timeout=30_000)
        return self.item()

    def close(self) -> None:
        self.context.close()


def panels(frame: Any) -> list[Any]:
    loc = frame.locator(".neuroglancer-rendered-data-panel")
    return sorted((loc.nth(i) for i in range(loc.count())), key=lambda item: item.bounding_box()["x"])


def check_drawn(reviewer: SignedIn, frame: Any, name: str) -> None:
    """The image under both overlays (the prediction, the truth it is compared with) and the item's meshes are on
    screen; screenshots of the page and each panel."""
    pred, truth, mesh = panels(frame)
    wait_for(pred, overlay_drawn, f"{name}'s image under the prediction")
    wait_for(truth, overlay_drawn, f"{name}'s image under the truth")
    wait_for(mesh, lambda d: saturated_fraction(d) > MESH_MIN / 4, f"{name}'s item meshes")
    reviewer.shot(f"queue-{name}-page")
    for panel, what in ((pred, "pred"), (truth, "truth"), (mesh, "mesh")):
        reviewer.shot(f"queue-{name}-{what}-panel", panel)


def test_two_reviewers_work_through_one_queue_with_nothing_lost_or_reviewed_twice(browser: Any, server: Gunicorn, queue_root: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, tokens = queue_root
    base = server.url(HOST)
    ann, ben = SignedIn(browser, base, tokens["ann"], tmp_path), SignedIn(browser, base, tokens["ben"], tmp_path)
    try:
        frames = {"ann": ann.start_queue(), "ben": ben.start_queue()}
        pages = {"ann": ann, "ben": ben}
        current = {name: page.item() for name, page in pages.items()}
        assert current["ann"] and current["ben"] and current["ann"]["id"] != current["ben"]["id"]
        for name, page in pages.items():
            # the view is centred on the item, with its segments selected (their meshes in the 3-D panel)
            sel = page.page.evaluate("blockioReview.selection()")
            assert sel["position"] == current[name]["position"]
            assert sorted(int(s) for s in sel["segments"]["pred"]) == sorted(current[name]["segments"])
            check_drawn(page, frames[name], name)
        given: dict[int, tuple[str, str]] = {}
        rounds = 0
        while any(current.values()):
            rounds += 1
            assert rounds <= ITEMS, "the queue did not run dry"
            # both click at once; then each page closes its item and opens the next
            clicked = {}
            for name in pages:  # the layers of the viewer stay from item to item, with what they loaded
                frames[name].evaluate("window.viewer.layerManager.getLayerByName('pred').layer.blockioMark = true")
            for name, page in pages.items():
                item = current[name]
                if item is not None:
                    verdict = VERDICTS[len(given) % len(VERDICTS)]
                    assert item["id"] not in given, f"item {item['id']} came back"
                    given[item["id"]] = (name, verdict)
                    page.click_verdict(verdict)
                    clicked[name] = item["id"]
            for name, previous in clicked.items():
                current[name] = pages[name].wait_next(previous)
                assert frames[name].evaluate("window.viewer.layerManager.getLayerByName('pred').layer.blockioMark === true")
                if rounds == 3 and current[name] is not None:  # a later item, opened without reloading the page
                    assert pages[name].page.evaluate("performance.getEntriesByType('navigation').length") == 1
                    check_drawn(pages[name], frames[name], f"{name}-item{rounds + 1}")
        for page in pages.values():
            assert "nothing left" in page.page.inner_text("#queue-item")
            assert page.errors == [], page.errors
        assert len(given) == ITEMS and set(Counter(n for n, _v in given.values())) == {"ann", "ben"}
    finally:
        ann.close()
        ben.close()

    # the database afterwards: every item done once, by the reviewer who gave it, and one verdict per item
    from blockio.database import open_database
    from blockio.review_queues import ReviewQueues
    from viewer.reviews import ReviewLog

    db = open_database(root=str(root), url=None)
    items = ReviewQueues(db).items(QUEUE)
    assert len(items) == ITEMS and all(i["state"] == "done" for i in items)
    assert {i["id"]: (i["reviewer"], i["verdict"]) for i in items} == given
    stored = [r for r in ReviewLog(root, database=db).all() if r["note"] == f"queue {QUEUE}"]
    assert len(stored) == ITEMS
    assert sorted((r["segment"], r["reviewer"], r["verdict"]) for r in stored) == sorted((i["segment"], i["reviewer"], i["verdict"]) for i in items)
    # every page request succeeded on some worker, and all four workers answered
    served = server.served()
    assert [row for row in served if row[2] >= 400] == []
    assert len({pid for pid, _line, _status in served}) == 4


def test_a_reader_cannot_review_and_a_reviewer_cannot_put(browser: Any, server: Gunicorn, queue_root: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, tokens = queue_root
    base = server.url(HOST)
    before = server.served()
    reader = SignedIn(browser, base, tokens["rea"], tmp_path)
    try:
        reader.page.goto(f"{base}/view/demo?layout=overlay&pred=pred&queue={QUEUE}")
        reader.page.wait_for_function("document.getElementById('queue-item').textContent.startsWith('no item')", timeout=60_000)
        assert "reviewer" in reader.page.inner_text("#queue-item")
        reader.page.click("#review button[value=correct]")
        reader.page.wait_for_function("document.getElementById('review-status').textContent.startsWith('not stored')", timeout=30_000)
        reader.shot("queue-reader-refused")
    finally:
        reader.close()
    reviewer = SignedIn(browser, base, tokens["ann"], tmp_path)
    writer = SignedIn(browser, base, tokens["wri"], tmp_path)
    put = """async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch("/api/datasets/demo/layers/pred/block", {method: "PUT", body: new Uint8Array(8), headers: {"X-CSRF-Token": csrf}});
        return [r.status, (await r.json()).error.message];
    }"""
    try:
        status, message = reviewer.page.evaluate(put)
        assert status == 403 and "writer" in message
        status, message = writer.page.evaluate(put)  # the writer gets past the role check, to the missing offset
        assert status == 400 and "offset" in message
    finally:
        reviewer.close()
        writer.close()
    refused = [(line, status) for _pid, line, status in server.served()[len(before) :] if status >= 400]
    assert sorted(line.split(" ")[1].split("?")[0] for line, _s in refused) == sorted(
        [f"/api/review/queues/{QUEUE}/next", "/view/demo/review", "/api/datasets/demo/layers/pred/block", "/api/datasets/demo/layers/pred/block"]
    ), refused
    from blockio.database import open_database
    from viewer.reviews import ReviewLog

    assert all(r["reviewer"] != "rea" for r in ReviewLog(root, database=open_database(root=str(root), url=None)).all())
