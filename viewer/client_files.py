"""Neuroglancer's built client, served from the page's own origin: ``/neuroglancer/`` and its assets.

``GET /neuroglancer/``                 the viewer; its state is the URL fragment (``#!{json}``)
``GET /neuroglancer/<path>``           its static files (hashed names, cached for a year)

Until the client is built (:mod:`viewer.bundle`) the first request starts the
build in the background and every request answers 503 with ``Retry-After``;
a page that says so reloads itself, and a failed build (no node/npm) is shown
with its message.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory

from .bundle import NEUROGLANCER_VERSION, ClientBuilder, built_client

__all__ = ["bp", "client_assets", "get_client"]

bp = Blueprint("neuroglancer", __name__, url_prefix="/neuroglancer")

_RETRY_S = 3
_ASSET = re.compile(r'(?:src|href)="\./(assets/[A-Za-z0-9._-]+\.(js|css))"')
_YEAR_S = 365 * 24 * 3600


def get_client() -> ClientBuilder:
    return current_app.extensions["viewer.client"]  # type: ignore[no-any-return]


def client_assets() -> list[tuple[str, str]]:
    """``("script" | "style", "assets/<name>")`` that the built client's ``index.html`` loads first; none before it is built.

    The view page preloads them, so the client's 1.5 MB module is on its way
    while the page and the frame's own document are still loading.
    """
    folder = built_client_folder()
    if folder is None:
        return []
    text = (folder / "index.html").read_text(encoding="utf-8")
    return [("script" if ext == "js" else "style", name) for name, ext in _ASSET.findall(text)]


def built_client_folder() -> Path | None:
    """The built client's folder, without starting a build."""
    return built_client(get_client().cache)


def _not_built(client: ClientBuilder) -> Response:
    if client.error is not None:
        message, refresh = f"Neuroglancer's client could not be built: {client.error}", ""
        client.retry()  # a fixed machine (npm installed) builds on the next request
    else:
        message = f"Building Neuroglancer {NEUROGLANCER_VERSION}'s client (first use, about half a minute); this frame reloads itself."
        refresh = f'<meta http-equiv="refresh" content="{_RETRY_S}">'
    body = f'<!doctype html><meta charset="utf-8">{refresh}<title>neuroglancer</title><p id="client-status">{escape(message)}</p>'
    resp = Response(body, status=503, mimetype="text/html")
    resp.headers["Retry-After"] = str(_RETRY_S)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/")
def index() -> Response:
    client = get_client()
    folder = client.folder()
    if folder is None:
        return _not_built(client)
    resp = send_from_directory(folder, "index.html", max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/<path:name>")
def asset(name: str) -> Response:
    client = get_client()
    folder = client.folder()
    if folder is None:
        return _not_built(client)
    resp = send_from_directory(folder, name, max_age=_YEAR_S)  # 404 outside the folder or for a missing file
    if name.startswith("assets/"):  # content-hashed names: a new build has new names
        resp.headers["Cache-Control"] = f"public, max-age={_YEAR_S}, immutable"
    return resp
