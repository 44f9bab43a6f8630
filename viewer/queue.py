"""Review queues over HTTP: a reviewer takes the next item, looks at it, gives a verdict.

Queues are planned with ``blockio review plan`` and stored in the service's
database (:mod:`blockio.review_queues`); every worker and host hands out from
the same rows, so two reviewers never get the same item.

Routes (JSON; the ``POST`` ones need a reviewer or stronger, signed in with
its CSRF token or with a Bearer token):

``GET  /api/review/queues``                                every queue and its progress
``GET  /api/review/queues/<name>``                         one queue: progress per state and per reviewer
``POST /api/review/queues/<name>/next``                    the caller's item (the same until closed), with its view and state URLs
``POST /api/review/queues/<name>/items/<id>/verdict``      ``{"verdict", "note"}``: stored as a verdict, the item closed
``POST /api/review/queues/<name>/items/<id>/release``      give the item back
``GET  /api/review/queues/<name>/export.json`` | ``.csv``  every item with its state, reviewer and verdict
``GET  /api/review/queues/<name>/annotations.json``        a Neuroglancer annotation layer: a point per item, the verdict as its description
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import neuroglancer
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request, url_for
from neuroglancer.json_utils import json_encoder_default

from blockio.errors import InvalidRequest
from blockio.review_queues import ReviewQueues, check_name
from blockio.serving.api import get_store
from blockio.serving.auth import require
from blockio.serving.bodies import parse_json_object

from .reviews import MAX_NOTE, VERDICTS, ReviewLog

__all__ = ["CSV_FIELDS", "annotation_layer", "bp", "get_queues", "init_app", "view_url"]

bp = Blueprint("review_queues", __name__, url_prefix="/api/review/queues")

CSV_FIELDS = ("id", "rank", "kind", "layer", "segment", "segments", "position", "voxels", "reason", "state", "reviewer", "assigned", "verdict", "note", "closed")
_MAX_BODY = 16 << 10


def get_queues() -> ReviewQueues:
    """The review queues of the app's database."""
    queues: ReviewQueues | None = current_app.extensions.get("viewer.queues")
    if queues is None:
        queues = current_app.extensions["viewer.queues"] = ReviewQueues(current_app.extensions["blockio.database"])
    return queues


def _queue(name: str) -> dict[str, Any]:
    found = get_queues().get(check_name(name))
    if found is None:
        abort(404, description=f"no review queue {name!r}; plan one with blockio review plan")
    return found


def view_url(queue: dict[str, Any], item: dict[str, Any], *, endpoint: str = "viewer.view") -> str:
    """The review page's view of an item: its layer (beside the compared one), centred on its place, its segments shown.

    ``position`` is the voxel (x, y, z) at mip 0 and ``segments`` the ids of
    the item's layer, as the view's query takes them; ``queue`` and ``item``
    let the page close the item with its verdict. ``endpoint``
    ``"viewer.state_json"`` gives the URL of that view's Neuroglancer state.
    """
    other = queue.get("other")
    layout, pred = ("compare", f"{item['layer']},{other}") if other else ("overlay", item["layer"])
    return url_for(
        endpoint,
        dataset=queue["dataset"],
        layout=layout,
        pred=pred,
        position=",".join(str(int(v)) for v in item["position"]),
        segments=",".join(str(int(s)) for s in item["segments"]),
        queue=queue["name"],
        item=str(int(item["id"])),
    )


def _with_view(queue: dict[str, Any], item: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "queue": queue["name"],
        "item": item,
        "view_url": view_url(queue, item) if item else None,
        "state_url": view_url(queue, item, endpoint="viewer.state_json") if item else None,
        "progress": queue["progress"],
    }


@bp.get("")
def list_queues() -> Response:
    queues = get_queues()
    return jsonify({"queues": [q for q in (queues.get(name) for name in queues.names()) if q is not None]})


@bp.get("/<name>")
def show_queue(name: str) -> Response:
    return jsonify(_queue(name))


@bp.post("/<name>/next")
def next_item(name: str) -> Response:
    user = require("reviewer", action="take a review item")
    _queue(name)
    item = get_queues().next_item(name, user.name)
    return jsonify(_with_view(_queue(name), item))


