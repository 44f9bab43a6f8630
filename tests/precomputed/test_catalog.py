"""The catalog file: schema, locking, atomic replacement."""

from __future__ import annotations

import copy
import json
import multiprocessing
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from precomputed.catalog import Catalog, layer_version, new_version, record_errors, schema
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


# -- layer versions ---------------------------------------------------------------


def test_new_versions_never_repeat_and_sort_by_time() -> None:
    versions = [new_version() for _ in range(2000)]
    assert len(set(versions)) == 2000
    assert versions[0][:19] <= versions[-1][:19]  # the time part leads


def test_layer_version_reads_the_layer_and_falls_back_to_updated() -> None:
    rec = _record("a")
    assert layer_version(rec, "image") == rec["updated"]  # a record from before layer versions
    rec["layers"]["image"]["version"] = new_version()
    assert record_errors(rec) == []
    assert layer_version(rec, "image") == rec["layers"]["image"]["version"]
    with pytest.raises(KeyError):
        layer_version(rec, "pred")


def test_two_overwriting_ingests_within_a_second_get_different_versions(tmp_path: Path) -> None:
    from precomputed.ingest import IngestOptions, ingest

    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    opts = IngestOptions(chunk_size=(8, 8, 8), progress=False, workers=1, overwrite=True)
    first = ingest(tmp_path / "a.npy", tmp_path / "root", "a", opts)
    second = ingest(tmp_path / "a.npy", tmp_path / "root", "a", opts)
    assert layer_version(first, "image") != layer_version(second, "image")
    assert layer_version(Catalog(tmp_path / "root").get("a"), "image") == layer_version(second, "image")


# -- numbers that are not finite ----------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("mean", float("nan")), ("std", float("inf")), ("min", float("-inf"))])
def test_writer_refuses_non_finite_numbers(root: Path, field: str, value: float) -> None:
    cat = Catalog(root)
    cat.put(_record("a"))
    before = (root / "catalog.json").read_bytes()
    bad = _record("b")
    bad["stats"][field] = value
    with pytest.raises(CatalogError, match=rf"refusing to write dataset 'b': stats\.{field}: -?(nan|inf) is not a finite number"):
        cat.put(bad)
    assert (root / "catalog.json").read_bytes() == before


def test_non_finite_number_in_the_file_is_reported_and_never_written_back(root: Path) -> None:
    from precomputed.validate import validate_catalog

    rec = _record("a")
    rec["voxel_size"] = [4.0, float("nan"), 40.0]
    data = {"schema_version": 1, "datasets": {"a": rec}}
    (root / "catalog.json").write_text(json.dumps(data))  # Python writes NaN, which its json also reads
    with pytest.raises(CatalogError, match=r"voxel_size\[1\]: nan is not a finite number"):
        Catalog(root).get("a")
    assert any("voxel_size[1]: nan is not a finite number" in p for p in validate_catalog(root)["a"])
    with pytest.raises(CatalogError, match=r"refusing to write .*datasets\.a\.voxel_size\[1\]: nan"):
        Catalog(root).put(_record("b"))  # rewriting the file would keep the NaN of 'a'


# -- validate: the chunks of every layer --------------------------------------------


@pytest.fixture
def ingested(tmp_path: Path) -> Path:
    from precomputed.ingest import IngestOptions, ingest
    from precomputed.segmentation import write_segmentation

    rng = np.random.default_rng(1)
    np.save(tmp_path / "v.npy", rng.integers(0, 200, size=(16, 40, 48), dtype=np.uint8))
    root = tmp_path / "root"
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(chunk_size=(16, 16, 8), progress=False, workers=1))
    ingest(tmp_path / "v.npy", root, "g", IngestOptions(chunk_size=(16, 16, 8), progress=False, workers=1, compress="gzip"))
    write_segmentation(root, "v", "pred", rng.integers(0, 9, size=(16, 40, 48), dtype=np.uint32), meshes=False)
    return root


def test_validate_passes_a_fresh_store(ingested: Path) -> None:
    from precomputed.validate import validate_catalog

    assert validate_catalog(ingested) == {"g": [], "v": []}


def test_validate_reports_truncated_and_missing_chunks(ingested: Path) -> None:
    from precomputed.validate import validate_catalog

    image = ingested / "precomputed/v/image/1_1_1"
    (image / "16-32_0-16_0-8").write_bytes((image / "16-32_0-16_0-8").read_bytes()[:1000])
    (image / "32-48_16-32_8-16").unlink()
    gz = ingested / "precomputed/g/image/1_1_1/0-16_0-16_0-8.gz"
    gz.write_bytes(gz.read_bytes()[:-9])
    pred = ingested / "precomputed/v/pred/1_1_1/0-16_0-16_0-8"
    pred.write_bytes(pred.read_bytes()[:6])
    (ingested / "precomputed/v/pred/1_1_1/16-32_0-16_0-8").unlink()  # a segmentation layer reads it as background
    report = validate_catalog(ingested)
    v = "\n".join(report["v"])
    assert "1_1_1/16-32_0-16_0-8 is truncated: 1000 bytes" in v and "has 2048" in v
    assert "1 chunk(s) missing" in v and "32-48_16-32_8-16" in v
    assert "pred: chunk 1_1_1/0-16_0-16_0-8 is truncated: 6 bytes" in v
    assert "pred/1_1_1" not in v  # its missing chunk reads as background
    assert any("0-16_0-16_0-8.gz is truncated or damaged" in p for p in report["g"])


def test_validate_takes_further_chunk_checks(ingested: Path) -> None:
    from precomputed.layer_scan import ChunkFile
    from precomputed.validate import validate_catalog

    seen: list[str] = []

    def every(file: ChunkFile) -> str | None:
        seen.append(file.chunk)
        return "bad" if file.chunk == "1_1_1/0-16_0-16_0-8" and "pred" in str(file.layer) else None

    report = validate_catalog(ingested, chunk_checks=(every,))
    assert any(p.endswith(": bad") for p in report["v"]) and report["g"] == []
    assert "1_1_1/0-16_0-16_0-8" in seen
