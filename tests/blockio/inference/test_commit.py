"""A prediction killed anywhere in its commit: the same command completes the layer, exit 0.

Each case kills a real run (SIGKILL, in a subprocess) right after one step of
the commit, checks the state on disk is the one that step leaves, then reruns
``blockio predict`` and compares the layer with an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from blockio.inference.models import threshold_model
from blockio.inference.run import run_inference
from blockio.store import Store
from precomputed.catalog import Catalog
from tests.blockio.inference.conftest import SMALL_SHAPE, make_small_root

REPO = Path(__file__).resolve().parents[3]
SMOOTH = threshold_model(0.5, sigma=(1.0, 1.0, 1.0))
SPEC = "tests.blockio.inference.test_commit:SMOOTH"
OPTIONS = {"block": (32, 32, 16), "overlap": (4, 4, 4), "workers": 1, "meshes": True}
ARGV = ["em", "--model", SPEC, "--name", "pred", "--block", "32,32,16", "--overlap", "4,4,4", "--workers", "1", "--quiet"]

# what the killed process patches: it dies right after the named step
KILLS = {
    "layer moved into place": """
import precomputed.segmentation_commit as sc
move = sc._move_into_place
def patched(staged, final, parked):
    move(staged, final, parked)
    die()  # the precomputed layer is in place, the OME-Zarr labels are not
sc._move_into_place = patched
""",
    "stores moved": """
from precomputed.catalog import Catalog
Catalog.update = lambda *args, **kwargs: die()
""",
    "catalog updated": """
import precomputed.segmentation_commit as sc
sc._discard = lambda *args: die()
""",
    "writer staging removed": """
import blockio.inference.run as run
run._discard = lambda *args: die()
""",
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_root(tmp_path_factory.mktemp("commit"))


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference") / "root"
    shutil.copytree(template, root)
    run_inference(root, "em", SPEC, "pred", **OPTIONS)  # type: ignore[arg-type]
    return root


def _killed_run(root: Path, point: str) -> None:
    code = "import os, signal\ndef die():\n    os.kill(os.getpid(), signal.SIGKILL)\n" + KILLS[point]
    code += f"from blockio.inference.run import run_inference\nrun_inference({str(root)!r}, 'em', {SPEC!r}, 'pred', **{OPTIONS!r})\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("point", list(KILLS))
def test_rerun_after_a_kill_in_the_commit_completes(template: Path, reference: Path, tmp_path: Path, point: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(template, root)
    _killed_run(root, point)
    staging = root / ".staging" / "em"
    catalogued = "pred" in Catalog(root).get("em")["layers"]
    assert (root / "precomputed/em/pred").exists()
    assert catalogued == (point in ("catalog updated", "writer staging removed"))
    assert (staging / "pred").exists() == (point != "writer staging removed")
    assert (staging / "pred" / "labels.zarr").exists() == (point == "layer moved into place")
    assert (staging / "pred-inference").exists()

    capsys.readouterr()
    assert main(["predict", "--root", str(root), *ARGV]) == 0, capsys.readouterr().err
    assert "wrote layer 'pred'" in capsys.readouterr().out
    record = Catalog(root).get("em")["layers"]["pred"]
    assert record["type"] == "segmentation" and record["segments"] == Catalog(reference).get("em")["layers"]["pred"]["segments"]
    read = Store(root, cache_bytes=0).read_block("em", (0, 0, 0), SMALL_SHAPE, layer="pred")
    want = Store(reference, cache_bytes=0).read_block("em", (0, 0, 0), SMALL_SHAPE, layer="pred")
    np.testing.assert_array_equal(read, want)
    assert _files(root / "precomputed/em/pred") == _files(reference / "precomputed/em/pred")
    assert _files(root / "zarr/em.zarr/labels/pred") == _files(reference / "zarr/em.zarr/labels/pred")
    assert json.loads((root / "zarr/em.zarr/labels/zarr.json").read_text())["attributes"]["ome"]["labels"] == ["pred"]
    assert sorted(p.name for p in (root / ".staging").rglob("*") if not p.name.endswith(".lock")) == ["em"]

    # done: the same command again is the ordinary "exists" error
    assert main(["predict", "--root", str(root), *ARGV]) == 1
    assert "already" in capsys.readouterr().err
