"""Block writes over HTTP: ``PUT /api/datasets/<id>/layers/<layer>/block?offset=x,y,z``.

The handler only parses, checks that the caller is a writer (:mod:`blockio.serving.auth`) and calls
:func:`precomputed.block_writes.write_block`, which updates every mip of
the precomputed layer and of its OME-Zarr labels copy all at once or not at
all, and gives the layer a new version (retiring its cached chunks, and no
other layer's). A full disk answers 507 with nothing changed. On an
``s3://`` or ``gs://`` root ``store.root`` is the bucket's URL and the write
goes through :mod:`precomputed.block_writes_bucket` (a lease object for the
lock, chunks PUT in place and put back on failure).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from blockio.boxes import parse_xyz
from blockio.errors import Forbidden, InvalidRequest, from_precomputed
from blockio.store import Store

__all__ = ["bp", "write_block"]

bp = Blueprint("writes", __name__, url_prefix="/api")

Xyz = tuple[int, int, int]


def write_block(store: Store, dataset: str, layer: str, offset: Xyz, block: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Write a ``[z, y, x]`` integer block at ``offset`` (x, y, z) into a segmentation layer of ``store``.

    Errors of the writing side come back as :mod:`blockio.errors` classes
    (:class:`~blockio.errors.WriteFailed` for a full disk, 507).
    """
    from precomputed import block_writes
    from precomputed.errors import PrecomputedError

    store.info(dataset)  # blockio's own errors for a missing or malformed record
    try:
        return block_writes.write_block(store.root, dataset, layer, offset, block)
    except PrecomputedError as exc:
        raise from_precomputed(exc) from exc


@bp.put("/datasets/<dataset>/layers/<layer>/block")
def put_block(dataset: str, layer: str) -> tuple[Response, int]:
    """Write an ``.npy`` block into a segmentation layer (a writer: Bearer token, or a signed-in session with CSRF)."""
    from blockio.serving import auth

    if not auth.writes_enabled():
        raise Forbidden("writes are disabled: the server has no BLOCKIO_WRITE_TOKEN and no user with the writer role")
    auth.require("writer", action="write blocks")  # a user's token, the old BLOCKIO_WRITE_TOKEN, or a signed-in writer
    if "offset" not in request.args:
        raise InvalidRequest("offset=x,y,z is required")
    offset = parse_xyz(request.args["offset"], "offset")
    from blockio.serving.bodies import parse_npy

    settings = current_app.extensions["blockio.settings"]
    # the header's shape x dtype is checked against the limits and the body's length before allocating
    block = parse_npy(request.get_data(cache=False), max_voxels=settings.max_block_voxels, max_bytes=settings.max_block_bytes)
    store: Store = current_app.extensions["blockio.store"]
    return jsonify(write_block(store, dataset, layer, offset, block)), 200
