"""The ``blockio`` command: one module per subcommand, each imported only when
that subcommand runs, so ``blockio --help`` stays fast."""

from __future__ import annotations

from blockio.cli.main import main

__all__ = ["main"]
