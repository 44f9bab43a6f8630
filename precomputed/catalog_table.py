"""The metadata table across datasets: one row per catalogued dataset, numbers side by side.

>>> Catalog("blockio-data").table()          # a pandas DataFrame, or a list of dicts without pandas

Columns of each row:

- ``id``, ``dtype``;
- numeric columns (:data:`NUMERIC_COLUMNS`): voxel size (nm) and extent
  (``shape * voxel_size``, nm) per axis x, y, z; the intensity statistics of
  ``stats`` (``min``, ``max``, ``mean``, ``std`` and the percentiles 0.5, 1,
  99, 99.5, as ``p0_5`` ...); ``channels``, ``mips``; ``layers`` and how many
  of them are ``image_layers`` and ``segmentation_layers``;
- for each numeric column ``c``, ``c_zscore`` (``(c - mean) / std`` over the
  catalog, population std, ``ddof=0``) and ``c_minmax`` (``(c - min) / (max -
  min)`` over the catalog). A column that is the same in every row scales to
  0.0; a value a record lacks is ``None`` and is left out of the catalog's
  mean, std, min and max;
- for each field the record's ``provenance`` names, ``provenance_<field>``
  (its source: file, array, profile, user or default) and
  ``provenance_<field>_detail``, and for the voxel size also each axis's own
  (``provenance_voxel_size_x`` ...).

Records that fail the schema are left out (a warning names them); ``blockio
catalog list`` shows them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from .errors import InvalidOption

__all__ = ["NUMERIC_COLUMNS", "TABLE_FORMATS", "dump_table", "scaled", "table", "table_rows"]

log = logging.getLogger(__name__)

TABLE_FORMATS = ("csv", "json", "parquet")
_PERCENTILES = (("p0_5", "0.5"), ("p1", "1"), ("p99", "99"), ("p99_5", "99.5"))
_STATS = ("min", "max", "mean", "std")

Record = dict[str, Any]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


Column = Callable[[Record], Any]


def _voxel_size(k: int) -> Column:
    return lambda r: r["voxel_size"][k]


def _extent_nm(k: int) -> Column:
    return lambda r: r["shape"][k] * r["voxel_size"][k]


def _stat(name: str) -> Column:
    return lambda r: r["stats"].get(name)


def _percentile(key: str) -> Column:
    return lambda r: (r["stats"].get("percentiles") or {}).get(key)


def _layers_of(kind: str) -> Column:
    return lambda r: sum(1 for m in r["layers"].values() if m.get("type") == kind)


def _columns() -> list[tuple[str, Column]]:
    out: list[tuple[str, Column]] = []
    for k, axis in enumerate("xyz"):
        out.append((f"voxel_size_{axis}", _voxel_size(k)))
    for k, axis in enumerate("xyz"):
        out.append((f"extent_nm_{axis}", _extent_nm(k)))
    for name in _STATS:
        out.append((name, _stat(name)))
    for column, key in _PERCENTILES:
        out.append((column, _percentile(key)))
    out.append(("channels", lambda r: r["channels"]))
    out.append(("mips", lambda r: len(r["mips"])))
    out.append(("layers", lambda r: len(r["layers"])))
    for kind in ("image", "segmentation"):
        out.append((f"{kind}_layers", _layers_of(kind)))
    return out


_COLUMNS = _columns()
NUMERIC_COLUMNS = tuple(name for name, _ in _COLUMNS)
"""The raw numeric columns; each also comes ``_zscore`` and ``_minmax`` scaled."""


def _provenance(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, entry in sorted((record.get("provenance") or {}).items()):
        if not isinstance(entry, dict):
            continue
        out[f"provenance_{field}"] = entry.get("source")
        out[f"provenance_{field}_detail"] = entry.get("detail")
        for axis, sub in sorted((entry.get("axes") or {}).items()):
            if isinstance(sub, dict):
                out[f"provenance_{field}_{axis}"] = sub.get("source")
    return out


def scaled(values: list[float | None]) -> tuple[list[float | None], list[float | None]]:
    """``(z-scores, min-max scaled)`` of one column; ``None`` stays ``None`` and a constant column gives 0.0."""
    present = [v for v in values if v is not None]
    if not present:
        return list(values), list(values)
    mean = math.fsum(present) / len(present)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / len(present))
    lo, hi = min(present), max(present)
    zscore = [None if v is None else ((v - mean) / std if std > 0 else 0.0) for v in values]
    minmax = [None if v is None else ((v - lo) / (hi - lo) if hi > lo else 0.0) for v in values]
    return zscore, minmax


def table_rows(records: Iterable[tuple[str, Record | None, list[str]]]) -> list[dict[str, Any]]:
    """The table as a list of dicts, one per valid record of ``Catalog.records()``, sorted by id."""
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for dataset_id, record, problems in records:
        if record is None:
            log.warning("dataset %r left out of the table: %s", dataset_id, problems[0] if problems else "invalid")
            continue
        numbers: dict[str, Any] = {}
        for name, get in _COLUMNS:
            try:
                numbers[name] = _number(get(record))
            except (KeyError, IndexError, TypeError, AttributeError):
                numbers[name] = None
        raw.append(numbers)
        rows.append({"id": dataset_id, "dtype": record.get("dtype")} | numbers | _provenance(record))
    for name in NUMERIC_COLUMNS:
        zscore, minmax = scaled([n[name] for n in raw])
        for row, z, m in zip(rows, zscore, minmax):
            row[f"{name}_zscore"] = z
            row[f"{name}_minmax"] = m
    keys = _ordered_keys(rows)
    return [{k: row.get(k) for k in keys} for row in rows]


def _ordered_keys(rows: list[dict[str, Any]]) -> list[str]:
    # every row has every column (a provenance field one record lacks reads None), in a stable order
    numeric = [c for name in NUMERIC_COLUMNS for c in (name, f"{name}_zscore", f"{name}_minmax")]
    provenance = sorted({k for row in rows for k in row if k.startswith("provenance_")})
    return ["id", "dtype", *numeric, *provenance]


def table(records: Iterable[tuple[str, Record | None, list[str]]]) -> Any:
    """:func:`table_rows` as a ``pandas.DataFrame`` indexed by nothing, when pandas is installed; else the list."""
    rows = table_rows(records)
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=_ordered_keys(rows) if rows else ["id", "dtype"])


def dump_table(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """The rows as ``csv``, ``json`` (a list of objects) or ``parquet`` (needs pyarrow) bytes."""
    if fmt == "json":
        return (json.dumps(rows, indent=1, allow_nan=False) + "\n").encode()
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=_ordered_keys(rows) if rows else ["id", "dtype"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        return text.getvalue().encode()
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidOption("--format parquet needs pyarrow, which is not installed: pip install pyarrow (or use --format csv or json)") from None
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        return sink.getvalue()
    raise InvalidOption(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
