"""Verdicts over the API: ``POST`` and ``GET /api/datasets/<id>/reviews``.

``POST`` takes a JSON object ``{"layer", "segment" | "position": [x, y, z],
"verdict", "note"}`` from a reviewer (or a stronger role): a Bearer token,
or the page's signed-in session with its CSRF token. The verdict records the
user's name and the time, and comes back with its ``id`` (201). ``GET``
pages them newest first: ``?per_page=100&before=<next>&layer=``. Neither
route answers other origins (no CORS headers), unlike the data routes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from blockio.errors import InvalidRequest, LayerNotFound
from blockio.serving.api import get_store
from blockio.serving.auth import require
from blockio.serving.bodies import parse_json_object
from blockio.serving.openapi import ERROR_RESPONSE
from blockio.serving.query import int_arg
from precomputed.ingest import validate_id

from .reviews import MAX_NOTE, VERDICTS, ReviewLog

__all__ = ["MAX_VERDICT_BYTES", "OPENAPI_PATHS", "bp"]

bp = Blueprint("reviews_api", __name__, url_prefix="/api")

MAX_VERDICT_BYTES = 16 << 10
"""The largest verdict body: a note of ``MAX_NOTE`` characters and the rest fit well inside."""
MAX_PER_PAGE = 1000


def _reviews() -> ReviewLog:
    return current_app.extensions["viewer.reviews"]  # type: ignore[no-any-return]


def _segmentation_layers(dataset: str) -> list[str]:
    record = get_store().info(validate_id(dataset))  # 404 for an unknown dataset
    return sorted(name for name, meta in record["layers"].items() if meta.get("type") == "segmentation")


@bp.get("/datasets/<dataset>/reviews")
def list_reviews(dataset: str) -> Response:
    """A page of this dataset's verdicts, newest first."""
    _segmentation_layers(dataset)
    per_page = int_arg("per_page", 100, 1, MAX_PER_PAGE)
    before = int_arg("before", None, 1, 2**62)
    layer = request.args.get("layer") or None
    log_ = _reviews()
    items, next_before = log_.page(dataset, limit=per_page, before=before, layer=layer)
    return jsonify({"items": items, "per_page": per_page, "total": log_.count(dataset, layer=layer), "next": next_before})


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


@bp.post("/datasets/<dataset>/reviews")
def add_review(dataset: str) -> tuple[Response, int]:
    """Store one verdict (a reviewer or stronger); 201 with the stored verdict."""
    user = require("reviewer", action="store a verdict")
    layers = _segmentation_layers(dataset)
    body = parse_json_object(request.get_data(cache=False), max_bytes=MAX_VERDICT_BYTES)
    unknown = sorted(set(body) - {"layer", "segment", "position", "verdict", "note"})
    if unknown:
        raise InvalidRequest(f"unknown fields {', '.join(unknown)}: a verdict has layer, segment or position, verdict, note")
    layer = _field(body, "layer", str)
    if layer not in layers:
        raise LayerNotFound(f"layer {layer!r} is not a segmentation layer of {dataset} ({', '.join(layers) or 'none'})")
    note = _field(body, "note", str, "")
    if len(note) > MAX_NOTE:
        raise InvalidRequest(f"note is {len(note)} characters; at most {MAX_NOTE}")
    stored = _reviews().add(
        dataset=dataset,
        layer=layer,
        verdict=_field(body, "verdict", str),
        segment=body.get("segment"),
        position=body.get("position"),
        note=note,
        reviewer=user.name,
    )
    return jsonify(stored), 201


_ID = {"name": "dataset", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}}
_REVIEW = {
    "type": "object",
    "required": ["id", "time", "dataset", "layer", "segment", "position", "verdict", "note", "reviewer"],
    "properties": {
        "id": {"type": "string"},
        "time": {"type": "string", "description": "UTC, ISO 8601"},
        "dataset": {"type": "string"},
        "layer": {"type": "string"},
        "segment": {"type": "integer", "nullable": True},
        "position": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3, "nullable": True, "description": "x, y, z voxels"},
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "note": {"type": "string"},
        "reviewer": {"type": "string", "description": "the user who gave it"},
    },
}
_ERRORS = {code: ERROR_RESPONSE for code in ("400", "401", "403", "404", "413", "429", "503")}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/datasets/{dataset}/reviews": {
        "get": {
            "summary": "Verdicts of a dataset, newest first, paged",
            "parameters": [
                _ID,
                {"name": "per_page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 100}},
                {"name": "before", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}, "description": "the previous page's next"},
                {"name": "layer", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "a page of verdicts",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items", "per_page", "total", "next"],
                                "properties": {
                                    "items": {"type": "array", "items": _REVIEW},
                                    "per_page": {"type": "integer"},
                                    "total": {"type": "integer"},
                                    "next": {"type": "integer", "nullable": True, "description": "pass as before= for the next page; null on the last"},
                                },
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Store a verdict (a reviewer: Bearer token, or the page's session with X-CSRF-Token)",
            "security": [{"bearer": []}],
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["layer", "verdict"],
                            "additionalProperties": False,
                            "properties": {
                                "layer": {"type": "string"},
                                "segment": {"type": "integer", "minimum": 1},
                                "position": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                                "verdict": {"type": "string", "enum": list(VERDICTS)},
                                "note": {"type": "string", "maxLength": MAX_NOTE},
                            },
                        }
                    }
                },
            },
            "responses": {"201": {"description": "stored", "content": {"application/json": {"schema": _REVIEW}}}, **_ERRORS},
        },
    }
}
