"""``blockio embed``: a model's vectors per cell (or per segment) over a dataset, stored and indexed."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of, xyz

__all__ = ["add_parser", "run"]

DEFAULT_MODEL = "blockio.embeddings.models:multiscale_features"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``embed`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "embed",
        help="compute an embedding set (vectors per cell or segment) -> Zarr + vector index",
        description="Run a model that outputs vectors over a dataset on Dask: one vector per cell of --cell voxels, or per segment "
        "of --segments LAYER. The vectors go to ROOT/embeddings/<id>/<name> (Zarr v3) and into the dataset's vector index "
        "(SQLite + sqlite-vec on a local root, LanceDB with --engine lance), and the set into the catalog. "
        "A killed run resumes with the same command.",
    )
    add_root(p)
    p.add_argument("dataset_id", metavar="ID", help="dataset id")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"the model, pkg.module:callable (default {DEFAULT_MODEL})")
    p.add_argument("--name", required=True, help="name of the embedding set")
    p.add_argument("--cell", type=xyz(int), default=(32, 32, 32), help="x,y,z voxels of one cell (default 32,32,32)")
    p.add_argument("--segments", metavar="LAYER", help="one vector per segment of this segmentation layer instead of per cell")
    p.add_argument("--mip", type=int, default=0, help="input mip (default 0)")
    p.add_argument("--block", type=xyz(int), default=(128, 128, 128), help="x,y,z voxels per task, rounded up to whole cells (default 128,128,128)")
    p.add_argument("--normalize", default="zscore", choices=("zscore", "minmax", "percentile", "none"), help="input normalisation (default zscore)")
    p.add_argument("--metric", default="l2", choices=("l2", "cosine"), help="distance of the index (default l2)")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="dtype of the Zarr array (default float16)")
    p.add_argument("--engine", choices=("sqlite", "lance"), help="vector index engine (default: sqlite locally, lance past 1M vectors)")
    p.add_argument("--scheduler", help="threads (default), processes, sync, or tcp://HOST:PORT of a dask.distributed scheduler")
    p.add_argument("--workers", type=int, help="local Dask workers (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace a set with the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Compute the set; prints one line about it and returns the exit status."""
    from blockio.embeddings.run import run_embedding
    from blockio.roots import require_store

    root = root_of(args)
    require_store(root)
    entry = run_embedding(
        root,
        args.dataset_id,
        args.model,
        args.name,
        cell=args.cell,
        segments=args.segments,
        mip=args.mip,
        block=args.block,
        normalize=None if args.normalize == "none" else args.normalize,
        metric=args.metric,
        dtype=args.dtype,
        engine=args.engine,
        scheduler=args.scheduler,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
        command="blockio " + shlex.join(argv),
    )
    print(f"wrote embedding set {args.name!r} of {args.dataset_id}: {entry['count']} {entry['granularity']} vectors of {entry['dimension']} ({entry['array']}, index {entry['index']['engine']})")
    return 0
