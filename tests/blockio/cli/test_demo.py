"""`blockio demo` end to end at a small size: data, ingest, truth, prediction, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_and_catalogues_everything(tmp_path: Path) -> None:
    root = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "blockio.cli", "demo", "--no-serve", "--quiet", "--root", str(root), "--shape", "128,128,32"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "adapted Rand error" in result.stdout
    record = json.loads((root / "catalog.json").read_text())["datasets"]["demo"]
    assert record["provenance"]["voxel_size"]["source"] == "file" and record["voxel_size"] == [8.0, 8.0, 40.0]
    assert {"image", "truth", "pred"} <= set(record["layers"])
    assert record["layers"]["pred"]["evaluation"]["truth"]["adapted_rand_error"] < 0.2


def test_the_demo_reviewer_is_made_once_and_signs_in(tmp_path: Path) -> None:
    from blockio.cli.demo import DEMO_REVIEWER, demo_reviewer
    from blockio.database import open_database
    from blockio.users import Users

    root = tmp_path / "root"
    root.mkdir()
    token = demo_reviewer(str(root))
    assert token is not None and demo_reviewer(str(root)) is None  # shown once, not made twice
    user = Users(open_database(root=str(root), url=None)).verify(token)
    assert user is not None and user.name == DEMO_REVIEWER and user.role == "reviewer"
