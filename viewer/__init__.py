"""blockio's review page: the dataset table and linked Neuroglancer views.

``viewer.init_app(app)`` registers the ``viewer`` blueprint on an app made by
:func:`blockio.serving.app.create_app` and attaches the Neuroglancer viewer pool
(``app.extensions["viewer.pool"]``) and the review log
(``app.extensions["viewer.reviews"]``, ``ROOT/reviews.json``).

Configuration: the app's :class:`blockio.config.Settings` (``app.extensions["blockio.settings"]``):
``neuroglancer_port`` (``BLOCKIO_NEUROGLANCER_PORT``, default 0, a free port) and
``neuroglancer_bind`` (``BLOCKIO_NEUROGLANCER_BIND``, default ``127.0.0.1``) for
Neuroglancer's in-process server.
"""

from __future__ import annotations

from flask import Flask

from .reviews import VERDICTS, ReviewLog, to_csv
from .state import LAYOUTS, ViewerPool, ViewSpec, build_state, layer_source, parse_view
from .thumbnails import thumbnail_png

__all__ = [
    "LAYOUTS",
    "VERDICTS",
    "ReviewLog",
    "ViewSpec",
    "ViewerPool",
    "build_state",
    "init_app",
    "layer_source",
    "parse_view",
    "thumbnail_png",
    "to_csv",
]


def init_app(app: Flask) -> None:
    """Register the review page on ``app`` (made by ``blockio.serving.app.create_app``)."""
    from .pages import bp

    if bp.name in app.blueprints:  # create_app registers it already
        return
    from blockio.config import Settings

    settings = app.extensions.get("blockio.settings") or Settings.from_env()
    store = app.extensions["blockio.store"]
    app.extensions["viewer.pool"] = ViewerPool(bind_address=settings.neuroglancer_bind, port=settings.neuroglancer_port)
    app.extensions["viewer.reviews"] = ReviewLog(store.root)
    app.register_blueprint(bp)
