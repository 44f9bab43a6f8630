"""The HTTP service: the application factory, the REST API, the precomputed
file server, OpenAPI, metrics and block writes.

``create_app()`` builds the Flask app and lets every installed page (entry
point group ``blockio.apps``) register itself, so this package never names
one.
"""

from __future__ import annotations

from blockio.serving.app import create_app

__all__ = ["create_app"]
