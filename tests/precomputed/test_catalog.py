"""The catalog file: schema, locking, atomic replacement."""

from __future__ import annotations

import copy
import json
import multiprocessing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from precomputed.catalog import Catalog, record_errors, schema
from precomputed.errors import CatalogError, DatasetNotFound


def _record(dataset_id: str) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "shape": [10, 20, 30],
        "channels": 1,
        "dtype": "uint8",
        "voxel_size": [4.0, 4.0, 40.0],
        "chunk_size": [64, 64, 64],
        "mips": [{"voxel_size": [4.0, 4.0, 40.0], "shape": [10, 20, 30], "factor": [1, 1, 1]}],
        "stores": {"zarr": f"zarr/{dataset_id}.zarr", "precomputed": f"precomputed/{dataset_id}/image"},
        "layers": {"image": {"type": "image", "path": f"precomputed/{dataset_id}/image"}},
        "stats": {"min": 0, "max": 1, "mean": 0.5, "std": 0.5, "percentiles": {"0.5": 0, "1": 0, "99": 1, "99.5": 1}, "histogram": {"edges": [0, 1], "counts": [3]}},
        "source": {"paths": ["/data/x.npy"], "format": "npy", "bytes": 6000, "sha256": "0" * 64},
        "provenance": {f: {"source": "array", "detail": "test"} for f in ("shape", "channels", "dtype", "voxel_size", "chunk_size", "axes", "stats")},
        "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:00:00+00:00",
        "schema_version": 1,
    }


def test_schema_is_itself_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_record_errors_name_the_field() -> None:
    rec = _record("a")
    assert record_errors(rec) == []
    rec["provenance"]["voxel_size"]["source"] = "guess"
    rec["shape"] = [10, 20]
    errors = record_errors(rec)
    assert any(e.startswith("shape:") for e in errors)
    assert any(e.startswith("provenance.voxel_size.source:") for e in errors)


def test_paths_must_stay_inside_the_root() -> None:
    rec = _record("a")
    rec["stores"]["zarr"] = "../elsewhere.zarr"
    assert any(e.startswith("stores.zarr") for e in record_errors(rec))


def test_put_get_remove(root: Path) -> None:
    cat = Catalog(root)
    cat.put(_record("a"))
    assert cat.get("a")["shape"] == [10, 20, 30]
    with pytest.raises(DatasetNotFound, match="catalogued: a"):
        cat.get("b")
    cat.remove("a")
    assert cat.ids() == []


def test_invalid_record_is_not_written(root: Path) -> None:
    cat = Catalog(root)
    cat.put(_record("a"))
    bad = _record("b")
    bad["dtype"] = "complex64"
    with pytest.raises(CatalogError, match="dtype"):
        cat.put(bad)
    assert cat.ids() == ["a"]


def test_wrong_schema_version_refused(root: Path) -> None:
    (root / "catalog.json").write_text(json.dumps({"schema_version": 99, "datasets": {}}))
    with pytest.raises(CatalogError, match="schema_version"):
        Catalog(root).put(_record("a"))


def _writer(args: tuple[str, int, int]) -> None:
    root, worker, count = args
    cat = Catalog(root)
    for i in range(count):
        cat.put(_record(f"w{worker}-{i}"))


def test_concurrent_writers_lose_nothing(root: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        pool.map(_writer, [(str(root), w, 15) for w in range(6)])
    ids = Catalog(root).ids()
    assert len(ids) == 90
    assert not list(root.glob(".catalog.json.*.tmp"))


def test_update_sees_the_latest_record(root: Path) -> None:
    cat = Catalog(root)
    cat.put(_record("a"))

    def bump(old: dict[str, Any] | None) -> dict[str, Any]:
        assert old is not None
        new = copy.deepcopy(old)
        new["updated"] = "2026-02-02T00:00:00+00:00"
        return new

    cat.update("a", bump)
    assert Catalog(root).get("a")["updated"].startswith("2026-02-02")
