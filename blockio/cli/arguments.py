"""What several commands parse the same way: ``--root``, the dataset ``ID`` and ``x,y,z`` triples."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_dataset_id", "add_root", "root_of", "xyz"]


def xyz(kind: type) -> Callable[[str], tuple[Any, Any, Any]]:
    """An argparse ``type`` for three positive numbers ``x,y,z`` (``x`` also separates: ``64x64x32``).

    Parameters
    ----------
    kind
        ``int`` or ``float``: the type of each number.
    """

    def parse(text: str) -> tuple[Any, Any, Any]:
        parts = text.replace("x", ",").split(",")
        try:
            values = tuple(kind(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected three comma-separated numbers x,y,z, got {text!r}") from None
        if len(values) != 3 or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected three positive numbers x,y,z, got {text!r}")
        return values

    return parse


def add_root(parser: argparse.ArgumentParser) -> None:
    """The ``--root`` option every command that touches a store has."""
    parser.add_argument("--root", default=None, help="store root folder (default: $BLOCKIO_ROOT or ./blockio-data)")


def add_dataset_id(parser: argparse.ArgumentParser) -> None:
    """The ``ID`` positional (``args.dataset_id``) of a command that works on one dataset."""
    parser.add_argument("dataset_id", metavar="ID", help="dataset id")


def root_of(args: argparse.Namespace) -> str:
    """The root a command works on: ``--root``, else ``$BLOCKIO_ROOT``, else ``./blockio-data``."""
    from blockio import default_root

    return args.root or default_root()
