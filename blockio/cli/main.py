"""The ``blockio`` command.

Every subcommand has ``--help``. User errors print one line,
``blockio: error: ...``, and exit with status 1 (2 for a bad command line);
tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from blockio import default_root

__all__ = ["main"]

log = logging.getLogger("blockio")


def _triple(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, Any, Any]:
        parts = text.replace("x", ",").split(",")
        try:
            values = tuple(kind(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected three comma-separated numbers x,y,z, got {text!r}") from None
        if len(values) != 3 or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected three positive numbers x,y,z, got {text!r}")
        return values  # type: ignore[return-value]

    return parse


def _add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="store root folder (default: $BLOCKIO_ROOT or ./blockio-data)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockio", description="Ingest 3-D microscopy volumes, read blocks, review predictions.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ing = sub.add_parser("ingest", help="raw dataset -> OME-Zarr + precomputed + catalog record", description="Ingest a TIFF stack (folder or glob), a multi-page/OME/ImageJ TIFF, HDF5, .npy or Zarr/OME-Zarr into both stores with a full pyramid and statistics.")
    ing.add_argument("source", nargs="+", help="file, folder or glob (quote globs); several files form a TIFF stack")
    ing.add_argument("--id", required=True, dest="dataset_id", help="dataset id, [A-Za-z0-9._-]")
    _add_root(ing)
    ing.add_argument("--voxel-size", type=_triple(float), help="x,y,z voxel size (overrides the file's metadata)")
    ing.add_argument("--unit", default="nm", help="unit of --voxel-size: nm, um, mm, angstrom, ... (default nm)")
    ing.add_argument("--profile", help="microscope profile for values the file does not state (see 'blockio catalog profiles')")
    ing.add_argument("--axes", help="axis order of the source when its metadata does not say, e.g. zyx, czyx, zcyx")
    ing.add_argument("--dataset-key", help="dataset inside an HDF5 file or array inside a Zarr group")
    ing.add_argument("--format", choices=["tiff-stack", "tiff", "hdf5", "npy", "zarr"], help="force a reader instead of detecting it")
    ing.add_argument("--chunk-size", type=_triple(int), help="x,y,z chunk size of both stores (default 64,64,64)")
    ing.add_argument("--compress", choices=["none", "gzip"], default="none", help="precomputed chunk compression (default none: fastest)")
    ing.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    ing.add_argument("--workers", type=int, help="local Dask workers (default: CPU count)")
    ing.add_argument("--scheduler", help="threads (default), processes, sync, or tcp://HOST:PORT of a dask.distributed scheduler")
    ing.add_argument("--task-mib", type=int, default=64, help="upper bound on one task's input box in MiB (default 64): bounds memory")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")

    cat = sub.add_parser("catalog", help="list, show, validate the catalog", description="Inspect the catalog (ROOT/catalog.json).")
    csub = cat.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    for name, text in (("list", "one line per dataset"), ("missing", "fields still at a default guess, per dataset"), ("validate", "check every record and the files it points to"), ("profiles", "known microscope profiles")):
        p = csub.add_parser(name, help=text, description=text)
        _add_root(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    show = csub.add_parser("show", help="one record as JSON", description="Print one catalog record as JSON.")
    show.add_argument("dataset_id", metavar="ID")
    _add_root(show)

    srv = sub.add_parser("serve", help="REST API + precomputed file server", description="Serve the REST API, the precomputed files (for Neuroglancer) and the metrics. For production use gunicorn with threaded workers: gunicorn -k gthread --threads 8 -w 2 -b 0.0.0.0:8000 'blockio.serving.app:create_app()'")
    _add_root(srv)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--redis-url", help="shared chunk cache (default $BLOCKIO_REDIS_URL)")

    demo = sub.add_parser("demo", help="synthetic dataset, ingest (then predictions and review as they land)", description="Make a synthetic EM-like volume with ground truth, write it as a TIFF stack with resolution tags, and ingest it as dataset 'demo'.")
    _add_root(demo)
    demo.add_argument("--shape", type=_triple(int), default=(512, 512, 128), help="x,y,z size (default 512,512,128)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-serve", action="store_true", help="exit after ingest instead of serving the review page")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--train", action="store_true", help="also train a tiny 3-D CNN (about a minute, needs torch) and evaluate it")
    demo.add_argument("--port", type=int, default=8000, help="port of the review page (default 8000)")

    from blockio.inference.evaluate import add_evaluate_arguments
    from blockio.inference.run import add_predict_arguments

    pred = sub.add_parser("predict", help="run a model blockwise -> segmentation layer", description="Run a model (pkg.module:callable) over a dataset in overlapping blocks on Dask and write its labels as a precomputed segmentation layer. A killed run resumes with the same command.")
    _add_root(pred)
    add_predict_arguments(pred)
    ev = sub.add_parser("evaluate", help="adapted Rand error and VI against a ground-truth layer", description="Compare a segmentation layer with a ground-truth layer (truth label 0 ignored) and store the metrics in the catalog.")
    _add_root(ev)
    add_evaluate_arguments(ev)
    return parser


def _cmd_ingest(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from precomputed.ingest import IngestOptions, ingest

    options = IngestOptions(
        voxel_size=args.voxel_size,
        unit=args.unit,
        profile=args.profile,
        axes=args.axes,
        dataset_key=args.dataset_key,
        format=args.format,
        chunk_size=args.chunk_size,
        compress=args.compress,
        overwrite=args.overwrite,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.quiet else None,
        task_bytes=args.task_mib << 20,
        command="blockio " + shlex.join(argv),
    )
    source = args.source if len(args.source) > 1 else args.source[0]
    record = ingest(source, args.root or default_root(), args.dataset_id, options)
    vs = record["provenance"]["voxel_size"]
    print(f"ingested {record['id']}: shape (x, y, z) {record['shape']}, {record['channels']} channel(s), {record['dtype']}, voxel size {record['voxel_size']} nm ({vs['source']}), {len(record['mips'])} mips")
    return 0


def _cmd_catalog(args: argparse.Namespace) -> int:
    from pathlib import Path

    from precomputed.catalog import Catalog
    from precomputed.ingest import local_root
    from precomputed.validate import missing_fields, validate_catalog

    action = args.catalog_command
    if action == "profiles":
        from precomputed.profiles import load_profiles

        profiles = load_profiles()
        if args.json:
            print(json.dumps({n: {"voxel_size_nm": list(p.voxel_size), "description": p.description} for n, p in profiles.items()}, indent=1))
        for name, prof in sorted(profiles.items()) if not args.json else ():
            print(f"{name:22s} {','.join(f'{v:g}' for v in prof.voxel_size)} nm  {prof.description}")
        return 0
    root = Path(local_root(args.root or default_root()))
    catalog = Catalog(root)
    if action == "show":
        print(json.dumps(catalog.get(args.dataset_id), indent=1, sort_keys=True))
        return 0
    if action == "list":
        rows = []
        for dataset_id, record, problems in catalog.records():
            if record is None:
                rows.append({"id": dataset_id, "error": problems[0]})
            else:
                rows.append({k: record[k] for k in ("id", "shape", "channels", "dtype", "voxel_size")} | {"mips": len(record["mips"]), "layers": sorted(record["layers"])})
        if args.json:
            print(json.dumps(rows, indent=1))
        elif not rows:
            print(f"no datasets in {root}")
        for row in rows if not args.json else ():
            if "error" in row:
                print(f"{row['id']:24s} UNAVAILABLE: {row['error']}")
            else:
                print(f"{row['id']:24s} shape(x,y,z)={row['shape']} c={row['channels']} {row['dtype']} voxel(nm)={row['voxel_size']} mips={row['mips']} layers={','.join(row['layers'])}")
        return 0
    if action == "missing":
        report = {}
        for dataset_id, record, problems in catalog.records():
            report[dataset_id] = [f"unavailable: {problems[0]}"] if record is None else [f"{f}: {d}" for f, d in missing_fields(record)]
        if args.json:
            print(json.dumps(report, indent=1))
            return 0
        for dataset_id, fields in report.items():
            for line in fields:
                print(f"{dataset_id}: {line}")
        if not any(report.values()):
            print("nothing missing: every field comes from the user, the file, the array or a profile")
        return 0
    # validate
    report = validate_catalog(root)
    bad = {k: v for k, v in report.items() if v}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for dataset_id, problems in report.items():
            print(f"{dataset_id}: " + ("ok" if not problems else "; ".join(problems)))
        if not report:
            print(f"no datasets in {root}")
    return 1 if bad else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from blockio.serving.app import create_app

    config: dict[str, Any] = {"BLOCKIO_ROOT": args.root or default_root()}
    if args.redis_url:
        config["BLOCKIO_REDIS_URL"] = args.redis_url
    app = create_app(config)
    print(f"serving {config['BLOCKIO_ROOT']} on http://{args.host}:{args.port}  (API: /api, files: /precomputed, /metrics)", flush=True)
    try:
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    except OSError as exc:
        print(f"blockio: error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from blockio.cli.demo import run_demo

    return run_demo(root=args.root or default_root(), shape=args.shape, seed=args.seed, serve=not args.no_serve, progress=False if args.quiet else None, train=args.train, port=args.port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``blockio`` console script."""
    from precomputed.errors import PrecomputedError

    from blockio.errors import BlockioError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "ingest":
            return _cmd_ingest(args, argv)
        if args.command == "catalog":
            return _cmd_catalog(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "predict":
            from blockio.inference.run import cmd_predict

            return cmd_predict(args, argv, args.root or default_root())
        if args.command == "evaluate":
            from blockio.inference.evaluate import cmd_evaluate

            return cmd_evaluate(args, args.root or default_root())
        return _cmd_demo(args)
    except (PrecomputedError, BlockioError) as exc:
        print(f"blockio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("blockio: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
