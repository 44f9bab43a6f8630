"""The ``blockio`` command: one module per subcommand (ingest, catalog, serve,
demo, predict, evaluate), each importing its heavy dependencies only when it
runs, so ``blockio --help`` stays fast."""

from __future__ import annotations

from blockio.cli.main import main

__all__ = ["main"]
