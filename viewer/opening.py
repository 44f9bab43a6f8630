"""What a view opens on: the query of ``/view/<id>`` (layout, layers, place, segments, queue item) and its state.

``?layout=overlay&pred=<layer>`` or ``?layout=compare&pred=a,b`` choose the
panels (:func:`viewer.state.parse_view`); a prediction is a catalogued
segmentation layer or a live model layer the service serves
(``live/<NAME>``, :func:`blockio.serving.live.live_layers`).
``position=x,y,z`` (voxels) centres the view, ``segments=a,b`` selects those
ids of the first prediction (the others take the segments around the
position), and ``queue=<name>&item=<id>`` says which review queue item the
page is showing (:mod:`viewer.queue`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from blockio.errors import BlockioError, InvalidRequest
from blockio.review_queues import check_name
from blockio.serving.api import get_store
from blockio.serving.live import live_layers

from .state import ViewSpec, build_state, parse_view
from .visible import central_segments

__all__ = ["MAX_VIEW_SEGMENTS", "ViewQuery", "live_kinds", "opening_state", "review_layers", "view_query", "view_spec"]

log = logging.getLogger(__name__)

MAX_VIEW_SEGMENTS = 100


@dataclass(frozen=True)
class ViewQuery:
    """A view's place and queue item from the query (``None`` where it is not given)."""

    position: tuple[int, int, int] | None = None
    segments: tuple[int, ...] | None = None
    queue: str | None = None
    item: int | None = None


def live_kinds(dataset: str) -> dict[str, str]:
    """``{"live/<NAME>": "segmentation" | "image"}`` for the live layers this app serves over ``dataset``."""
    served: Mapping[str, Any] = current_app.extensions.get("blockio.live", {})  # blockio.serving.live's layers by name
    kinds = {}
    for name in live_layers(current_app):
        layer = served.get(name.removeprefix("live/"))
        try:
            kinds[name] = str(layer.geometry(dataset).kind) if layer is not None else "segmentation"
        except BlockioError as exc:  # a dataset the model cannot serve (no image layer, too large): not offered
            log.info("live layer %s is not offered for %s: %s", name, dataset, exc)
    return kinds


def review_layers(record: dict[str, Any]) -> list[str]:
    """The layers a verdict may name: the catalogued segmentation layers, then the live segmentation layers."""
    catalogued = sorted(name for name, meta in record["layers"].items() if meta.get("type") == "segmentation")
    return catalogued + [name for name, kind in live_kinds(record["id"]).items() if kind == "segmentation"]


def _ints(name: str, raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",")]
    except ValueError:
        raise InvalidRequest(f"{name} must be comma-separated integers, got {raw[:100]!r}") from None


def view_query(record: dict[str, Any]) -> ViewQuery:
    """``position``, ``segments``, ``queue`` and ``item`` of the request, checked against the record.

    Raises
    ------
    InvalidRequest
        A position outside the volume or not three integers, segment ids that
        are not positive 64-bit integers (at most ``MAX_VIEW_SEGMENTS``), a bad
        queue name or item id (400).
    """
    args = request.args
    position = segments = item = None
    if args.get("position"):
        pos = _ints("position", args["position"])
        if len(pos) != 3 or not all(0 <= v < s for v, s in zip(pos, record["shape"], strict=True)):
            raise InvalidRequest(f"position must be x,y,z voxels inside {record['shape']}, got {args['position'][:100]!r}")
        position = (pos[0], pos[1], pos[2])
    if args.get("segments"):
        ids = _ints("segments", args["segments"])
        if len(ids) > MAX_VIEW_SEGMENTS or not all(0 < s < 2**64 for s in ids):
            raise InvalidRequest(f"segments must be at most {MAX_VIEW_SEGMENTS} positive 64-bit segment ids")
        segments = tuple(ids)
    queue = check_name(args["queue"]) if args.get("queue") else None
    if args.get("item"):
        found = _ints("item", args["item"])
        if len(found) != 1 or found[0] < 1:
            raise InvalidRequest(f"item must be a queue item's id, got {args['item'][:100]!r}")
        item = found[0]
    return ViewQuery(position, segments, queue, item)


def view_spec(dataset: str) -> tuple[dict[str, Any], ViewSpec, ViewQuery]:
    """The record, the panels and the place of the request's view."""
    record = get_store().info(dataset)
    spec = parse_view(record, request.args.get("layout"), request.args.get("pred"), live=live_kinds(dataset))
    return record, spec, view_query(record)


def opening_state(record: dict[str, Any], spec: ViewSpec, query: ViewQuery) -> dict[str, Any]:
    """The state a view opens with, for the host the browser asked (never a fixed address)."""
    segments: dict[str, list[int]] = {}
    for i, name in enumerate(spec.segmentations):
        if i == 0 and query.segments is not None and name == spec.preds[0]:
            segments[name] = list(query.segments)
        elif not name.startswith("live/"):  # a live layer has no stored voxels to look at before it is computed
            segments[name] = central_segments(get_store(), record, name, centre=query.position)
    return build_state(record, spec, request.host_url, segments=segments, position=query.position).to_json()  # type: ignore[no-any-return]
