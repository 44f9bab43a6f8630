"""Deprecated location of the application factory; use :mod:`blockio.serving`.

Kept for one release so ``gunicorn 'blockio.app:create_app()'`` keeps working.
"""

from __future__ import annotations

from blockio.serving import create_app

__all__ = ["create_app"]
