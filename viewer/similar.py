""""Find similar" on the review page: the k nearest cells or segments as Neuroglancer layers.

``GET /view/<id>/similar.json?name=<set>&position=x,y,z&k=10[&layer=<segmentation>]``
``GET /view/<id>/similar.json?name=<set>&segment=<id>&k=10``
    The answer of :meth:`blockio.embeddings.EmbeddingSet.knn` (``results``) and
    the layers the page adds to its viewer: ``annotations``, a local
    annotation layer named ``similar`` with one point per neighbour (its
    centre; properties ``rank`` and ``distance``, and both in the
    description), and ``segments``, a segmentation layer named
    ``similar segments`` showing only the similar segments, coloured by rank
    (red for the nearest to yellow), with their ``ids`` and ``colors``.
    A segment set's neighbours are segments of its own layer; for a cell set
    they are the segments of ``layer`` under the neighbours' centres.

The view page includes ``_similar.html`` (the controls and the page's
:func:`similar_config`) and ``static/similar.js``, which asks this route at
the position the viewer shows or for the selected segment, adds the layers
to the panels that show the prediction, and adds each current PCA overview
layer of the dataset's cell sets (:mod:`blockio.embeddings.overview`) to
the view, hidden until the reviewer turns it on.

Layer sources are built from the catalog record, as :mod:`viewer.state` builds them.
"""

from __future__ import annotations

import colorsys
from typing import Any

import neuroglancer
from flask import Blueprint, Response, jsonify, request, url_for

from blockio.errors import InvalidRequest, LayerNotFound
from blockio.serving.api import get_store

from .state import layer_source

__all__ = ["ANNOTATION_LAYER", "MAX_K", "SEGMENT_LAYER", "annotation_layer", "bp", "overview_layer", "rank_colors", "similar_config"]

bp = Blueprint("similar", __name__)

ANNOTATION_LAYER = "similar"
SEGMENT_LAYER = "similar segments"
MAX_K = 100
OVERVIEW_OPACITY = 0.6
_RGB_SHADER = "void main() {\n  emitRGB(vec3(toNormalized(getDataValue(0)), toNormalized(getDataValue(1)), toNormalized(getDataValue(2))));\n}\n"


def rank_colors(count: int) -> list[str]:
    """``#rrggbb`` of ranks 1..count: red for the nearest to yellow for the farthest."""
    out = []
    for i in range(count):
        r, g, b = colorsys.hsv_to_rgb(1 / 6 * i / max(1, count - 1), 1.0, 1.0)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


def _dimensions(record: dict[str, Any]) -> neuroglancer.CoordinateSpace:
    return neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[float(v) for v in record["voxel_size"]])


