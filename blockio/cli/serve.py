"""``blockio serve``: the REST API, the precomputed file server, the metrics and the review page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from blockio.cli.arguments import add_root, root_of

__all__ = ["PRODUCTION", "add_parser", "run"]

PRODUCTION = "gunicorn -c python:blockio.serving.gunicorn_conf -w 2 -b 0.0.0.0:8000 'blockio.serving:create_app()'"
"""The production command (``pip install -e '.[serve]'`` brings gunicorn)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "serve",
        help="REST API + precomputed file server + review page",
        description="Serve the REST API, the precomputed files (for Neuroglancer), the metrics and the review page "
        "with Flask's development server. The root must hold a catalog. For production, install the serve extra "
        f"(pip install -e '.[serve]') and run threaded gunicorn workers: BLOCKIO_ROOT=ROOT {PRODUCTION}",
    )
    add_root(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000); a busy port is named with a free one to use")
    p.add_argument("--redis-url", help="shared chunk cache (default $BLOCKIO_REDIS_URL)")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME=pkg.mod:fn",
        help="serve the model's output as the live layer /precomputed/<id>/live/NAME/ of every dataset, computed on request "
        "(repeatable; options after '?': block=x,y,z&overlap=x,y,z&normalize=..&threshold=..&output=segmentation|image&workers=N; "
        "default $BLOCKIO_LIVE_MODELS)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve until interrupted; returns the exit status (1 for a missing root or a busy port)."""
    from blockio.cli.ports import busy_port_message
    from blockio.roots import require_store

    root = root_of(args)
    require_store(root)
    busy = busy_port_message(args.host, args.port)
    if busy is not None:
        print(f"blockio: error: {busy}", file=sys.stderr)
        return 1
    from werkzeug.serving import run_simple

    from blockio.serving import create_app

    config: dict[str, Any] = {"BLOCKIO_ROOT": root}
    if args.redis_url:
        config["BLOCKIO_REDIS_URL"] = args.redis_url
    if args.model:
        config["BLOCKIO_LIVE_MODELS"] = ";".join(args.model)
    app = create_app(config)
    print(f"serving {root} on http://{args.host}:{args.port}  (API: /api, files: /precomputed, /metrics)", flush=True)
    try:
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    except OSError as exc:  # taken between the check and the bind
        print(f"blockio: error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
