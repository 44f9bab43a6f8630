"""``blockio.transforms``: the preprocessing transforms (in :mod:`blockio.data.transforms`)."""

from __future__ import annotations

from blockio.data.transforms import *  # noqa: F403
from blockio.data.transforms import __all__  # noqa: F401
