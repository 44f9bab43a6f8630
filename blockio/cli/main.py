"""The ``blockio`` command: the parser skeleton and the dispatch.

Every subcommand lives in its own module (``blockio.cli.ingest``, ...) with
``add_parser(sub)`` and ``run(args, argv)``; those modules import only
argparse at their top, and their heavy imports (numpy, CloudVolume, zarr,
dask, Flask, torch) happen inside ``run``, so ``blockio --help`` and
``blockio catalog list`` start fast.

Every subcommand has ``--help``. User errors print one line,
``blockio: error: ...``, and exit with status 1 (2 for a bad command line);
tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from blockio import __version__
from blockio.cli import catalog, demo, embed, evaluate, ingest, predict, review, serve, similar, users

__all__ = ["build_parser", "main"]

COMMANDS = (ingest, catalog, serve, demo, predict, evaluate, embed, similar, users, review)
"""The subcommand modules, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global options, then each command's own parser."""
    parser = argparse.ArgumentParser(prog="blockio", description="Ingest 3-D microscopy volumes, read blocks, review predictions.")
    parser.add_argument("--version", action="version", version=f"blockio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``blockio`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from blockio.errors import BlockioError
    from precomputed.errors import PrecomputedError

    try:
        return int(args.run(args, argv))
    except (PrecomputedError, BlockioError) as exc:
        print(f"blockio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("blockio: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
