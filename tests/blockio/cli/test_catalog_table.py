"""``blockio catalog table``: the metadata table of three datasets, standardised columns recomputed with numpy."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from precomputed.catalog import Catalog
from precomputed.ingest import IngestOptions, ingest


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli-table")
    root = tmp / "root"
    rng = np.random.default_rng(2)
    for name, shape, voxel, high in (("a", (10, 20, 30), (8, 8, 40), 200), ("b", (16, 16, 16), (4, 4, 4), 60000), ("c", (6, 32, 24), (10, 10, 30), 1000)):
        np.save(tmp / f"{name}.npy", rng.integers(0, high, shape).astype(np.uint16))
        ingest(tmp / f"{name}.npy", root, name, IngestOptions(voxel_size=voxel, chunk_size=(16, 16, 16), progress=False, workers=1))
    return root


def _run(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    code = main(["catalog", "table", *args])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def test_csv_columns_are_standardised_across_the_catalog(capsysbinary: pytest.CaptureFixture[bytes], three: Path) -> None:
    code, out, _ = _run(capsysbinary, "--root", str(three))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    records = [Catalog(three).get(r["id"]) for r in rows]
    columns = {
        "extent_nm_z": [r["shape"][2] * r["voxel_size"][2] for r in records],
        "voxel_size_x": [r["voxel_size"][0] for r in records],
        "mean": [r["stats"]["mean"] for r in records],
        "p99": [r["stats"]["percentiles"]["99"] for r in records],
        "mips": [len(r["mips"]) for r in records],
    }
    for name, raw in columns.items():
        values = np.array(raw, dtype=np.float64)
        np.testing.assert_allclose([float(r[name]) for r in rows], values)
        np.testing.assert_allclose([float(r[f"{name}_zscore"]) for r in rows], (values - values.mean()) / values.std(), rtol=1e-9)
        np.testing.assert_allclose([float(r[f"{name}_minmax"]) for r in rows], (values - values.min()) / np.ptp(values), rtol=1e-9)
    assert {r["provenance_voxel_size"] for r in rows} == {"user"}


def test_json_and_output_file(capsysbinary: pytest.CaptureFixture[bytes], three: Path, tmp_path: Path) -> None:
    code, out, _ = _run(capsysbinary, "--root", str(three), "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == ["a", "b", "c"]
    assert sum(r["std_zscore"] for r in rows) == pytest.approx(0.0, abs=1e-9)
    target = tmp_path / "table.json"
    code, out, _ = _run(capsysbinary, "--root", str(three), "--format", "json", "--output", str(target))
    assert code == 0 and out == b"" and json.loads(target.read_text()) == rows


def test_parquet_without_pyarrow_is_one_clear_error(capsysbinary: pytest.CaptureFixture[bytes], three: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    target = tmp_path / "t.parquet"
    code, out, err = _run(capsysbinary, "--root", str(three), "--format", "parquet", "--output", str(target))
    assert code == 1 and out == b"" and not target.exists()
    assert err.strip().startswith("blockio: error: ") and "needs pyarrow" in err and len(err.strip().splitlines()) == 1


def test_parquet(capsysbinary: pytest.CaptureFixture[bytes], three: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "t.parquet"
    code, _, _ = _run(capsysbinary, "--root", str(three), "--format", "parquet", "-o", str(target))
    assert code == 0 and pq.read_table(target).column("id").to_pylist() == ["a", "b", "c"]
