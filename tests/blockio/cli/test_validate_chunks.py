"""``blockio catalog validate --chunks`` reads every chunk of both stores and names each bad one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

SHAPE_ZYX = (16, 64, 64)


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(4)
    np.save(tmp / "v.npy", rng.integers(1, 250, size=SHAPE_ZYX, dtype=np.uint8))
    ingest(tmp / "v.npy", tmp / "root", "v", IngestOptions(voxel_size=(4, 4, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(tmp / "root", "v", "seg", (rng.integers(0, 5, size=SHAPE_ZYX) + 1).astype(np.uint32))
    return tmp / "root"


@pytest.fixture
def root(tmp_path: Path, clean_root: Path) -> Path:
    return Path(shutil.copytree(clean_root, tmp_path / "root"))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_clean_store_passes_the_full_pass(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "validate", "--chunks", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == "v: ok"


def test_same_length_damage_is_named_in_every_store(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # one flipped bit keeps every size right: the cheap pass cannot see it, the full one must
    _flip(root / "precomputed/v/image/4_4_40/32-64_0-32_0-16")
    _flip(root / "precomputed/v/seg/4_4_40/0-32_32-64_0-16")
    _flip(root / "zarr/v.zarr/0/c/0/1/0")
    assert main(["catalog", "validate", "--root", str(root)]) == 0
    capsys.readouterr()
    assert main(["catalog", "validate", "--chunks", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "4_4_40/32-64_0-32_0-16" in out and "4_4_40/0-32_32-64_0-16" in out
    assert "0/c/0/1/0" in out
    assert out.count("corrupt") == 3, out
