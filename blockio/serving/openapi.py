"""The OpenAPI 3 document of the service, at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from blockio.errors import ERRORS

__all__ = ["ERROR_RESPONSE", "PAGE_PATHS", "bp", "document"]

bp = Blueprint("openapi", __name__)

_ERROR = {
    "description": "JSON error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "description": "stable: " + ", ".join(f"{cls.code} ({cls.status})" for cls in ERRORS) + ", or an HTTP error's name"},
                            "message": {"type": "string"},
                        },
                    }
                },
            }
        }
    },
}

ERROR_RESPONSE = _ERROR
"""The JSON error answer, for pages that document their own paths."""

_XYZ = {"type": "string", "pattern": r"^-?\d{1,9},-?\d{1,9},-?\d{1,9}$", "example": "0,0,0"}
_SIZE = {"type": "string", "pattern": r"^[1-9]\d{0,8},[1-9]\d{0,8},[1-9]\d{0,8}$", "example": "128,128,128"}
_ID = {"name": "dataset", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}}


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document."""
    from blockio.serving.embeddings import openapi_paths as embedding_paths

    block_headers = {
        "X-Block-Shape": {"description": "array shape, comma-separated, in X-Block-Axes order", "schema": {"type": "string"}},
        "X-Block-Dtype": {"description": "numpy dtype name", "schema": {"type": "string"}},
        "X-Block-Axes": {"description": "zyx, or czyx with several channels", "schema": {"type": "string", "enum": ["zyx", "czyx"]}},
        "X-Block-Offset": {"description": "x,y,z of the block's first voxel (the clipped offset with boundary=clip)", "schema": {"type": "string"}},
        "ETag": {"schema": {"type": "string"}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "blockio", "version": "1", "description": "Blocks of 3-D microscopy volumes. Coordinates are (x, y, z) voxels; arrays C-order [z, y, x]."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/datasets": {
                "get": {
                    "summary": "Catalog records, paged",
                    "parameters": [
                        _q("page", {"type": "integer", "minimum": 1, "maximum": 1 << 30, "default": 1}, "page number"),
                        _q("per_page", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "records per page"),
                    ],
                    "responses": {
                        "200": {
                            "description": "a page of records",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["items", "page", "per_page", "total"],
                                        "properties": {
                                            "items": {"type": "array", "items": {"type": "object"}},
                                            "page": {"type": "integer"},
                                            "per_page": {"type": "integer"},
                                            "total": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _ERROR,
                    },
                }
            },
            "/api/datasets/{dataset}": {
                "get": {
                    "summary": "One catalog record",
                    "parameters": [_ID],
                    "responses": {"200": {"description": "the record", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": _ERROR, "404": _ERROR, "503": _ERROR},
                }
            },
            "/api/datasets/{dataset}/block": {
                "get": {
                    "summary": "One block",
                    "parameters": [
                        _ID,
                        _q("offset", _XYZ, "x,y,z voxels at the mip", True),
                        _q("size", _SIZE, "x,y,z voxels at the mip", True),
                        _q("mip", {"type": "integer", "minimum": 0, "maximum": 64, "default": 0}, "pyramid level"),
                        _q("layer", {"type": "string", "default": "image"}, "layer name"),
                        _q("boundary", {"type": "string", "enum": ["error", "zero", "clip", "reflect"], "default": "error"}, "what to do past the volume's edge"),
                        _q("normalize", {"type": "string", "enum": ["", "zscore", "minmax", "percentile"]}, "normalise with the catalog statistics (float32)"),
                        _q("source", {"type": "string", "enum": ["precomputed", "zarr"], "default": "precomputed"}, "which store to read"),
                        _q("format", {"type": "string", "enum": ["npy", "raw"], "default": "npy"}, ".npy, or raw C-order bytes"),
                        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "the block",
                            "headers": block_headers,
                            "content": {"application/x-npy": {"schema": {"type": "string", "format": "binary"}}, "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "304": {"description": "not modified (If-None-Match)"},
                        "400": _ERROR,
                        "404": _ERROR,
                        "413": _ERROR,
                        "500": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/api/datasets/{dataset}/layers/{layer}/block": {
                "put": {
                    "summary": "Write a block into a segmentation layer",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _ID,
                        {"name": "layer", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}},
                        _q("offset", _XYZ, "x,y,z voxels at mip 0", True),
                    ],
                    "requestBody": {"required": True, "description": "one .npy array [z, y, x] of integer labels", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {
                        "200": {"description": "written", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "400": _ERROR,
                        "401": _ERROR,
                        "403": _ERROR,
                        "404": _ERROR,
                        "413": _ERROR,
                        "429": _ERROR,
                        "503": _ERROR,
                        "507": _ERROR,
                    },
                }
            },
            "/precomputed/{dataset}/{layer}/{path}": {
                "get": {
                    "summary": "A file of a precomputed layer (Neuroglancer, TensorStore, CloudVolume)",
                    "parameters": [
                        _ID,
                        {"name": "layer", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "the file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}, "application/json": {"schema": {}}}},
                        "206": {"description": "a byte range", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}, "application/json": {"schema": {}}}},
                        "304": {"description": "not modified"},
                        "404": _ERROR,
                        "416": _ERROR,
                    },
                }
            },
            **embedding_paths(_ERROR),
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
    }


#: ``app.extensions[PAGE_PATHS]``: OpenAPI paths an installed page adds (``{"/api/...": {...}}``)
PAGE_PATHS = "blockio.openapi_paths"


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    doc = document()
    doc["paths"].update(current_app.extensions.get(PAGE_PATHS, {}))
    return jsonify(doc)
