"""blockio's review page: the dataset table and linked Neuroglancer views.

``viewer.init_app(app)`` registers the ``viewer`` blueprint (the pages) and the
``neuroglancer`` blueprint (Neuroglancer's client, built from the npm registry
by :mod:`viewer.bundle` (``python -m viewer.bundle``), at ``/neuroglancer/``) on an app made by
:func:`blockio.serving.app.create_app`, and attaches the client's builder
(``app.extensions["viewer.client"]``) and the review log
(``app.extensions["viewer.reviews"]``: verdicts in the service's database,
:mod:`viewer.db`), the verdicts API (:mod:`viewer.api`) and the sign-in page
(:mod:`viewer.signin`). Views keep no
state on the server: it is in the URL fragment and the browser.

Configuration: the app's :class:`blockio.config.Settings` (``app.extensions["blockio.settings"]``):
``viewer_cache`` (``BLOCKIO_VIEWER_CACHE``, default ``~/.cache/blockio``), where the client is built.
"""

from __future__ import annotations

from flask import Flask

from .reviews import VERDICTS, ReviewLog, to_csv
from .state import LAYOUTS, ViewSpec, build_state, layer_source, parse_view, state_url
from .thumbnails import thumbnail_png

__all__ = [
    "LAYOUTS",
    "VERDICTS",
    "ReviewLog",
    "ViewSpec",
    "build_state",
    "init_app",
    "layer_source",
    "parse_view",
    "state_url",
    "thumbnail_png",
    "to_csv",
]


def init_app(app: Flask) -> None:
    """Register the review page on ``app`` (made by ``blockio.serving.app.create_app``)."""
    from . import client_files
    from .bundle import ClientBuilder, default_cache
    from .pages import bp

    if bp.name in app.blueprints:  # create_app registers it already
        return
    from blockio.config import Settings

    settings = app.extensions.get("blockio.settings") or Settings.from_env()
    store = app.extensions["blockio.store"]
    app.extensions["viewer.client"] = ClientBuilder(default_cache(settings.viewer_cache))
    app.extensions["viewer.reviews"] = ReviewLog(store.root, database=app.extensions["blockio.database"])
    app.register_blueprint(bp)
    _init_reviews(app)
    from . import queue

    queue.init_app(app)
    app.register_blueprint(client_files.bp)
    from . import similar

    app.register_blueprint(similar.bp)


def _init_reviews(app: Flask) -> None:
    """The verdicts API, its OpenAPI paths, and the sign-in page (public even when reads need a user)."""
    from blockio.serving import auth
    from blockio.serving.openapi import PAGE_PATHS

    from . import api, signin

    app.register_blueprint(api.bp)
    app.register_blueprint(signin.bp)
    app.extensions.setdefault(PAGE_PATHS, {}).update(api.OPENAPI_PATHS)
    app.extensions["blockio.signin_endpoint"] = "signin.signin"
    auth.make_public(app, "signin.signin", "signin.signin_post", "signin.signout", "signin.session_json")
