"""How errors become answers: one table, JSON everywhere, nothing private revealed.

Every :class:`~blockio.errors.BlockioError` answers with its class's
``status`` and ``code`` (and ``headers``); an error of the writing side
(:mod:`precomputed.errors`) first becomes the class
:data:`~blockio.errors.PRECOMPUTED_ERRORS` names. The body is
``{"error": {"code": ..., "message": ...}}``. Messages speak of paths
relative to the store root, never of the server's own folders, and an
unexpected error says only that it happened (the server log has the rest).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from blockio.errors import BlockioError, from_precomputed
from precomputed.errors import PrecomputedError

__all__ = ["error_response", "init_app", "public_message"]

log = logging.getLogger(__name__)

# an absolute path or file:// URL of two or more segments, not inside a word or a relative path
_ABSOLUTE = re.compile(r"(?:file://)?(?<![\w.:/~-])/(?:[^\s/'\"(),:;]+/)+[^\s/'\"(),:;]*")


def public_message(text: str, root: str | os.PathLike[str] | None) -> str:
    """``text`` with paths inside ``root`` made relative to it and other absolute paths hidden."""
    if root is not None:
        roots = {os.fspath(root), os.path.realpath(root)}
        for base in sorted(roots, key=len, reverse=True):
            base = base.rstrip("/")
            for prefix in (f"file://{base}/", f"{base}/"):
                text = text.replace(prefix, "")
            for whole in (f"file://{base}", base):
                text = text.replace(whole, "the store root")
    return _ABSOLUTE.sub("<path>", text)


def _root() -> Path | None:
    store = current_app.extensions.get("blockio.store")
    return getattr(store, "root", None)


def error_response(exc: BlockioError) -> tuple[Response, int]:
    """The JSON answer of one error, by its class's ``status``, ``code`` and ``headers``."""
    if exc.status >= 500:
        log.error("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    resp = jsonify({"error": {"code": exc.code, "message": public_message(str(exc), _root())}})
    for key, value in exc.headers.items():
        resp.headers[key] = value
    return resp, exc.status


def init_app(app: Flask) -> None:
    """Answer every error of ``app`` with JSON from the one table."""

    @app.errorhandler(BlockioError)
    def blockio_error(exc: BlockioError) -> tuple[Response, int]:
        return error_response(exc)

    @app.errorhandler(PrecomputedError)
    def precomputed_error(exc: PrecomputedError) -> tuple[Response, int]:
        return error_response(from_precomputed(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = jsonify({"error": {"code": code, "message": public_message(exc.description or exc.name or "", _root())}})
        for key, value in exc.get_headers() or []:
            if key.lower() not in ("content-type", "content-length"):
                resp.headers[key] = value
        return resp, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": {"code": BlockioError.code, "message": f"internal error ({type(exc).__name__}); the server log has the details"}}), 500
