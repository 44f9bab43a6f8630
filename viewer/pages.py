"""The review page: the dataset table (``/``) and linked Neuroglancer views (``/view/<id>``).

Routes
------
``GET /``                           catalog table, ``?q=`` filter, ``?page=``, ``?per_page=``
``GET /thumb/<id>/<plane>.png``     xy / xz thumbnail of the image layer (cached)
``GET /view/<id>``                  ``?layout=overlay&pred=<layer>`` or ``?layout=compare&pred=a,b``, and
                                    ``&position=x,y,z&segments=a,b&queue=<name>&item=<id>`` (:mod:`viewer.opening`)
``GET /view/<id>/state.json``       the same query: the Neuroglancer state that view opens with
``POST /view/<id>/review``          a verdict on segments (or a position) the browser read from its viewer

A view keeps no state on the server: the page embeds Neuroglancer's client
(:mod:`viewer.client_files`) with the state in the URL fragment, and the
page's script reads the selection and position from it in the browser.
``GET /reviews.json``, ``/reviews.csv``   every verdict (``?dataset=`` to filter)
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from blockio.errors import BlockioError, InvalidRequest, LayerNotFound, ReviewsUnavailable
from blockio.serving.api import get_store
from blockio.serving.auth import require
from blockio.serving.bodies import parse_json_object
from blockio.serving.live import live_layers
from precomputed.validate import missing_fields

from .opening import opening_state, review_layers, view_spec
from .reviews import VERDICTS, ReviewLog, to_csv
from .state import KEY_BINDINGS, key_label, state_url
from .thumbnails import thumbnail_png

__all__ = ["bp", "get_reviews"]

bp = Blueprint("viewer", __name__, template_folder="templates", static_folder="static", static_url_path="/static/viewer")

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 200
MAX_SEGMENTS_PER_VERDICT = 100


def get_reviews() -> ReviewLog:
    return current_app.extensions["viewer.reviews"]  # type: ignore[no-any-return]


def _recent_reviews(dataset: str, limit: int) -> tuple[list[dict[str, Any]], int, str]:
    """A dataset's newest ``limit`` verdicts, how many it has, and ``""``; or none and the problem (the page still renders).

    One indexed query each: a page never loads every stored verdict.
    """
    try:
        log_ = get_reviews()
        items, _ = log_.page(dataset, limit=limit)
        return list(items), log_.count(dataset), ""
    except ReviewsUnavailable as exc:
        return [], 0, str(exc)


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        return min(hi, max(lo, int(raw)))
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from None


def histogram_path(histogram: dict[str, Any], *, width: int = 120, height: int = 32, bars: int = 60) -> str:
    """An SVG path of the histogram's bars (log-scaled counts, at most ``bars``), in a width x height box."""
    counts = [int(c) for c in histogram.get("counts", [])]
    group = max(1, math.ceil(len(counts) / bars))
    counts = [sum(counts[i : i + group]) for i in range(0, len(counts), group)]
    if not counts or max(counts) <= 0:
        return ""
    top = math.log1p(max(counts))
    step = width / len(counts)
    parts = [f"M0 {height}"]
    for i, count in enumerate(counts):
        h = height * math.log1p(count) / top
        parts.append(f"L{i * step:.1f} {height - h:.1f}L{(i + 1) * step:.1f} {height - h:.1f}")
    parts.append(f"L{width} {height}Z")
    return "".join(parts)


