"""The Flask application factory: REST API, precomputed file server, metrics.

``create_app(settings)`` in the style of Flask's tutorial: the settings are
a :class:`blockio.config.Settings` (default: from the environment, read once
here). Errors map to status codes with the one table of
:mod:`blockio.errors` (see :mod:`blockio.serving.error_answers`) and are JSON
everywhere; JSON answers never hold NaN; the read-only data routes carry the
CORS headers (:data:`CORS_BLUEPRINTS`), nothing else does; users, sessions and
CSRF come from :mod:`blockio.serving.auth`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from blockio.config import Settings

__all__ = ["APPS_GROUP", "create_app", "install_apps"]

log = logging.getLogger(__name__)


#: the read-only data routes other origins may read (Neuroglancer, notebooks); never the page, its verdicts or sign-in
CORS_BLUEPRINTS = ("api", "embeddings", "files", "openapi")
CORS_ENDPOINTS = ("healthz",)


def _is_data_read() -> bool:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        return False
    return request.path.startswith("/precomputed/") or request.blueprint in CORS_BLUEPRINTS or request.endpoint in CORS_ENDPOINTS


def _cors(settings: Settings, response: Response) -> Response:
    if not _is_data_read():
        return response
    origin = request.headers.get("Origin")
    if "*" in settings.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and settings.allows_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Range, Authorization, Content-Type, If-None-Match"
    response.headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, Content-Encoding, ETag, X-Block-Shape, X-Block-Dtype, X-Block-Axes, X-Block-Offset"
    return response


APPS_GROUP = "blockio.apps"


def install_apps(app: Flask) -> list[str]:
    """Call every installed page's ``init_app(app)`` (entry point group ``blockio.apps``).

    The service composes what is installed without naming it, the way pytest
    and Datasette load plugins; returns the names of the pages installed.
    """
    from importlib.metadata import entry_points

    names = []
    for entry in sorted(entry_points(group=APPS_GROUP), key=lambda e: e.name):
        init_app = entry.load()
        init_app(app)
        names.append(entry.name)
    return names


def _settings_and_config(settings: Settings | Mapping[str, Any] | None) -> tuple[Settings, dict[str, Any]]:
    if isinstance(settings, Settings):
        return settings, {}
    base = Settings.from_env()
    if settings is None:
        return base, {}
    # the old form: a mapping of BLOCKIO_* keys (overrides) and Flask keys such as TESTING
    ours, flask_config = Settings.split_variables(settings)
    return base.with_variables(ours), flask_config


def create_app(settings: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the application.

    Parameters
    ----------
    settings
        The :class:`~blockio.config.Settings` (default ``Settings.from_env()``).
        A mapping is accepted as before: its ``BLOCKIO_*`` keys (and
        ``MAX_CONTENT_LENGTH``) override the environment's settings, other
        keys (``TESTING``, ...) go to Flask's ``app.config``.

    The settings are in ``app.extensions["blockio.settings"]``
    (:func:`blockio.serving.api.get_settings` in a request).
    """
    from blockio.serving import api, auth, embeddings, error_answers, files, live, metrics, openapi, writes
    from blockio.serving.json_provider import StrictJSONProvider
    from blockio.store import Store

    chosen, flask_config = _settings_and_config(settings)
    app = Flask("blockio")
    app.json = StrictJSONProvider(app)
    # "//etc/passwd" must reach the file server's checks (404), not be redirected to a merged path
    app.url_map.merge_slashes = False
    app.config.update(flask_config)
    app.config["MAX_CONTENT_LENGTH"] = chosen.max_content_length  # Flask's own name for it
    app.extensions["blockio.settings"] = chosen
    app.extensions["blockio.store"] = Store(chosen.root, settings=chosen)
    metrics.init_app(app)
    auth.init_app(app)
    app.url_value_preprocessor(api.check_path_ids)
    app.register_blueprint(api.bp)
    app.register_blueprint(embeddings.bp)
    app.register_blueprint(writes.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(files.bp)
    live.init_app(app)  # /precomputed/<id>/live/<NAME>/: computed chunks, its counter in the metrics' registry
    error_answers.init_app(app)
    install_apps(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "datasets": len(app.extensions["blockio.store"].datasets())})

    @app.after_request
    def cors(response: Response) -> Response:
        return _cors(chosen, response)

    return app
