"""The REST API blueprint, ``/api``.

Blocks are served as ``.npy`` (default) or raw C-order bytes with their shape,
dtype, axes and offset in ``X-Block-*`` headers. Errors are JSON everywhere:
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from blockio.boxes import BOUNDARIES, parse_xyz
from blockio.errors import InvalidRequest
from blockio.store import Store

__all__ = ["bp", "get_store"]

bp = Blueprint("api", __name__, url_prefix="/api")


class TooLarge(InvalidRequest):
    """A block over the configured maximum (413)."""


class Busy(Exception):
    """Every block worker is busy (503 with Retry-After)."""


def get_store() -> Store:
    return current_app.extensions["blockio.store"]  # type: ignore[no-any-return]


def _int_arg(name: str, default: int, lo: int = 0, hi: int = 1 << 30) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


@bp.get("/datasets")
def datasets() -> Response:
    """Catalog records, paged: ``?page=1&per_page=50``."""
    store = get_store()
    ids = store.datasets()
    page = _int_arg("page", 1, 1)
    per_page = _int_arg("per_page", 50, 1, 1000)
    chosen = ids[(page - 1) * per_page : page * per_page]
    items = []
    for dataset_id in chosen:
        try:
            items.append(store.info(dataset_id))
        except InvalidRequest:
            raise
        except Exception as exc:  # a malformed record is listed with its problem, the rest are served
            items.append({"id": dataset_id, "error": str(exc)})
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": len(ids)})


@bp.get("/datasets/<dataset>")
def dataset(dataset: str) -> Response:
    return jsonify(get_store().info(dataset))


def _etag(version: str, parts: list[str]) -> str:
    return '"' + hashlib.sha256("|".join([version, *parts]).encode()).hexdigest()[:32] + '"'


_slots_lock = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    sem = current_app.extensions.get("blockio.slots")
    if sem is None:
        with _slots_lock:
            sem = current_app.extensions.setdefault("blockio.slots", threading.BoundedSemaphore(current_app.config["BLOCKIO_MAX_INFLIGHT"]))
    return sem  # type: ignore[no-any-return]


@bp.get("/datasets/<dataset>/block")
def block(dataset: str) -> Response:
    """One block; see the OpenAPI document for the parameters."""
    store = get_store()
    args = request.args
    if "offset" not in args or "size" not in args:
        raise InvalidRequest("offset=x,y,z and size=x,y,z are required")
    offset = parse_xyz(args["offset"], "offset")
    size = parse_xyz(args["size"], "size", positive=True)
    mip = _int_arg("mip", 0, 0, 64)
    layer = args.get("layer", "image")
    boundary = args.get("boundary", "error")
    if boundary not in BOUNDARIES:
        raise InvalidRequest(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    normalize = args.get("normalize") or None
    source = args.get("source", "precomputed")
    fmt = args.get("format", "npy")
    if fmt not in ("npy", "raw"):
        raise InvalidRequest(f"format must be npy or raw, got {fmt!r}")
    record = store.info(dataset)
    meta = store.layers(dataset).get(layer)
    channels = int(record.get("channels", 1))
    voxels = size[0] * size[1] * size[2]
    itemsize = 4 if normalize else np.dtype(record["dtype"]).itemsize
    cfg = current_app.config
    if voxels > cfg["BLOCKIO_MAX_BLOCK_VOXELS"] or voxels * channels * itemsize > cfg["BLOCKIO_MAX_BLOCK_BYTES"]:
        raise TooLarge(
            f"block of {voxels} voxels x {channels} channel(s) exceeds the limit of {cfg['BLOCKIO_MAX_BLOCK_VOXELS']} voxels / "
            f"{cfg['BLOCKIO_MAX_BLOCK_BYTES']} bytes; request smaller blocks"
        )
    version = str((meta or {}).get("version", record.get("updated", "")))
    tag = _etag(version, [dataset, layer, source, str(mip), ",".join(map(str, offset)), ",".join(map(str, size)), boundary, normalize or "", fmt])
    if request.if_none_match.contains(tag.strip('"')):
        resp = Response(status=304)
        resp.headers["ETag"] = tag
        return resp
    sem = _slots()
    if not sem.acquire(timeout=cfg["BLOCKIO_QUEUE_TIMEOUT_S"]):
        raise Busy("every block worker is busy; retry shortly")
    try:
        result = store.read_block(dataset, offset, size, mip=mip, layer=layer, boundary=boundary, normalize=normalize, source=source)
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


@bp.put("/datasets/<dataset>/layers/<layer>/block")
def put_block(dataset: str, layer: str) -> tuple[Response, int]:
    """Write an ``.npy`` block into a segmentation layer (Bearer token required)."""
    import hmac
    import io

    from flask import abort

    from blockio.serving.writes import write_block

    token = current_app.config["BLOCKIO_WRITE_TOKEN"]
    if not token:
        abort(403, description="writes are disabled: the server has no BLOCKIO_WRITE_TOKEN")
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        abort(401, description="a valid 'Authorization: Bearer <token>' header is required to write")
    if "offset" not in request.args:
        raise InvalidRequest("offset=x,y,z is required")
    offset = parse_xyz(request.args["offset"], "offset")
    try:
        block = np.load(io.BytesIO(request.get_data(cache=False)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidRequest(f"the body must be one .npy array: {exc}") from exc
    return jsonify(write_block(get_store(), dataset, layer, offset, block)), 200


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