def _row(record: dict[str, Any], reviews: list[dict[str, Any]], review_count: int, live: list[str]) -> dict[str, Any]:
    provenance = record.get("provenance", {})
    layers = []
    for name, meta in sorted(record["layers"].items()):
        evaluation = meta.get("evaluation") if isinstance(meta.get("evaluation"), dict) else None
        metrics = []
        for key, value in sorted((evaluation or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.append((key, f"{value:.4g}"))
            elif isinstance(value, (str, bool)) or value is None:
                metrics.append((key, str(value)))
        layers.append({"name": name, "type": meta.get("type"), "metrics": metrics})
    segs = [layer["name"] for layer in layers if layer["type"] == "segmentation"]
    compares = [(a, b) for i, a in enumerate(segs) for b in segs[i + 1 :]][:6]
    stats = record.get("stats", {})
    return {
        "id": record["id"],
        "record": record,
        "shape": record["shape"],
        "voxel_size": record["voxel_size"],
        "voxel_source": provenance.get("voxel_size", {}).get("source", "?"),
        "voxel_detail": provenance.get("voxel_size", {}).get("detail", ""),
        "dtype": record["dtype"],
        "imputed": missing_fields(record),  # the same list as `blockio catalog missing`
        "histogram": histogram_path(stats.get("histogram", {})),
        "percentiles": stats.get("percentiles", {}),
        "layers": layers,
        "segs": segs,
        "live": live if "image" in record["layers"] else [],
        "compares": compares,
        "reviews": reviews[:10],
        "review_count": review_count,
    }


@bp.get("/")
def index() -> str:
    store = get_store()
    q = request.args.get("q", "").strip()
    ids = store.datasets()
    if q:
        ids = [i for i in ids if q.lower() in i.lower()]
    per_page = _int_arg("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    pages = max(1, math.ceil(len(ids) / per_page))
    page = _int_arg("page", 1, 1, pages)
    chosen = ids[(page - 1) * per_page : page * per_page]
    rows, broken, reviews_problem = [], [], ""
    for dataset in chosen:
        reviews, review_count, problem = _recent_reviews(dataset, 10)
        reviews_problem = reviews_problem or problem
        try:
            rows.append(_row(store.info(dataset), reviews, review_count, live_layers(current_app)))
        except BlockioError as exc:  # a malformed record is listed with its problem, the rest are served
            broken.append((dataset, str(exc)))
    return render_template(
        "viewer_index.html",
        rows=rows,
        broken=broken,
        q=q,
        page=page,
        pages=pages,
        per_page=per_page,
        total=len(ids),
        verdicts=VERDICTS,
        reviews_problem=reviews_problem,
    )


@bp.get("/thumb/<dataset>/<plane>.png")
def thumbnail(dataset: str, plane: str) -> Response:
    data = thumbnail_png(get_store(), dataset, plane)
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "no-cache"
    resp.set_etag(hashlib.sha256(data).hexdigest()[:32])
    resp.make_conditional(request)
    return resp


def _client_assets() -> list[tuple[str, str]]:
    """(kind, URL) of the built client's script and styles, for the view page to preload before the frame asks."""
    from .client_files import client_assets

    return [(kind, url_for("neuroglancer.asset", name=name)) for kind, name in client_assets()]


@bp.get("/view/<dataset>")
def view(dataset: str) -> str:
    record, spec, query = view_spec(dataset)
    state = opening_state(record, spec, query)
    reviews, _, reviews_problem = _recent_reviews(dataset, 20)
    stable_url = url_for("viewer.view", dataset=dataset, **spec.query())  # type: ignore[arg-type]
    review_url = url_for("viewer.review", dataset=dataset)
    queue = None
    if query.queue is not None:
        queue = {
            "name": query.queue,
            "item": query.item,
            "nextUrl": url_for("review_queues.next_item", name=query.queue),
            "itemsUrl": url_for("review_queues.show_queue", name=query.queue) + "/items/",
        }
    view_config = {
        "state": state,
        "viewerPrefix": url_for("neuroglancer.index"),
        "stableUrl": stable_url,
        "reviewUrl": review_url,
        "preds": list(spec.segmentations),
        "queue": queue,
        "keyBindings": [[action, key, verdict] for action, (key, verdict) in KEY_BINDINGS.items()],
    }
    return render_template(
        "viewer_view.html",
        record=record,
        spec=spec,
        view_config=view_config,
        viewer_url=state_url(state, url_for("neuroglancer.index")),
        preload=_client_assets(),
        queue=queue,
        stable_url=stable_url,
        review_url=review_url,
        verdicts=VERDICTS,
        key_bindings=[(action, key, key_label(key), verdict) for action, (key, verdict) in KEY_BINDINGS.items()],
        reviews=reviews,
        reviews_problem=reviews_problem,
    )


@bp.get("/view/<dataset>/state.json")
def state_json(dataset: str) -> Response:
    record, spec, query = view_spec(dataset)
    return jsonify(opening_state(record, spec, query))


def _text(form: Any, name: str) -> str:
    """A form or JSON field that must be a string (a JSON list or object is a 400, not a 500)."""
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got a JSON {type(value).__name__}")
    return value


def _segments(form: Any) -> list[int]:
    """``segments``: a JSON list of ids, or a form's comma-separated text."""
    raw = form.get("segments")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise InvalidRequest(f"segments must be comma-separated segment ids, got {raw[:100]!r}") from None
    if not isinstance(raw, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 2**64 for s in raw):
        raise InvalidRequest("segments must be a list of positive 64-bit segment ids")
    if len(raw) > MAX_SEGMENTS_PER_VERDICT:
        raise InvalidRequest(f"{len(raw)} segments are selected; select at most {MAX_SEGMENTS_PER_VERDICT}")
    return sorted(set(raw))


def _position(form: Any, record: dict[str, Any]) -> list[int] | None:
    """``position``: (x, y, z) voxels inside the volume (a JSON list, or a form's ``x,y,z``)."""
    raw = form.get("position")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        raw = raw.split(",")
    try:
        pos = [int(v) if isinstance(v, (int, str)) and not isinstance(v, bool) else None for v in raw]
    except (TypeError, ValueError):
        pos = [None]
    if len(pos) != 3 or None in pos or not all(0 <= v < s for v, s in zip(pos, record["shape"], strict=True)):  # type: ignore[operator]
        raise InvalidRequest(f"position must be (x, y, z) voxels inside {record['shape']}, got {str(raw)[:100]}")
    return pos  # type: ignore[return-value]


@bp.post("/view/<dataset>/review")
def review(dataset: str) -> Response | WerkzeugResponse:
    user = require("reviewer", action="store a verdict")  # CSRF was checked before the route (blockio.serving.auth)
    form: Any = parse_json_object(request.get_data(cache=False)) if request.is_json else request.form
    record = get_store().info(dataset)
    preds = review_layers(record)
    layer = _text(form, "layer") or (preds[0] if preds else "")
    if layer not in preds:
        raise LayerNotFound(f"layer {layer!r} is not a segmentation layer of {dataset!r} ({', '.join(preds) or 'none'})")
    verdict = _text(form, "verdict")
    note = _text(form, "note")
    reviewer = user.name  # who gave it is the signed-in user, never a form field
    segments, position = _segments(form), _position(form, record)
    log_ = get_reviews()
    if segments:
        stored = [log_.add(dataset=dataset, layer=layer, verdict=verdict, segment=s, note=note, reviewer=reviewer) for s in segments]
    elif position is not None:
        stored = [log_.add(dataset=dataset, layer=layer, verdict=verdict, position=position, note=note, reviewer=reviewer)]
    else:
        raise InvalidRequest("a verdict needs the selected segments or a position (x, y, z)")
    if request.is_json or request.accept_mimetypes.best == "application/json":
        return jsonify({"stored": stored})
    return redirect(url_for("viewer.index", q=dataset) + f"#ds-{dataset}", code=303)


def _filtered() -> list[dict[str, Any]]:
    dataset = request.args.get("dataset")
    reviews = get_reviews().all()
    return [r for r in reviews if r.get("dataset") == dataset] if dataset else reviews


@bp.get("/reviews.json")
def reviews_json() -> Response:
    return jsonify({"reviews": _filtered()})


@bp.get("/reviews.csv")
def reviews_csv() -> Response:
    resp = Response(to_csv(_filtered()), mimetype="text/csv")
    resp.headers["Content-Disposition"] = "attachment; filename=reviews.csv"
    return resp
