"""The embedding blueprint: ``/api/datasets/<id>/embeddings`` and its k-NN queries.

``GET /api/datasets/<id>/embeddings``                  the dataset's sets (catalog entries)
``GET /api/datasets/<id>/embeddings/<name>/knn``       ``?position=x,y,z`` | ``?segment=ID`` | ``?vector=a,b,...``,
                                                       ``&k=10&layer=&model=&region=x0,y0,z0,x1,y1,z1``
``GET /api/datasets/<id>/embeddings/<name>/vector``    ``?position=x,y,z``: the vector there

Answers are those of :meth:`blockio.embeddings.EmbeddingSet.knn` with
absolute links for the host the request came to. Keys and segment ids are
strings (JSON numbers lose integers past 2**53).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from blockio.errors import InvalidRequest
from blockio.serving.api import get_store

__all__ = ["bp", "openapi_paths"]

bp = Blueprint("embeddings", __name__, url_prefix="/api")


@bp.url_value_preprocessor
def _check_dataset(endpoint: str | None, values: dict[str, Any] | None) -> None:
    from precomputed.ingest import validate_id

    if values and "dataset" in values:
        validate_id(values["dataset"])  # InvalidDatasetId: 400 through the one table


def _numbers(name: str, count: int | None = None) -> list[float] | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        values = [float(v) for v in raw.split(",")]
    except ValueError:
        raise InvalidRequest(f"{name} must be comma-separated numbers, got {raw[:100]!r}") from None
    if count is not None and len(values) != count:
        raise InvalidRequest(f"{name} must have {count} numbers, got {len(values)}")
    return values


def _k() -> int:
    raw = request.args.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        raise InvalidRequest(f"k must be an integer, got {raw!r}") from None
    if not 1 <= k <= 1000:
        raise InvalidRequest(f"k must be between 1 and 1000, got {k}")
    return k


def _check_name(name: str) -> None:
    from blockio.embeddings.index import check_name

    check_name(name)


@bp.get("/datasets/<dataset>/embeddings")
def sets(dataset: str) -> Response:
    record = get_store().info(dataset)
    return jsonify({"dataset": dataset, "embeddings": record.get("embeddings") or {}})


@bp.get("/datasets/<dataset>/embeddings/<name>/knn")
def knn(dataset: str, name: str) -> Response:
    _check_name(name)
    position = _numbers("position", 3)
    vector = _numbers("vector")
    segment_raw = request.args.get("segment") or None
    segment: int | None = None
    if segment_raw is not None:
        if not segment_raw.isdigit():
            raise InvalidRequest(f"segment must be a non-negative integer id, got {segment_raw[:40]!r}")
        segment = int(segment_raw)
    region = _numbers("region", 6)
    where: dict[str, Any] = {"layer": request.args.get("layer") or None, "model": request.args.get("model") or None}
    if region is not None:
        where["region"] = (region[:3], region[3:])
    found = get_store().embeddings(dataset, name)
    answer = found.knn(vector, position=position, segment=segment, k=_k(), where=where, link_base=request.host_url)
    return jsonify(answer)


@bp.get("/datasets/<dataset>/embeddings/<name>/vector")
def vector(dataset: str, name: str) -> Response:
    _check_name(name)
    position = _numbers("position", 3)
    if position is None:
        raise InvalidRequest("position=x,y,z is required")
    found = get_store().embeddings(dataset, name)
    return jsonify({"dataset": dataset, "name": name, "position": position, "key": str(found.key_at(position)), "vector": [float(v) for v in found.vector_at(position)]})


_ID = {"name": "dataset", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def openapi_paths(error: dict[str, Any]) -> dict[str, Any]:
    """The blueprint's paths for the OpenAPI document (``error``: the JSON error answer)."""
    errors = {"400": error, "404": error, "503": error}
    return {
        "/api/datasets/{dataset}/embeddings": {"get": {"summary": "The dataset's embedding sets (catalog entries)", "parameters": [_ID], "responses": {"200": _json("the sets"), **errors}}},
        "/api/datasets/{dataset}/embeddings/{name}/knn": {
            "get": {
                "summary": "The k nearest cells or segments of one embedding set",
                "parameters": [
                    _ID,
                    _NAME,
                    _q("position", {"type": "string", "pattern": r"^\d{1,9}(\.\d+)?,\d{1,9}(\.\d+)?,\d{1,9}(\.\d+)?$"}, "x,y,z voxels of mip 0: the query is the vector there"),
                    _q("segment", {"type": "string", "pattern": r"^\d{1,20}$"}, "a segment id: the query is its vector"),
                    _q("vector", {"type": "string"}, "comma-separated D numbers"),
                    _q("k", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "how many neighbours"),
                    _q("layer", {"type": "string"}, "only rows from this source layer"),
                    _q("model", {"type": "string"}, "only rows from this model"),
                    _q("region", {"type": "string"}, "x0,y0,z0,x1,y1,z1 mip-0 voxels: only rows centred inside"),
                ],
                "responses": {"200": _json("rank, key, distance, position {voxels, nm}, box, link per result"), **errors},
            }
        },
        "/api/datasets/{dataset}/embeddings/{name}/vector": {
            "get": {
                "summary": "The vector of the cell or segment at a position",
                "parameters": [_ID, _NAME, _q("position", {"type": "string"}, "x,y,z voxels of mip 0")],
                "responses": {"200": _json("key and vector"), **errors},
            }
        },
    }

