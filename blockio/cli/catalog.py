"""``blockio catalog``: list, show, check and tabulate the catalog of a root, and the microscope profiles.

Listing imports the catalog reader and its schema validator only: no numpy,
CloudVolume, zarr or dask.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blockio.cli.arguments import add_root, root_of

if TYPE_CHECKING:
    from precomputed.catalog import Catalog

__all__ = ["add_parser", "run"]

_ACTIONS = (
    ("list", "one line per dataset"),
    ("missing", "fields still at a default guess, per dataset"),
    ("validate", "check every record and the files it points to"),
    ("profiles", "known microscope profiles"),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``catalog`` and its actions on the subcommand table ``sub``."""
    cat = sub.add_parser("catalog", help="list, show, validate the catalog", description="Inspect the catalog (ROOT/catalog.json).")
    actions = cat.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    for name, text in _ACTIONS:
        p = actions.add_parser(name, help=text, description=text)
        add_root(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "validate":
            p.add_argument("--chunks", action="store_true", help="also read every chunk of every layer in both stores, checksum and decode it, and name each bad one (slow: reads everything)")
    table = actions.add_parser(
        "table",
        help="one row per dataset: numbers raw, z-scored and min-max scaled, with provenance",
        description="The metadata table across datasets (precomputed.catalog_table): voxel size, extent in nm, intensity statistics, "
        "channel, mip and layer counts, each raw, z-scored and min-max scaled across the catalog, and each field's provenance.",
    )
    add_root(table)
    table.add_argument("--format", choices=("csv", "json", "parquet"), default="csv", help="csv (default), json, or parquet (needs pyarrow)")
    table.add_argument("--output", "-o", metavar="FILE", help="write the table here instead of standard output")
    show = actions.add_parser("show", help="one record as JSON", description="Print one catalog record as JSON.")
    show.add_argument("dataset_id", metavar="ID")
    add_root(show)
    cat.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run one catalog action; returns the exit status (1 when ``validate`` finds a problem)."""
    if args.catalog_command == "profiles":
        return _profiles(as_json=args.json)
    from blockio.errors import InvalidRequest
    from blockio.roots import require_store
    from precomputed.catalog import Catalog

    folder = require_store(root_of(args))
    root: Any = folder if folder is not None else str(root_of(args))  # a bucket root: its URL
    catalog = Catalog(root)
    if args.catalog_command == "show":
        print(json.dumps(catalog.get(args.dataset_id), indent=1, sort_keys=True))
        return 0
    if args.catalog_command == "list":
        return _list(catalog, root, as_json=args.json)
    if args.catalog_command == "table":
        return _table(catalog, args.format, args.output)
    if args.catalog_command == "missing":
        return _missing(catalog, as_json=args.json)
    if folder is None:
        if args.chunks:
            raise InvalidRequest(f"store root {root}: validate --chunks reads the layers of a local folder (or file://) only, not a bucket")
        return _validate_records(catalog, root, as_json=args.json)
    return _validate(folder, as_json=args.json, chunks=args.chunks)


def _validate_records(catalog: Catalog, root: str, *, as_json: bool) -> int:
    """``validate`` on a bucket root: every record against the schema (the store files are not scanned there)."""
    report = {dataset_id: problems for dataset_id, _, problems in catalog.records()}
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        for dataset_id, problems in report.items():
            print(f"{dataset_id}: " + ("ok (record only)" if not problems else "; ".join(problems)))
        print(f"{root}: records checked against the schema; the store files are checked on local roots only")
    return 1 if any(report.values()) else 0


def _profiles(*, as_json: bool) -> int:
    from precomputed.profiles import load_profiles

    profiles = load_profiles()
    if as_json:
        print(json.dumps({n: {"voxel_size_nm": list(p.voxel_size), "description": p.description} for n, p in profiles.items()}, indent=1))
        return 0
    for name, prof in sorted(profiles.items()):
        print(f"{name:22s} {','.join(f'{v:g}' for v in prof.voxel_size)} nm  {prof.description}")
    return 0


def _list(catalog: Catalog, root: Path | str, *, as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for dataset_id, record, problems in catalog.records():
        if record is None:
            rows.append({"id": dataset_id, "error": problems[0]})
        else:
            rows.append({k: record[k] for k in ("id", "shape", "channels", "dtype", "voxel_size")} | {"mips": len(record["mips"]), "layers": sorted(record["layers"])})
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no datasets in {root}")
    for row in rows:
        if "error" in row:
            print(f"{row['id']:24s} UNAVAILABLE: {row['error']}")
        else:
            print(f"{row['id']:24s} shape(x,y,z)={row['shape']} c={row['channels']} {row['dtype']} voxel(nm)={row['voxel_size']} mips={row['mips']} layers={','.join(row['layers'])}")
    return 0


def _table(catalog: Catalog, fmt: str, output: str | None) -> int:
    import sys

    from precomputed.catalog_table import dump_table, table_rows

    data = dump_table(table_rows(catalog.records()), fmt)  # a missing pyarrow fails here, before a file is made
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(data)
    return 0


def _missing(catalog: Catalog, *, as_json: bool) -> int:
    from precomputed.validate import missing_fields

    report: dict[str, list[str]] = {}
    for dataset_id, record, problems in catalog.records():
        report[dataset_id] = [f"unavailable: {problems[0]}"] if record is None else [f"{f}: {d}" for f, d in missing_fields(record)]
    if as_json:
        print(json.dumps(report, indent=1))
        return 0
    for dataset_id, fields in report.items():
        for line in fields:
            print(f"{dataset_id}: {line}")
    if not any(report.values()):
        print("nothing missing: every field comes from the user, the file, the array or a profile")
    return 0


def _validate(root: Path, *, as_json: bool, chunks: bool = False) -> int:
    from precomputed.validate import validate_catalog

    if chunks:
        from precomputed.chunk_audit import full_checks

        report = validate_catalog(root, chunk_checks=full_checks(), zarr_chunks=True)
    else:
        report = validate_catalog(root)
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        for dataset_id, problems in report.items():
            print(f"{dataset_id}: " + ("ok" if not problems else "; ".join(problems)))
        if not report:
            print(f"no datasets in {root}")
    return 1 if any(report.values()) else 0
