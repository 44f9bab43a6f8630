"""``blockio predict`` on a full disk: one line, exit 1, and the same command resumes once there is space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blockio.cli.main import main
from blockio.store import Store
from tests.blockio.inference.conftest import make_small_root

ARGS = ["em", "--model", "blockio.inference.models:membrane_watershed", "--name", "pred", "--block", "32,32,16", "--overlap", "8,8,4", "--workers", "1", "--quiet"]
LEFT_FREE = 48 << 10  # bytes: the staging files of the first tasks fit, the layer does not


def test_full_disk_is_one_line_and_the_rerun_completes(small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_small_root(small_disk)
    (small_disk / "image.npy").unlink()
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - LEFT_FREE))
    capsys.readouterr()

    assert main(["predict", "--root", str(root), *ARGS]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("blockio: error: prediction 'pred' of 'em' stopped: the disk is full") and "rerun" in err
    assert "pred" not in Store(root).layers("em")

    filler.unlink()
    assert main(["predict", "--root", str(root), *ARGS]) == 0
    assert "wrote layer 'pred'" in capsys.readouterr().out
    assert Store(root).layers("em")["pred"]["type"] == "segmentation"
    assert not (root / ".staging" / "em" / "pred-inference").exists()
