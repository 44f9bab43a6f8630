"""Deprecated location of the demo models; use :mod:`blockio.inference.models`.

Kept so model names stored in existing catalogs (``blockio.models:membrane_watershed``)
still load.
"""

from __future__ import annotations

from blockio.inference.models import *  # noqa: F403
from blockio.inference.models import __all__  # noqa: F401
