"""The Flask application factory: REST API, precomputed file server, metrics.

``create_app(config)`` in the style of Flask's tutorial: defaults, then
environment, then the ``config`` mapping. Errors map to status codes in one
place (:func:`_error_status`) and are JSON everywhere; every response carries
the CORS headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from blockio import default_root
from blockio.errors import (
    BlockioError,
    ChunkError,
    DatasetNotFound,
    DatasetUnavailable,
    InvalidRequest,
    LayerNotFound,
)

__all__ = ["APPS_GROUP", "create_app", "install_apps"]

log = logging.getLogger(__name__)


def _defaults() -> dict[str, Any]:
    return {
        "BLOCKIO_ROOT": default_root(),
        "BLOCKIO_REDIS_URL": os.environ.get("BLOCKIO_REDIS_URL") or None,
        "BLOCKIO_CACHE_BYTES": int(os.environ.get("BLOCKIO_CACHE_BYTES", 512 << 20)),
        "BLOCKIO_WRITE_TOKEN": os.environ.get("BLOCKIO_WRITE_TOKEN") or None,
        "BLOCKIO_CORS_ORIGINS": os.environ.get("BLOCKIO_CORS_ORIGINS", "*"),
        "BLOCKIO_MAX_BLOCK_VOXELS": 512**3,
        "BLOCKIO_MAX_BLOCK_BYTES": 256 << 20,
        "BLOCKIO_MAX_INFLIGHT": 8,
        "BLOCKIO_QUEUE_TIMEOUT_S": 2.0,
        "MAX_CONTENT_LENGTH": 256 << 20,
    }


def _error_status(exc: BaseException) -> tuple[int, str]:
    from blockio.serving.api import Busy, TooLarge

    if isinstance(exc, (DatasetNotFound, LayerNotFound)):
        return 404, "not_found"
    if isinstance(exc, TooLarge):
        return 413, "too_large"
    if isinstance(exc, InvalidRequest):
        return 400, "invalid_request"
    if isinstance(exc, Busy):
        return 503, "busy"
    if isinstance(exc, DatasetUnavailable):
        return 503, "dataset_unavailable"
    if isinstance(exc, ChunkError):
        return 500, "chunk_error"
    return 500, "internal"


def _cors(app: Flask, response: Response) -> Response:
    origins = app.config["BLOCKIO_CORS_ORIGINS"]
    origin = request.headers.get("Origin")
    if origins == "*":
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin in [o.strip() for o in origins.split(",")]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, PUT, OPTIONS"
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


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application.

    Parameters
    ----------
    config
        Overrides: ``BLOCKIO_ROOT``, ``BLOCKIO_REDIS_URL``, ``BLOCKIO_CACHE_BYTES``,
        ``BLOCKIO_WRITE_TOKEN``, ``BLOCKIO_CORS_ORIGINS`` (``*`` or a comma list),
        ``BLOCKIO_MAX_BLOCK_VOXELS``, ``BLOCKIO_MAX_BLOCK_BYTES``,
        ``BLOCKIO_MAX_INFLIGHT``, ``BLOCKIO_QUEUE_TIMEOUT_S``, ``MAX_CONTENT_LENGTH``.
    """
    from blockio.serving import api, files, metrics, openapi
    from blockio.store import Store

    app = Flask("blockio")
    # "//etc/passwd" must reach the file server's checks (404), not be redirected to a merged path
    app.url_map.merge_slashes = False
    app.config.from_mapping(_defaults())
    if config:
        app.config.update(config)
    app.extensions["blockio.store"] = Store(app.config["BLOCKIO_ROOT"], cache_bytes=app.config["BLOCKIO_CACHE_BYTES"], redis_url=app.config["BLOCKIO_REDIS_URL"] or "")
    metrics.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(files.bp)
    install_apps(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "datasets": len(app.extensions["blockio.store"].datasets())})

    @app.after_request
    def cors(response: Response) -> Response:
        return _cors(app, response)

    @app.errorhandler(BlockioError)
    def blockio_error(exc: BlockioError) -> tuple[Response, int]:
        status, code = _error_status(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        resp = jsonify({"error": {"code": code, "message": str(exc)}})
        if code == "busy":
            resp.headers["Retry-After"] = "1"
        return resp, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        resp = jsonify({"error": {"code": (exc.name or "error").lower().replace(" ", "_"), "message": exc.description or exc.name}})
        for key, value in (exc.get_headers() or []):
            if key.lower() not in ("content-type", "content-length"):
                resp.headers[key] = value
        return resp, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        from blockio.serving.api import Busy

        if isinstance(exc, Busy):
            resp = jsonify({"error": {"code": "busy", "message": str(exc)}})
            resp.headers["Retry-After"] = "1"
            return resp, 503
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}}), 500

    return app
