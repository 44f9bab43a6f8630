"""The metadata table across datasets: raw, z-scored and min-max scaled columns, recomputed here with numpy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.catalog import Catalog
from precomputed.catalog_table import NUMERIC_COLUMNS, dump_table, scaled, table_rows
from precomputed.errors import InvalidOption
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

DATASETS = {
    # id: (array [z, y, x] or [c, z, y, x], voxel size x, y, z nm, axes)
    "em": (lambda rng: rng.integers(0, 256, (12, 40, 48), dtype=np.uint8), (8, 8, 40), None),
    "iso": (lambda rng: rng.integers(100, 3000, (20, 24, 32), dtype=np.uint16), (4, 4, 4), None),
    "two": (lambda rng: rng.integers(0, 900, (2, 8, 16, 16), dtype=np.uint16), (16, 16, 50), "czyx"),
}


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog of three datasets of different voxel sizes, dtypes and channels; ``em`` has a label layer."""
    tmp = tmp_path_factory.mktemp("table")
    root = tmp / "root"
    rng = np.random.default_rng(5)
    for name, (make, voxel, axes) in DATASETS.items():
        np.save(tmp / f"{name}.npy", make(rng))
        ingest(tmp / f"{name}.npy", root, name, IngestOptions(voxel_size=voxel, chunk_size=(16, 16, 16), axes=axes, progress=False, workers=1))
    write_segmentation(root, "em", "cells", np.ones((12, 40, 48), np.uint32), meshes=False)
    return root


def _raw(record: dict[str, Any]) -> dict[str, float]:
    """The numeric columns straight from a record."""
    stats = record["stats"]
    out = {f"voxel_size_{a}": record["voxel_size"][k] for k, a in enumerate("xyz")}
    out |= {f"extent_nm_{a}": record["shape"][k] * record["voxel_size"][k] for k, a in enumerate("xyz")}
    out |= {k: stats[k] for k in ("min", "max", "mean", "std")}
    out |= {"p0_5": stats["percentiles"]["0.5"], "p1": stats["percentiles"]["1"], "p99": stats["percentiles"]["99"], "p99_5": stats["percentiles"]["99.5"]}
    kinds = [m["type"] for m in record["layers"].values()]
    out |= {"channels": record["channels"], "mips": len(record["mips"]), "layers": len(kinds), "image_layers": kinds.count("image"), "segmentation_layers": kinds.count("segmentation")}
    return out


def test_standardised_columns_equal_numpy(three: Path) -> None:
    catalog = Catalog(three)
    rows = table_rows(catalog.records())
    assert [r["id"] for r in rows] == ["em", "iso", "two"]
    raw = [_raw(catalog.get(r["id"])) for r in rows]
    assert set(raw[0]) == set(NUMERIC_COLUMNS)
    for column in NUMERIC_COLUMNS:
        values = np.array([r[column] for r in raw], dtype=np.float64)
        np.testing.assert_allclose([r[column] for r in rows], values)
        std, span = values.std(), np.ptp(values)
        want_z = (values - values.mean()) / std if std > 0 else np.zeros(3)
        want_m = (values - values.min()) / span if span > 0 else np.zeros(3)
        np.testing.assert_allclose([r[f"{column}_zscore"] for r in rows], want_z, atol=1e-12, err_msg=column)
        np.testing.assert_allclose([r[f"{column}_minmax"] for r in rows], want_m, atol=1e-12, err_msg=column)
    by_id = {r["id"]: r for r in rows}
    assert by_id["em"]["segmentation_layers"] == 1 and by_id["two"]["channels"] == 2
    assert by_id["iso"]["extent_nm_z"] == 80.0 and by_id["em"]["voxel_size_z"] == 40.0


def test_provenance_columns_follow_the_record(three: Path) -> None:
    catalog = Catalog(three)
    rows = {r["id"]: r for r in table_rows(catalog.records())}
    for dataset_id, row in rows.items():
        provenance = catalog.get(dataset_id)["provenance"]
        for field, entry in provenance.items():
            assert row[f"provenance_{field}"] == entry["source"]
            assert row[f"provenance_{field}_detail"] == entry["detail"]
        assert row["provenance_voxel_size"] == "user" and row["provenance_voxel_size_z"] == "user"
        assert row["provenance_stats"] == "array"


def test_scaled_leaves_missing_values_out_and_constant_columns_at_zero() -> None:
    zscore, minmax = scaled([1.0, None, 3.0])
    assert zscore == [-1.0, None, 1.0] and minmax == [0.0, None, 1.0]
    assert scaled([2.0, 2.0]) == ([0.0, 0.0], [0.0, 0.0])
    assert scaled([None]) == ([None], [None])


def test_an_invalid_record_is_left_out(three: Path, tmp_path: Path) -> None:
    data = json.loads((three / "catalog.json").read_text())
    data["datasets"]["broken"] = {"id": "broken"}
    root = tmp_path / "copy"
    root.mkdir()
    (root / "catalog.json").write_text(json.dumps(data))
    assert [r["id"] for r in table_rows(Catalog(root).records())] == ["em", "iso", "two"]


def test_table_is_a_list_of_dicts_without_pandas(three: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    rows = Catalog(three).table()
    assert isinstance(rows, list) and rows == table_rows(Catalog(three).records())


def test_table_is_a_dataframe_with_pandas(three: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = Catalog(three).table()
    assert isinstance(frame, pandas.DataFrame) and list(frame["id"]) == ["em", "iso", "two"]
    np.testing.assert_allclose(frame["voxel_size_z_zscore"], [r["voxel_size_z_zscore"] for r in table_rows(Catalog(three).records())])


def test_formats(three: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = table_rows(Catalog(three).records())
    assert json.loads(dump_table(rows, "json")) == rows
    lines = dump_table(rows, "csv").decode().splitlines()
    assert len(lines) == 4 and lines[0].startswith("id,dtype,voxel_size_x,voxel_size_x_zscore,voxel_size_x_minmax,")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InvalidOption, match="needs pyarrow"):
        dump_table(rows, "parquet")
    with pytest.raises(InvalidOption, match="must be one of csv, json, parquet"):
        dump_table(rows, "xlsx")


def test_parquet_round_trip(three: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import io

    rows = table_rows(Catalog(three).records())
    assert pq.read_table(io.BytesIO(dump_table(rows, "parquet"))).to_pylist() == rows