def annotation_layer(record: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``similar`` local annotation layer: a point per result at its centre (mip-0 voxels), with rank and distance."""
    layer = neuroglancer.LocalAnnotationLayer(
        dimensions=_dimensions(record),
        annotation_properties=[
            neuroglancer.AnnotationPropertySpec(id="rank", type="uint32", description="1 is the nearest"),
            neuroglancer.AnnotationPropertySpec(id="distance", type="float32", description="in the set's metric"),
        ],
        annotations=[
            neuroglancer.PointAnnotation(
                id=f"similar-{r['rank']}",
                point=[float(v) for v in r["position"]["voxels"]],
                description=f"#{r['rank']} distance {r['distance']:.4g}",
                props=[int(r["rank"]), float(r["distance"])],
            )
            for r in results
        ],
        shader="void main() {\n  setColor(vec3(1.0, min(1.0, float(prop_rank()) / 10.0), 0.0));\n  setPointMarkerSize(10.0);\n}\n",
    )
    return {"name": ANNOTATION_LAYER, **layer.to_json()}


def _segments_layer(dataset: str, layer: str, ids: list[int]) -> dict[str, Any]:
    colors = rank_colors(len(ids))
    seg = neuroglancer.SegmentationLayer(
        source=layer_source(request.host_url, dataset, layer),
        segments=ids,
        segment_colors={i: c for i, c in zip(ids, colors, strict=True)},
        selected_alpha=0.7,
        not_selected_alpha=0.0,
    )
    return {"name": SEGMENT_LAYER, "layer": layer, "ids": [str(i) for i in ids], "colors": {str(i): c for i, c in zip(ids, colors, strict=True)},
            "state": {"name": SEGMENT_LAYER, **seg.to_json()}}  # fmt: skip


def overview_layer(record: dict[str, Any], layer: str) -> dict[str, Any]:
    """An overview layer (PCA of a cell set as RGB) as a hidden Neuroglancer image layer."""
    image = neuroglancer.ImageLayer(source=layer_source(request.host_url, record["id"], layer), shader=_RGB_SHADER, opacity=OVERVIEW_OPACITY)
    return {"name": layer, "visible": False, **image.to_json()}


def similar_config(record: dict[str, Any], segmentations: list[str] | tuple[str, ...] = ()) -> dict[str, Any] | None:
    """What ``_similar.html`` and ``similar.js`` need for a view of ``record``; None when it has no embedding set.

    ``segmentations``: the view's prediction layers (the first is coloured for a cell set).
    """
    from blockio.embeddings.overview import overview_layers

    sets = record.get("embeddings") or {}
    if not sets:
        return None
    return {
        "url": url_for("similar.similar_json", dataset=record["id"]),
        "sets": [{"name": name, "granularity": e.get("granularity"), "segments": (e.get("input") or {}).get("segments"), "dimension": e.get("dimension"),
                  "model": (e.get("model") or {}).get("name")} for name, e in sorted(sets.items())],  # fmt: skip
        "colourLayer": segmentations[0] if segmentations else None,
        "overviews": [overview_layer(record, layer) for layer in overview_layers(record)],
        "annotationLayer": ANNOTATION_LAYER,
        "segmentLayer": SEGMENT_LAYER,
    }


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    return {"similar_config": similar_config}


def _k() -> int:
    raw = request.args.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        raise InvalidRequest(f"k must be an integer, got {raw[:40]!r}") from None
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _position() -> list[float] | None:
    raw = request.args.get("position")
    if not raw:
        return None
    try:
        pos = [float(v) for v in raw.split(",")]
    except ValueError:
        pos = []
    if len(pos) != 3:
        raise InvalidRequest(f"position must be x,y,z voxels, got {raw[:100]!r}")
    return pos


def _segment() -> int | None:
    raw = request.args.get("segment")
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**64:
        raise InvalidRequest(f"segment must be a positive 64-bit segment id, got {raw[:40]!r}")
    return int(raw)


def _segments_under(dataset: str, layer: str, results: list[dict[str, Any]]) -> list[int]:
    """The segment ids of ``layer`` under each result's centre, in rank order, each once, background left out."""
    store = get_store()
    ids: list[int] = []
    for r in results:
        x, y, z = (int(v) for v in r["position"]["voxels"])
        value = int(store.read_block(dataset, (x, y, z), (1, 1, 1), layer=layer).reshape(-1)[0])
        if value and value not in ids:
            ids.append(value)
    return ids


@bp.get("/view/<dataset>/similar.json")
def similar_json(dataset: str) -> Response:
    store = get_store()
    record = store.info(dataset)
    sets = record.get("embeddings") or {}
    name = request.args.get("name") or (sorted(sets)[0] if sets else "")
    sims = store.embeddings(dataset, name)  # LayerNotFound (404) names the sets there are
    position, segment = _position(), _segment()
    if (position is None) == (segment is None):
        raise InvalidRequest("give position=x,y,z (voxels) or segment=<id>, one of the two")
    if segment is not None and sims.granularity != "segment":
        raise InvalidRequest(f"set {name!r} has one vector per cell; find similar to a segment with a set per segment ({', '.join(n for n, e in sorted(sets.items()) if e.get('granularity') == 'segment') or 'none'})")
    answer = sims.knn(position=position, segment=segment, k=_k(), link_base=request.host_url)
    results = answer["results"]
    if sims.granularity == "segment":
        layer = sims.entry["input"]["segments"]
        ids = [int(r["segment"]) for r in results]
    else:
        layer = request.args.get("layer") or ""
        if layer and (record["layers"].get(layer) or {}).get("type") != "segmentation":
            raise LayerNotFound(f"dataset {dataset!r} has no segmentation layer {layer!r} to colour")
        ids = _segments_under(dataset, layer, results) if layer else []
    answer["annotations"] = annotation_layer(record, results)
    answer["segments"] = _segments_layer(dataset, layer, ids) if layer else None
    return jsonify(answer)
