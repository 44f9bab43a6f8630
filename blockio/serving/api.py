"""The REST API blueprint, ``/api``.

Blocks are served as ``.npy`` (default) or raw C-order bytes with their shape,
dtype, axes and offset in ``X-Block-*`` headers. Errors are JSON everywhere:
``{"error": {"code": ..., "message": ...}}`` (see :mod:`blockio.errors`).
A block request is validated whole (dataset, layer, source, mip, bounds,
normalisation, limits) before a conditional request is answered 304.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from blockio.boxes import BOUNDARIES, VoxelBox, check_bounds, parse_xyz
from blockio.config import Settings
from blockio.errors import Busy, DatasetUnavailable, InvalidRequest, OutOfBounds, TooLarge
from blockio.limits import check_block_size
from blockio.normalize import NORMALIZATIONS
from blockio.serving.json_provider import finite_record
from blockio.serving.query import int_arg
from blockio.store import Store
from precomputed.catalog import layer_version

__all__ = ["Busy", "TooLarge", "bp", "check_path_ids", "get_settings", "get_store"]

bp = Blueprint("api", __name__, url_prefix="/api")

# the blueprints whose URL variables <dataset> and <layer> are ids, checked before any route runs
ID_CHECKED_BLUEPRINTS = ("api", "writes")


def get_store() -> Store:
    """The store of the current app."""
    return current_app.extensions["blockio.store"]  # type: ignore[no-any-return]


def get_settings() -> Settings:
    """The settings of the current app (read once, by ``create_app``)."""
    return current_app.extensions["blockio.settings"]  # type: ignore[no-any-return]


def check_path_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Refuse a ``<dataset>`` or ``<layer>`` path segment that is not an id (400), e.g. ``"v\\n"``.

    Registered with ``app.url_value_preprocessor``; acts on the API's routes only.
    """
    from precomputed.ingest import ID_PATTERN, validate_id

    if not values or endpoint is None or endpoint.split(".", 1)[0] not in ID_CHECKED_BLUEPRINTS:
        return
    if "dataset" in values:
        validate_id(values["dataset"])  # InvalidDatasetId: 400 through the one table
    layer = values.get("layer")
    if layer is not None and (not ID_PATTERN.fullmatch(layer) or layer in (".", "..")):
        raise InvalidRequest(f"invalid layer name {layer!r}: use 1-128 characters of A-Z a-z 0-9 . _ -")


@bp.get("/datasets")
def datasets() -> Response:
    """Catalog records, paged: ``?page=1&per_page=50``; an unusable record is listed with its problem."""
    store = get_store()
    page = int_arg("page", 1, 1)
    per_page = int_arg("per_page", 50, 1, 1000)
    ids = store.datasets()
    items = []
    for dataset_id in ids[(page - 1) * per_page : page * per_page]:
        try:
            items.append(finite_record(dataset_id, store.info(dataset_id)))
        except DatasetUnavailable as exc:  # a malformed record is listed with its problem, the rest are served
            from blockio.serving.error_answers import public_message

            items.append({"id": dataset_id, "error": {"code": exc.code, "message": public_message(str(exc), store.root)}})
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": len(ids)})


@bp.get("/datasets/<dataset>")
def dataset(dataset: str) -> Response:
    return jsonify(finite_record(dataset, get_store().info(dataset)))


def _etag(version: str, parts: list[str]) -> str:
    return '"' + hashlib.sha256("|".join([version, *parts]).encode()).hexdigest()[:32] + '"'


_slots_lock = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    sem = current_app.extensions.get("blockio.slots")
    if sem is None:
        with _slots_lock:
            sem = current_app.extensions.setdefault("blockio.slots", threading.BoundedSemaphore(get_settings().max_inflight))
    return sem  # type: ignore[no-any-return]