def _body() -> dict[str, Any]:
    body = parse_json_object(request.get_data(cache=False), max_bytes=_MAX_BODY) if request.get_data(cache=True) else {}
    unknown = sorted(set(body) - {"verdict", "note"})
    if unknown:
        raise InvalidRequest(f"unknown fields {', '.join(unknown)}: a queue verdict has verdict and note")
    for field in ("verdict", "note"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise InvalidRequest(f"{field} must be a JSON string")
    return body


@bp.post("/<name>/items/<int:item_id>/verdict")
def give_verdict(name: str, item_id: int) -> Response:
    user = require("reviewer", action="give a verdict")
    queue = _queue(name)
    body = _body()
    verdict, note = body.get("verdict") or "", body.get("note") or ""
    if verdict not in VERDICTS:
        raise InvalidRequest(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if len(note) > MAX_NOTE:
        raise InvalidRequest(f"note is {len(note)} characters; at most {MAX_NOTE}")
    queues = get_queues()
    item = queues.check_assigned(name, item_id, user.name)  # before the verdict is stored: 409 for someone else's item
    log_: ReviewLog = current_app.extensions["viewer.reviews"]
    review = log_.add(
        dataset=queue["dataset"], layer=item["layer"], verdict=verdict, segment=item["segment"], position=item["position"], note=note or f"queue {name}", reviewer=user.name
    )
    closed = queues.close(name, item_id, user.name, verdict=verdict, note=note)
    return jsonify({"item": closed, "review": review, "progress": _queue(name)["progress"]})


@bp.post("/<name>/items/<int:item_id>/release")
def release_item(name: str, item_id: int) -> Response:
    user = require("reviewer", action="give an item back")
    _queue(name)
    return jsonify({"item": get_queues().release(name, item_id, user.name)})


@bp.get("/<name>/export.json")
def export_json(name: str) -> Response:
    return jsonify({**_queue(name), "items": get_queues().items(name)})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text  # no spreadsheet formulas


@bp.get("/<name>/export.csv")
def export_csv(name: str) -> Response:
    _queue(name)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for item in get_queues().items(name):
        writer.writerow([_cell(item.get(field)) for field in CSV_FIELDS])
    resp = Response(out.getvalue(), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f"attachment; filename={name}.csv"
    return resp


def annotation_layer(queue: dict[str, Any], items: list[dict[str, Any]], voxel_size: list[float]) -> dict[str, Any]:
    """A Neuroglancer annotation layer (inline, ``local://annotations``): a point per item at its voxel's centre.

    Each point's description is the verdict (or the state, for an item not
    yet reviewed), the reviewer and why the item was chosen; its segments are
    linked to the item's segment ids. Paste it into a state's ``layers``.
    """
    dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[float(v) for v in voxel_size])
    points = []
    for item in items:
        said = f"{item['verdict']} by {item['reviewer']}" if item["state"] == "done" else item["state"]
        note = f" ({item['note']})" if item.get("note") else ""
        points.append(
            neuroglancer.PointAnnotation(
                id=str(item["id"]),
                point=[float(v) + 0.5 for v in item["position"]],
                description=f"{said}{note}: {item['reason']}",
                segments=[[str(s) for s in item["segments"]]],
            )
        )
    layer = neuroglancer.LocalAnnotationLayer(dimensions=dimensions, annotations=points, linked_segmentation_layer={"segments": str(queue["layer"])})
    # Neuroglancer's JSON holds NumPy ids; its own encoder makes them plain JSON
    plain = json.loads(json.dumps(layer.to_json(), default=json_encoder_default))
    return {"name": f"queue {queue['name']}", **plain}


@bp.get("/<name>/annotations.json")
def export_annotations(name: str) -> Response:
    queue = _queue(name)
    record = get_store().info(queue["dataset"])
    return jsonify(annotation_layer(queue, get_queues().items(name), record["voxel_size"]))


def progress_of_queues() -> list[dict[str, Any]]:
    """Every queue's progress, for the index page (none when the database is not usable)."""
    from blockio.errors import ReviewsUnavailable

    try:
        queues = get_queues()
        return [q for q in (queues.get(name) for name in queues.names()) if q is not None]
    except ReviewsUnavailable:
        return []


def init_app(app: Flask) -> None:
    """Register the queue routes and the index page's ``review_queues()`` and ``evaluation_lines()`` template functions."""
    if bp.name in app.blueprints:
        return
    from blockio.serving.openapi import PAGE_PATHS

    from .evaluation import evaluation_lines
    from .queue_openapi import OPENAPI_PATHS

    app.register_blueprint(bp)
    app.extensions.setdefault(PAGE_PATHS, {}).update(OPENAPI_PATHS)
    app.add_template_global(progress_of_queues, "review_queues")
    app.add_template_global(evaluation_lines, "evaluation_lines")
