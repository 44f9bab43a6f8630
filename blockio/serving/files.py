"""The precomputed file server: ``/precomputed/<id>/<layer>/<path>``.

Serves a catalogued layer's files to Neuroglancer, TensorStore and
CloudVolume over HTTP: CORS on every response (errors too), CloudVolume's
``*.gz`` chunk files with ``Content-Encoding: gzip``, ``Range`` requests
(206 / 416), ``ETag`` and ``Last-Modified``. Only files inside a catalogued
layer are served: ``..`` segments, encoded traversal, NUL bytes, backslashes,
absolute paths and symlinks that resolve outside the layer get 404 without
opening anything outside the root.

On a bucket root (``s3://``, ``gs://``) the same URLs are streamed from the
bucket (:mod:`blockio.serving.bucket_files`, which says why streaming and not
a redirect); the same path checks run before any key is built.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flask import Blueprint, Response, abort, send_file

from blockio.serving.api import get_store

__all__ = ["bp"]

bp = Blueprint("files", __name__, url_prefix="/precomputed")

_SAFE = re.compile(r"^[A-Za-z0-9._:\-/]+$")


def _layer_path(dataset: str, layer: str, subpath: str) -> str:
    """The catalogued layer's path inside the root; 404 for an unknown layer or an unsafe ``subpath``."""
    try:
        meta = get_store().layers(dataset)[layer]
    except Exception:  # unknown or unavailable dataset/layer: the same 404 as a missing file
        abort(404)
    if not subpath or not _SAFE.match(subpath) or subpath.startswith("/") or any(part in ("", ".", "..") for part in subpath.split("/")):
        abort(404)
    return str(meta["path"])


def _resolve(layer_path: str, subpath: str) -> tuple[Path, bool]:
    base = (Path(get_store().root) / layer_path).resolve()
    candidate = base / subpath
    for path, gz in ((candidate, False), (candidate.with_name(candidate.name + ".gz"), True)):
        try:
            real = path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError, OSError):
            continue
        if not real.is_relative_to(base) or not real.is_file():
            abort(404)
        return real, gz
    abort(404)


@bp.get("/<dataset>/<layer>/<path:subpath>")
def serve(dataset: str, layer: str, subpath: str) -> Response:
    layer_path = _layer_path(dataset, layer, subpath)
    name = subpath.rsplit("/", 1)[-1]
    mimetype = "application/json" if name in ("info", "provenance") or name.endswith(".json") else "application/octet-stream"
    storage = get_store().storage
    if not storage.is_local:
        from blockio.serving.bucket_files import serve_object

        return serve_object(storage, storage.join(layer_path, subpath), mimetype)
    path, gz = _resolve(layer_path, subpath)
    resp = send_file(os.fspath(path), mimetype=mimetype, conditional=True, etag=True, max_age=0)
    if gz:
        resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Accept-Ranges"] = "bytes"
    return resp
