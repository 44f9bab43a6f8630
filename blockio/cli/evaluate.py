"""``blockio evaluate``: adapted Rand error and VI of a segmentation layer against ground truth."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from blockio.cli.arguments import add_dataset_id, add_root, root_of

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "evaluate",
        help="adapted Rand error and VI against a ground-truth layer",
        description="Compare a segmentation layer with a ground-truth layer (truth label 0 ignored) and store the metrics in the catalog.",
    )
    add_root(p)
    add_dataset_id(p)
    p.add_argument("--pred", required=True, help="the predicted segmentation layer")
    p.add_argument("--truth", required=True, help="the ground-truth segmentation layer (label 0 is ignored)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Print the metrics (stored in the catalog too); returns the exit status."""
    from blockio.inference.evaluate import evaluate
    from blockio.roots import require_store

    root = root_of(args)
    require_store(root)
    result = evaluate(root, args.dataset_id, args.pred, args.truth)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{args.dataset_id}: {args.pred} vs {args.truth}: adapted Rand error {result['adapted_rand_error']:.4f} "
        f"(precision {result['rand_precision']:.4f}, recall {result['rand_recall']:.4f}), "
        f"VI split {result['vi_split']:.4f} + merge {result['vi_merge']:.4f} = {result['vi']:.4f} bits "
        f"over {result['voxels']} voxels, {result['truth_segments']} true / {result['pred_segments']} predicted segments"
    )
    return 0