def _validated_block(store: Store, settings: Settings, dataset: str) -> dict[str, Any]:
    """Every argument of a block read, checked as the read would check it, without reading a chunk."""
    args = request.args
    if "offset" not in args or "size" not in args:
        raise InvalidRequest("offset=x,y,z and size=x,y,z are required")
    offset = parse_xyz(args["offset"], "offset")
    size = parse_xyz(args["size"], "size", positive=True)
    mip = int_arg("mip", 0, 0, 64)
    layer = args.get("layer", "image")
    boundary = args.get("boundary", "error")
    if boundary not in BOUNDARIES:
        raise InvalidRequest(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    normalize = args.get("normalize") or None
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or empty, got {normalize!r}")
    source = args.get("source", "precomputed")
    fmt = args.get("format", "npy")
    if fmt not in ("npy", "raw"):
        raise InvalidRequest(f"format must be npy or raw, got {fmt!r}")
    meta = store.layers(dataset).get(layer)
    reader = store.reader(dataset, layer, source)  # LayerNotFound, a bad source
    if normalize and meta is not None and meta.get("type") != "image":
        raise InvalidRequest(f"layer {layer!r} is a {meta.get('type')} layer: normalisation applies to images only")
    # limits in bytes of the layer being read (a uint64 label block weighs four times a uint16 image's)
    check_block_size(size, channels=reader.channels, dtype=np.float32 if normalize else reader.dtype, max_voxels=settings.max_block_voxels, max_bytes=settings.max_block_bytes)
    bounds = reader.bounds(mip)  # a mip the layer does not have
    box = VoxelBox.from_offset_size(offset, size)
    check_bounds(box, bounds, boundary, mip)
    if boundary in ("clip", "reflect") and box.intersect(bounds).empty:
        raise OutOfBounds(f"box {box} (x, y, z) does not overlap the volume at mip {mip}, whose bounds are {bounds}")
    version = layer_version(store.info(dataset), layer)  # reader() above raised for a missing layer
    return {"offset": offset, "size": size, "mip": mip, "layer": layer, "boundary": boundary, "normalize": normalize, "source": source, "format": fmt, "version": version}


@bp.get("/datasets/<dataset>/block")
def block(dataset: str) -> Response:
    """One block; see the OpenAPI document for the parameters."""
    store = get_store()
    settings = get_settings()
    q = _validated_block(store, settings, dataset)
    offset, size, boundary, fmt = q["offset"], q["size"], q["boundary"], q["format"]
    tag = _etag(q["version"], [dataset, q["layer"], q["source"], str(q["mip"]), ",".join(map(str, offset)), ",".join(map(str, size)), boundary, q["normalize"] or "", fmt])
    if request.if_none_match.contains(tag.strip('"')):
        resp = Response(status=304)
        resp.headers["ETag"] = tag
        return resp
    sem = _slots()
    if not sem.acquire(timeout=settings.queue_timeout_s):
        raise Busy("every block worker is busy; retry shortly")
    try:
        result = store.read_block(dataset, offset, size, mip=q["mip"], layer=q["layer"], boundary=boundary, normalize=q["normalize"], source=q["source"])
    finally:
        sem.release()
    true_offset = offset
    if boundary == "clip":
        result, true_offset = result
    data = np.ascontiguousarray(result)
    axes = "czyx" if data.ndim == 4 else "zyx"
    header = _npy_header(data) if fmt == "npy" else b""
    length = len(header) + data.nbytes
    mimetype = "application/x-npy" if fmt == "npy" else "application/octet-stream"
    resp = Response(_body(header, data), mimetype=mimetype, direct_passthrough=True)
    resp.headers["Content-Length"] = str(length)
    resp.headers["X-Block-Shape"] = ",".join(map(str, data.shape))
    resp.headers["X-Block-Dtype"] = data.dtype.name
    resp.headers["X-Block-Axes"] = axes
    resp.headers["X-Block-Offset"] = ",".join(map(str, true_offset))
    resp.headers["ETag"] = tag
    resp.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return resp


def _body(header: bytes, data: np.ndarray) -> Any:
    # WSGI servers take bytes; pieces of 4 MiB bound the extra copy for large blocks
    if header:
        yield header
    view = memoryview(data).cast("B")  # type: ignore[arg-type]
    for i in range(0, len(view), 4 << 20):
        yield bytes(view[i : i + (4 << 20)])


def _npy_header(data: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(data))
    return buf.getvalue()
