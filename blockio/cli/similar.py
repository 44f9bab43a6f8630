"""``blockio similar``: the nearest cells or segments of an embedding set, from a position or a segment."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of

__all__ = ["add_parser", "run"]


def _triple(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,z, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers x,y,z, got {text!r}")
    return values


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``similar`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "similar",
        help="the k nearest cells or segments of an embedding set",
        description="Find the cells (or segments) whose vectors are nearest the one at --position (x,y,z voxels of mip 0) "
        "or of --segment ID, with their positions in voxels and nm, distances and a link to the review page.",
    )
    add_root(p)
    p.add_argument("dataset_id", metavar="ID", help="dataset id")
    p.add_argument("name", metavar="NAME", help="embedding set name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--position", type=_triple, help="x,y,z voxels of mip 0")
    what.add_argument("--segment", type=int, help="a segment id (segment sets)")
    p.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--layer", help="only rows from this source layer")
    p.add_argument("--model", help="only rows from this model")
    p.add_argument("--region", type=lambda t: tuple(float(v) for v in t.split(",")), help="x0,y0,z0,x1,y1,z1 mip-0 voxels: only rows centred inside")
    p.add_argument("--base-url", default="", help="make the links absolute, e.g. http://localhost:5000")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Print the neighbours (a table, or JSON with --json)."""
    import json

    from blockio.errors import InvalidRequest
    from blockio.store import open_store

    where: dict[str, object] = {"layer": args.layer, "model": args.model}
    if args.region is not None:
        if len(args.region) != 6:
            raise InvalidRequest(f"--region takes six numbers x0,y0,z0,x1,y1,z1, got {len(args.region)}")
        where["region"] = (args.region[:3], args.region[3:])
    found = open_store(root_of(args)).embeddings(args.dataset_id, args.name)
    answer = found.knn(position=args.position, segment=args.segment, k=args.k, where=where, link_base=args.base_url)
    if args.json:
        print(json.dumps(answer, indent=1))
        return 0
    for reason in answer["stale"]:
        print(f"warning: set {args.name!r} is stale: {reason}")
    print("rank  key                   distance    x, y, z (voxels)          x, y, z (nm)                 link")
    for r in answer["results"]:
        vox = ", ".join(f"{v:.1f}" for v in r["position"]["voxels"])
        nm = ", ".join(f"{v:.0f}" for v in r["position"]["nm"])
        print(f"{r['rank']:<5} {r['key']:<21} {r['distance']:<11.4g} {vox:<25} {nm:<28} {r['link']}")
    return 0
