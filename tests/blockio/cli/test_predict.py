"""``blockio predict`` and ``blockio evaluate``: the command line over run_inference and evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from blockio.cli.predict import NORMALIZE_CHOICES
from blockio.normalize import NORMALIZATIONS
from precomputed.catalog import Catalog
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume

SHAPE = (64, 64, 16)  # (x, y, z)


@pytest.fixture(scope="module")
def em(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with dataset 'em' (synthetic EM, 16^3 chunks) and its ground truth as layer 'truth'."""
    path = tmp_path_factory.mktemp("em")
    volume = make_em_volume(SHAPE, seed=0)
    np.save(path / "image.npy", volume.image)
    root = path / "root"
    ingest(path / "image.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(16, 16, 16), progress=False, workers=2))
    write_segmentation(root, "em", "truth", volume.labels, meshes=False, provenance={"source": "synthetic"})
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_normalize_choices_follow_the_reader() -> None:
    assert NORMALIZE_CHOICES == (*NORMALIZATIONS, "none")


def test_predict_then_evaluate(em: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predict = ["predict", "em", "--root", str(em), "--model", "blockio.inference.models:membrane_watershed", "--name", "cli", "--block", "32,32,16", "--overlap", "8,8,4", "--workers", "2", "--no-meshes", "--quiet"]
    code, out, _ = cli(capsys, *predict)
    assert code == 0 and "wrote layer 'cli' of em" in out
    layer = Catalog(em).get("em")["layers"]["cli"]
    assert layer["provenance"]["command"].startswith("blockio predict em --root ")
    code, _, err = cli(capsys, *predict)  # exists, no --overwrite
    assert code == 1 and err.startswith("blockio: error: ") and "--overwrite" in err and err.count("\n") == 1
    assert cli(capsys, *predict, "--overwrite")[0] == 0
    code, out, _ = cli(capsys, "evaluate", "em", "--root", str(em), "--pred", "cli", "--truth", "truth")
    assert code == 0 and out.startswith("em: cli vs truth: adapted Rand error ")
    assert "truth" in Catalog(em).get("em")["layers"]["cli"]["evaluation"]


def test_predict_bad_overlap_is_one_line(em: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "predict", "em", "--root", str(em), "--model", "x:y", "--name", "z", "--overlap=-1,0,0")
    assert code == 1 and err.startswith("blockio: error: overlap") and err.count("\n") == 1


def test_evaluate_unknown_layer_is_one_line(em: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "evaluate", "em", "--root", str(em), "--pred", "nope", "--truth", "truth")
    assert code == 1 and "no layer 'nope'" in err and err.count("\n") == 1
