"""Killed, failed and concurrent ingests: nothing lost, resumed bit for bit."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from precomputed.catalog import Catalog
from precomputed.errors import StoreError
from precomputed.ingest import IngestOptions, ingest

from .stores import assert_stores_equal_source


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every store file under a root (the catalog and locks aside)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".staging") and not rel.endswith(".lock") and rel != "catalog.json":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _comparable(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in ("created", "updated")}
    out["provenance"] = {k: v for k, v in record["provenance"].items() if k != "ingest"}
    out["layers"] = {k: {kk: vv for kk, vv in v.items() if kk != "version"} for k, v in record["layers"].items()}
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "blockio.cli", *args]


@pytest.fixture
def big_source(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    vol = rng.integers(0, 4000, size=(64, 256, 384), dtype=np.uint16)
    np.save(tmp_path / "big.npy", vol)
    return tmp_path / "big.npy", vol


@pytest.mark.slow
def test_killed_ingest_resumes_bit_identical(tmp_path: Path, big_source: tuple[Path, np.ndarray]) -> None:
    src, vol = big_source
    args = ["--id", "big", "--voxel-size", "8,8,40", "--chunk-size", "32,32,32", "--task-mib", "1", "--workers", "1", "--quiet"]
    clean_root, killed_root = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(_cli("ingest", str(src), "--root", str(clean_root), *args), check=True)

    proc = subprocess.Popen(_cli("ingest", str(src), "--root", str(killed_root), *args))
    tasks = killed_root / ".staging" / "big" / "tasks"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if tasks.exists() and len(list(tasks.glob("p0-*.npz"))) >= 5:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "ingest finished before it could be killed; make the source larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(tasks.glob("p0-*.npz")))
    assert done_before >= 5
    assert "big" not in Catalog(killed_root), "the record must be written last"

    subprocess.run(_cli("ingest", str(src), "--root", str(killed_root), *args), check=True)
    assert tree_digest(killed_root) == tree_digest(clean_root)
    assert _comparable(Catalog(killed_root).get("big")) == _comparable(Catalog(clean_root).get("big"))
    assert not (killed_root / ".staging" / "big").exists()


@pytest.mark.slow
def test_two_concurrent_ingests_into_one_root(tmp_path: Path, big_source: tuple[Path, np.ndarray]) -> None:
    src, vol = big_source
    root = tmp_path / "root"
    procs = [
        subprocess.Popen(_cli("ingest", str(src), "--root", str(root), "--id", name, "--workers", "1", "--quiet", "--chunk-size", "32,32,32", "--task-mib", "2"))
        for name in ("first", "second")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    catalog = Catalog(root)
    assert catalog.ids() == ["first", "second"]
    for name in ("first", "second"):
        assert_stores_equal_source(root, catalog.get(name), vol[None])


@pytest.fixture
def small_disk_size() -> str:
    """The ``small_disk`` of these tests: 2 MiB, which the large volume overflows."""
    return "2m"


def test_disk_full_leaves_catalog_untouched_and_rerun_completes(tmp_path: Path, small_disk: Path) -> None:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, size=(8, 32, 32), dtype=np.uint8)
    vol = rng.integers(0, 60000, size=(40, 128, 160), dtype=np.uint16)  # 1.6 MB raw, ~3 MB in both stores
    np.save(tmp_path / "small.npy", small)
    np.save(tmp_path / "vol.npy", vol)
    root = small_disk / "root"
    opts = IngestOptions(chunk_size=(32, 32, 32), task_bytes=1 << 20, workers=1, progress=False)
    ingest(tmp_path / "small.npy", root, "kept", opts)
    before = (root / "catalog.json").read_bytes()
    with pytest.raises(StoreError, match="disk is full.*rerun"):
        ingest(tmp_path / "vol.npy", root, "vol", opts)
    assert (root / "catalog.json").read_bytes() == before
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    record = ingest(tmp_path / "vol.npy", root, "vol", opts)
    assert_stores_equal_source(root, record, vol[None])
    assert Catalog(root).ids() == ["kept", "vol"]
