"""Routes of the live model layers: ``/precomputed/<id>/live/<NAME>/info`` and its chunks.

The models come from :attr:`blockio.config.Settings.live_models`
(``blockio serve --model NAME=pkg.mod:fn``, ``BLOCKIO_LIVE_MODELS``); each is a
:class:`blockio.inference.live.LiveLayer` that computes a chunk on request
and keeps it in the store's cache tiers. Every chunk served is counted in
``/metrics`` as ``blockio_live_chunks_total{model, result}``, ``result``
``hit`` (the cache had it) or ``miss`` (computed for this request, or by a
request it waited for). The review page lists the layers with
:func:`live_layers`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from blockio.errors import LayerNotFound

__all__ = ["bp", "init_app", "live_layers"]

bp = Blueprint("live", __name__, url_prefix="/precomputed")

_EXTENSION = "blockio.live"
_shared_counter: Any = None


def _counter(registry: Any) -> Any:
    """The chunk counter in the app's registry, or (multiprocess mode, no registry) one per process."""
    from prometheus_client import Counter

    global _shared_counter
    if registry is not None:
        return Counter("blockio_live_chunks", "Live model layer chunks served, by model and result (hit: from the cache)", ["model", "result"], registry=registry)
    if _shared_counter is None:
        _shared_counter = Counter("blockio_live_chunks", "Live model layer chunks served, by model and result (hit: from the cache)", ["model", "result"], registry=None)
    return _shared_counter


def init_app(app: Flask) -> None:
    """Load every live model of the app's settings and register the routes (after the metrics)."""
    from blockio.inference.live import LiveLayer, parse_live_models

    settings = app.extensions["blockio.settings"]
    store = app.extensions["blockio.store"]
    layers = {m.name: LiveLayer(store, m) for m in parse_live_models(settings.live_models)}
    app.extensions[_EXTENSION] = layers
    app.extensions["blockio.live_counter"] = _counter(app.extensions.get("blockio.metrics"))
    app.register_blueprint(bp)


def live_layers(app: Flask) -> list[str]:
    """The layer names (``live/<NAME>``) the app serves beside every dataset's catalogued layers, sorted."""
    return [f"live/{name}" for name in sorted(app.extensions.get(_EXTENSION, {}))]


def _layer(name: str) -> Any:
    layer = current_app.extensions.get(_EXTENSION, {}).get(name)
    if layer is None:
        raise LayerNotFound(f"no live layer {name!r} (served: {', '.join(live_layers(current_app)) or 'none'})")
    return layer


@bp.get("/<dataset>/live/<name>/info")
def info(dataset: str, name: str) -> Response:
    response = jsonify(_layer(name).info(dataset))
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/<dataset>/live/<name>/<key>/<chunk>")
def chunk(dataset: str, name: str, key: str, chunk: str) -> Response:
    payload, hit = _layer(name).chunk(dataset, key, chunk)
    current_app.extensions["blockio.live_counter"].labels(name, "hit" if hit else "miss").inc()
    response = Response(payload, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "no-cache"
    return response
