"""``blockio predict``: run a model blockwise over a dataset and write a segmentation layer."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of

__all__ = ["NORMALIZE_CHOICES", "add_parser", "run"]

NORMALIZE_CHOICES = ("zscore", "minmax", "percentile", "none")
"""``blockio.normalize.NORMALIZATIONS`` and ``none``, spelled out so ``--help`` needs no numpy (a test keeps them equal)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``predict`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "predict",
        help="run a model blockwise -> segmentation layer",
        description="Run a model (pkg.module:callable) over a dataset in overlapping blocks on Dask and write its labels "
        "as a precomputed segmentation layer. A killed run resumes with the same command.",
    )
    add_root(p)
    p.add_argument("dataset_id", metavar="ID", help="dataset id")
    p.add_argument("--model", required=True, help="the model, pkg.module:callable (e.g. blockio.inference.models:membrane_watershed)")
    p.add_argument("--name", required=True, help="name of the new segmentation layer")
    p.add_argument("--block", default="128,128,128", help="x,y,z core of a task, rounded up to the chunk size (default 128,128,128)")
    p.add_argument("--overlap", default="16,16,16", help="x,y,z halo on each side, >= the model's receptive radius (default 16,16,16)")
    p.add_argument("--mip", type=int, default=0, help="input mip (only 0 for now)")
    p.add_argument("--normalize", default="percentile", choices=NORMALIZE_CHOICES, help="input normalisation (default percentile)")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold of a one-channel score map (default 0.5)")
    p.add_argument("--blend", action="store_true", help="blend overlapping windows with cosine ramps instead of cropping the core")
    p.add_argument("--scheduler", help="threads (default), processes, sync, or tcp://HOST:PORT of a dask.distributed scheduler")
    p.add_argument("--workers", type=int, help="local Dask workers (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace a layer with the same name")
    p.add_argument("--no-meshes", action="store_true", help="do not mesh the segments")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Write the layer; prints one line about it and returns the exit status."""
    from blockio.inference.run import run_inference
    from blockio.roots import require_store

    root = root_of(args)
    require_store(root)
    layer = run_inference(
        root,
        args.dataset_id,
        args.model,
        args.name,
        block=args.block,
        overlap=args.overlap,
        mip=args.mip,
        normalize=None if args.normalize == "none" else args.normalize,
        threshold=args.threshold,
        blend=args.blend,
        scheduler=args.scheduler,
        workers=args.workers,
        overwrite=args.overwrite,
        meshes=not args.no_meshes,
        progress=False if args.quiet else None,
        command="blockio " + shlex.join(argv),
    )
    print(f"wrote layer {args.name!r} of {args.dataset_id}: {layer.get('segments', '?')} segments from {args.model} ({layer['path']})")
    return 0
