"""The command line starts light: building the help or listing the catalog imports no heavy library.

A check of what is imported (``python -X importtime``), not of how long it takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main

HEAVY = ("numpy", "cloudvolume", "zarr", "dask", "flask", "werkzeug", "torch", "jsonschema", "tifffile", "h5py", "scipy")


def imported_modules(*args: str, cwd: Path | None = None) -> set[str]:
    """Every module a fresh interpreter imports to run ``python -m blockio.cli ARGS``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "blockio.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    # lines look like "import time:       123 |        456 |     package.module"
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:") and line.count("|") == 2}
    assert "blockio.cli.main" in names, "importtime output not parsed"
    return names


def heavy_among(names: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in heavy)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["ingest", "--help"], ["predict", "--help"], ["demo", "--help"], ["serve", "--help"]])
def test_help_imports_no_heavy_module(args: list[str]) -> None:
    names = imported_modules(*args)
    assert heavy_among(names) == []
    assert not any(n.startswith(("blockio.inference", "blockio.serving", "blockio.store", "precomputed.ingest")) for n in names)


def test_the_check_sees_a_heavy_import() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import numpy"], capture_output=True, text=True)
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:") and line.count("|") == 2}
    assert "numpy" in heavy_among(names)


def test_catalog_list_imports_only_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "v.npy", np.zeros((8, 16, 16), np.uint8))
    assert main(["ingest", str(tmp_path / "v.npy"), "--id", "v", "--root", str(tmp_path / "root"), "--quiet"]) == 0
    capsys.readouterr()
    names = imported_modules("catalog", "list", "--root", str(tmp_path / "root"))
    # jsonschema stays: listing marks a record that fails the schema UNAVAILABLE
    assert heavy_among(names, tuple(h for h in HEAVY if h != "jsonschema")) == []
    assert "filelock" not in names  # reading takes no lock
