"""``blockio review``: plan review queues (``plan``) and see their progress (``list``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from blockio.cli.arguments import add_dataset_id, add_root, root_of

__all__ = ["add_parser", "run"]

_STRATEGIES = ("largest", "disagreement", "low-confidence", "random")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``review`` (with ``plan`` and ``list``) on the subcommand table ``sub``."""
    p = sub.add_parser(
        "review",
        help="plan review queues and see their progress",
        description="Review queues: items (a segment and a place to look at, with why each was chosen) that the review page "
        "hands to reviewers one at a time. They live in the review database (SQLite under the root, or $BLOCKIO_DATABASE_URL).",
    )
    commands = p.add_subparsers(dest="review_command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan",
        help="choose the items of a named queue",
        description="Choose what to review in a prediction layer: its largest segments (segment properties), where it "
        "disagrees with another layer (segments split or merged, from the contingency table), or segments at random (seeded). "
        "low-confidence needs a score layer, which no blockio command writes yet.",
    )
    add_root(plan)
    add_dataset_id(plan)
    plan.add_argument("--pred", required=True, help="the segmentation layer to review (A)")
    other = plan.add_mutually_exclusive_group()
    other.add_argument("--vs", help="disagreement: another prediction layer to compare A with (B)")
    other.add_argument("--truth", help="disagreement: a ground-truth layer to compare A with (its label 0 is ignored)")
    plan.add_argument("--strategy", required=True, choices=_STRATEGIES, help="how items are chosen")
    plan.add_argument("--size", type=int, default=20, help="at most this many items (default 20)")
    plan.add_argument("--seed", type=int, default=0, help="random: the seed of the draw (default 0)")
    plan.add_argument("--min-fraction", type=float, default=0.1, help="disagreement: the share of a segment a part must hold to count (default 0.1)")
    plan.add_argument("--name", help="the queue's name (default ID-PRED-STRATEGY)")
    plan.add_argument("--replace", action="store_true", help="plan an existing queue again (drops its items and assignments; verdicts stay)")
    plan.add_argument("--json", action="store_true", help="print the queue and its items as JSON")
    plan.set_defaults(run=run)
    listing = commands.add_parser("list", help="every queue and its progress", description="Every review queue with its items open, assigned and done, per reviewer.")
    add_root(listing)
    listing.add_argument("--json", action="store_true", help="print as JSON")
    listing.set_defaults(run=run)


def _queues(root: str) -> Any:
    from blockio.config import Settings
    from blockio.database import open_database
    from blockio.review_queues import ReviewQueues

    settings = Settings.from_env()
    return ReviewQueues(open_database(root=root, url=settings.database_url))


def _plan(args: argparse.Namespace, root: str) -> int:
    from blockio.inference.review_plan import plan_review
    from blockio.review_queues import check_name
    from blockio.store import Store

    name = check_name(args.name or f"{args.dataset_id}-{args.pred}-{args.strategy}")
    store = Store(root, cache_bytes=0)
    plan = plan_review(
        store, args.dataset_id, pred=args.pred, strategy=args.strategy, vs=args.vs, truth=args.truth, size=args.size, seed=args.seed, min_fraction=args.min_fraction
    )
    queue = _queues(root).create(name, plan.to_json(), replace=args.replace)
    if args.json:
        print(json.dumps({**queue, "items": plan.items}, indent=1))
        return 0
    against = f" against {plan.other}" if plan.other else ""
    print(f"queue {name}: {len(plan.items)} items of {args.dataset_id}/{args.pred}{against} by {args.strategy}")
    for rank, item in enumerate(plan.items[:10]):
        x, y, z = item["position"]
        print(f"  {rank + 1}. segment {item['segment']} at {x},{y},{z}: {item['reason']}")
    if len(plan.items) > 10:
        print(f"  ... {len(plan.items) - 10} more")
    return 0


def _list(args: argparse.Namespace, root: str) -> int:
    queues = _queues(root)
    found = [queues.get(name) for name in queues.names()]
    shown = [q for q in found if q is not None]
    if args.json:
        print(json.dumps({"queues": shown}, indent=1))
        return 0
    if not shown:
        print("no review queues; plan one with blockio review plan")
    for q in shown:
        p = q["progress"]
        print(f"{q['name']}: {q['dataset']}/{q['layer']} by {q['strategy']}: {p['done']} of {p['total']} done, {p['assigned']} assigned, {p['open']} open")
        for reviewer, mine in q["reviewers"].items():
            print(f"  {reviewer}: {mine['done']} done, {mine['assigned']} assigned")
    return 0


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``review plan`` or ``review list``; returns the exit status."""
    from blockio.roots import require_store

    root = root_of(args)
    require_store(root)
    return _plan(args, root) if args.review_command == "plan" else _list(args, root)
