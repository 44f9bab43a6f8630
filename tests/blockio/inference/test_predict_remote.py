"""``blockio predict`` and ``blockio evaluate`` on an s3:// root (moto): staged in the bucket, resumable, equal to a local run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from blockio.inference.run import run_inference
from precomputed.catalog import Catalog
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.storage import open_root
from precomputed.synthetic import make_em_volume
from tests.cloud_servers import s3_root, s3_server  # noqa: F401
from tests.precomputed.test_ingest_remote import bucket_tree, local_tree

pytestmark = pytest.mark.cloud

REPO = Path(__file__).resolve().parents[3]
SHAPE = (64, 64, 16)  # (x, y, z)
SLOW = "tests.blockio.inference.test_inference:slow_model"
MODEL = "blockio.inference.models:membrane_watershed"


def _roots(tmp_path: Path, url: str) -> Path:
    """Dataset 'em' with layer 'truth', ingested into a local root and into the bucket root ``url``."""
    volume = make_em_volume(SHAPE, seed=0)
    np.save(tmp_path / "image.npy", volume.image)
    local = tmp_path / "local"
    for root in (local, url):
        ingest(tmp_path / "image.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(16, 16, 16), progress=False, workers=2))
        write_segmentation(root, "em", "truth", volume.labels, meshes=False, provenance={"source": "synthetic"})
    return local


def _same_layer(local: Path, url: str, name: str) -> None:
    want, got = Catalog(local).get("em")["layers"][name], Catalog(url).get("em")["layers"][name]
    storage = open_root(url)
    assert got["path"].startswith(f"precomputed/em/{name}~")
    tree = bucket_tree(storage, got["path"])
    assert tree == local_tree(local, want["path"]) and any(k.startswith("mesh/") for k in tree)
    assert bucket_tree(storage, got["zarr"]) == local_tree(local, want["zarr"])
    assert got["segments"] == want["segments"] > 1


def test_predict_and_evaluate_on_s3_equal_local(s3_root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    local = _roots(tmp_path, s3_root)
    args = ["em", "--model", MODEL, "--name", "mine", "--block", "32,32,16", "--overlap", "8,8,4", "--workers", "2", "--quiet"]
    for root in (str(local), s3_root):
        assert main(["predict", "--root", root, *args]) == 0
        assert main(["evaluate", "em", "--root", root, "--pred", "mine", "--truth", "truth"]) == 0
    out = capsys.readouterr().out
    assert "wrote layer 'mine' of em" in out and out.count("em: mine vs truth: adapted Rand error ") == 2
    _same_layer(local, s3_root, "mine")
    storage = open_root(s3_root)
    assert not list(storage.list(".staging/"))  # plan, markers, scores, the lease: all gone
    got, want = (Catalog(r).get("em")["layers"]["mine"]["evaluation"]["truth"] for r in (s3_root, local))
    assert {k: v for k, v in got.items() if k != "evaluated"} == {k: v for k, v in want.items() if k != "evaluated"}
    # a second run refuses without --overwrite, in one line; with it, the old prefixes go
    assert main(["predict", "--root", s3_root, *args]) == 1
    assert "--overwrite" in capsys.readouterr().err
    old = Catalog(s3_root).get("em")["layers"]["mine"]["path"]
    assert main(["predict", "--root", s3_root, *args, "--overwrite"]) == 0
    assert Catalog(s3_root).get("em")["layers"]["mine"]["path"] != old and not list(storage.list(old + "/"))


def test_blend_stages_scores_in_the_bucket(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    local = _roots(tmp_path, s3_root)
    for root in (local, s3_root):
        run_inference(root, "em", MODEL, "blend", block=(32, 32, 16), overlap=(8, 8, 4), blend=True, workers=2, progress=False)
    _same_layer(local, s3_root, "blend")
    assert not list(open_root(s3_root).list(".staging/"))


def test_killed_predict_on_s3_resumes_bit_identical(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    local = _roots(tmp_path, s3_root)
    kwargs = dict(block=(32, 32, 16), overlap=(4, 4, 4), meshes=True, workers=1, progress=False)
    run_inference(local, "em", SLOW, "pred", **kwargs)  # type: ignore[arg-type]
    code = f"from blockio.inference.run import run_inference\nrun_inference({s3_root!r}, 'em', {SLOW!r}, 'pred', block=(32, 32, 16), overlap=(4, 4, 4), meshes=True, workers=1, progress=False)\n"
    # the S3 variables of the fixture reach the child through the environment
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    storage = open_root(s3_root)
    staged = ".staging/em/pred-inference/p1-"
    deadline = time.monotonic() + 60
    while len(list(storage.list(staged))) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(storage.list(staged)))
    assert 4 <= done < 32  # 4 x 4 x 2 tasks
    assert storage.exists(".staging/em/pred-inference.lock")  # the dead run's lease: stale, taken over at once
    run_inference(s3_root, "em", SLOW, "pred", **kwargs)  # type: ignore[arg-type]
    _same_layer(local, s3_root, "pred")
    assert not list(storage.list(".staging/"))


def test_a_running_predict_on_s3_holds_its_lease(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    """A second run into the same layer while one holds the lease is refused, naming the layer."""
    from blockio.errors import InvalidRequest
    from precomputed.bucket_lock import BucketLock

    _roots(tmp_path, s3_root)
    with BucketLock(open_root(s3_root), ".staging/em/x-inference.lock"):
        with pytest.raises(InvalidRequest, match="another inference into layer 'x' of 'em' is running"):
            run_inference(s3_root, "em", MODEL, "x", block=(32, 32, 16), overlap=(8, 8, 4), workers=1, progress=False)
