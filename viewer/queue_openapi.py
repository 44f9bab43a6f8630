"""The OpenAPI paths of the review queue routes (:mod:`viewer.queue`), added to ``/api/openapi.json`` by the page."""

from __future__ import annotations

from typing import Any

from blockio.serving.openapi import ERROR_RESPONSE

from .reviews import MAX_NOTE, VERDICTS

__all__ = ["OPENAPI_PATHS"]

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}
_ITEM_ID = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_ERRORS = {code: ERROR_RESPONSE for code in ("400", "401", "403", "404", "409", "413", "429", "503")}
_PROGRESS = {
    "type": "object",
    "required": ["open", "assigned", "done", "total"],
    "properties": {k: {"type": "integer"} for k in ("open", "assigned", "done", "total")},
}
_ITEM = {
    "type": "object",
    "required": ["id", "queue", "rank", "kind", "layer", "segment", "segments", "position", "reason", "state", "reviewer"],
    "properties": {
        "id": {"type": "integer"},
        "queue": {"type": "string"},
        "rank": {"type": "integer"},
        "kind": {"type": "string", "description": "why the item is there: largest, split, merge, random, ..."},
        "layer": {"type": "string"},
        "segment": {"type": "integer", "nullable": True},
        "segments": {"type": "array", "items": {"type": "integer"}},
        "position": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3, "description": "x, y, z voxels at mip 0"},
        "voxels": {"type": "integer", "nullable": True},
        "reason": {"type": "string"},
        "state": {"type": "string", "enum": ["open", "assigned", "done"]},
        "reviewer": {"type": "string", "nullable": True},
        "assigned": {"type": "string", "nullable": True},
        "verdict": {"type": "string", "nullable": True},
        "note": {"type": "string", "nullable": True},
        "closed": {"type": "string", "nullable": True},
    },
}
_QUEUE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "dataset", "layer", "strategy", "progress", "reviewers"],
    "properties": {
        "name": {"type": "string"},
        "dataset": {"type": "string"},
        "layer": {"type": "string"},
        "other": {"type": "string", "nullable": True},
        "strategy": {"type": "string"},
        "parameters": {"type": "object"},
        "created": {"type": "string"},
        "progress": _PROGRESS,
        "reviewers": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SESSION = "a reviewer: Bearer token, or the page's session with X-CSRF-Token"

OPENAPI_PATHS: dict[str, Any] = {
    "/api/review/queues": {
        "get": {
            "summary": "Every review queue and its progress",
            "responses": {"200": _json({"type": "object", "properties": {"queues": {"type": "array", "items": _QUEUE}}}, "the queues"), **_ERRORS},
        },
    },
    "/api/review/queues/{name}": {
        "get": {"summary": "One queue: progress per state and per reviewer", "parameters": [_NAME], "responses": {"200": _json(_QUEUE, "the queue"), **_ERRORS}},
    },
    "/api/review/queues/{name}/next": {
        "post": {
            "summary": f"The caller's item: the one they hold, else the first open one, now theirs ({_SESSION})",
            "security": [{"bearer": []}],
            "parameters": [_NAME],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["queue", "item", "view_url", "state_url", "progress"],
                        "properties": {
                            "queue": {"type": "string"},
                            "item": {**_ITEM, "nullable": True, "description": "null when nothing is left"},
                            "view_url": {"type": "string", "nullable": True, "description": "the review page centred on the item"},
                            "state_url": {"type": "string", "nullable": True, "description": "that view's Neuroglancer state (JSON)"},
                            "progress": _PROGRESS,
                        },
                    },
                    "the item",
                ),
                **_ERRORS,
            },
        },
    },
    "/api/review/queues/{name}/items/{item_id}/verdict": {
        "post": {
            "summary": f"Store the verdict on the caller's item and close it ({_SESSION})",
            "security": [{"bearer": []}],
            "parameters": [_NAME, _ITEM_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["verdict"],
                            "additionalProperties": False,
                            "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)}, "note": {"type": "string", "maxLength": MAX_NOTE}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json({"type": "object", "required": ["item", "review", "progress"], "properties": {"item": _ITEM, "review": {"type": "object"}, "progress": _PROGRESS}}, "stored and closed"),
                **_ERRORS,
            },
        },
    },
    "/api/review/queues/{name}/items/{item_id}/release": {
        "post": {
            "summary": f"Give the caller's item back to the queue ({_SESSION})",
            "security": [{"bearer": []}],
            "parameters": [_NAME, _ITEM_ID],
            "responses": {"200": _json({"type": "object", "properties": {"item": _ITEM}}, "open again"), **_ERRORS},
        },
    },
    "/api/review/queues/{name}/export.json": {
        "get": {
            "summary": "Every item of a queue with its state, reviewer and verdict",
            "parameters": [_NAME],
            "responses": {"200": _json({**_QUEUE, "properties": {**_QUEUE["properties"], "items": {"type": "array", "items": _ITEM}}}, "the queue and its items"), **_ERRORS},
        },
    },
    "/api/review/queues/{name}/export.csv": {
        "get": {"summary": "The same as CSV", "parameters": [_NAME], "responses": {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}, **_ERRORS}},
    },
    "/api/review/queues/{name}/annotations.json": {
        "get": {
            "summary": "A Neuroglancer annotation layer: a point per item, its verdict as the description",
            "parameters": [_NAME],
            "responses": {"200": _json({"type": "object"}, "an inline annotation layer"), **_ERRORS},
        },
    },
}
