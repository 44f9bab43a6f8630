"""Prometheus metrics of the service: requests, latency, bytes, cache.

Exposed at ``/metrics`` in the Prometheus text format. Two modes, chosen the
way prometheus_client chooses them, by ``PROMETHEUS_MULTIPROC_DIR`` in the
environment *before* prometheus_client is first imported:

- **one process** (``blockio serve``, tests): each Flask app has its own
  registry (``app.extensions["blockio.metrics"]``); the cache figures are read
  from the store when scraped.
- **every worker** (gunicorn, :mod:`blockio.serving.gunicorn_conf` sets the
  variable in the master): each worker writes its counters to files in that
  folder and ``/metrics``, whichever worker answers it, sums them all with
  :class:`prometheus_client.multiprocess.MultiProcessCollector`. The cache
  figures are per-process gauges summed over the live workers (``livesum``),
  refreshed after each request; the config removes a dead worker's gauges.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["CACHE_FIGURES", "CONTENT_TYPE", "MULTIPROC_VARIABLE", "init_app", "multiprocess_dir", "requests_per_worker"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CACHE_FIGURES = (("hits", "cache hits"), ("misses", "cache misses"), ("bytes", "bytes held"), ("evictions", "evictions"), ("errors", "errors"))
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def multiprocess_dir() -> str | None:
    """The folder the workers share their metrics through, or ``None`` in one-process mode."""
    return os.environ.get(MULTIPROC_VARIABLE) or os.environ.get(MULTIPROC_VARIABLE.lower()) or None


def requests_per_worker(folder: str | os.PathLike[str], route: str | None = None) -> dict[int, float]:
    """Requests each worker (by pid) has answered, read from the metric files of ``folder``.

    ``route`` (a Flask rule such as ``/healthz``) counts that route only. For
    checking how gunicorn spread the load; ``/metrics`` shows only the sum.
    """
    import glob
    import json

    from prometheus_client.mmap_dict import MmapedDict

    out: dict[int, float] = {}
    for path in glob.glob(os.path.join(os.fspath(folder), "counter_*.db")):
        pid = int(os.path.basename(path)[len("counter_") : -len(".db")])
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(path):  # type: ignore[no-untyped-call]
            _metric, name, labels, _help = json.loads(key)
            if name == "blockio_http_requests_total" and (route is None or labels.get("route") == route):
                out[pid] = out.get(pid, 0.0) + value
    return out


def _cache_figures(app: Flask) -> dict[str, dict[str, float]]:
    """``{figure: {tier: value}}`` of the app's store (numbers only)."""
    store = app.extensions.get("blockio.store")
    out: dict[str, dict[str, float]] = {name: {} for name, _help in CACHE_FIGURES}
    if store is None:
        return out
    for tier, stats in store.cache_stats().items():
        for name, _help in CACHE_FIGURES:
            value = stats.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name][tier] = float(value)
    return out


class _CacheCollector:
    """The cache figures of this process, read when scraped (one-process mode)."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Any:
        figures = _cache_figures(self._app)
        for name, help_text in CACHE_FIGURES:
            family = GaugeMetricFamily(f"blockio_cache_{name}", f"Chunk cache {help_text}, per tier", labels=["tier"])
            for tier, value in figures[name].items():
                family.add_metric([tier], value)
            yield family


class _Instruments:
    """The request metrics, in a registry of the app's own or (multiprocess) in the shared files."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("blockio_http_requests", "HTTP requests by route and status", ["route", "method", "status"], registry=registry)
        self.latency = Histogram("blockio_http_request_seconds", "Request latency by route", ["route"], buckets=_BUCKETS, registry=registry)
        self.sent = Counter("blockio_http_sent_bytes", "Response body bytes by route", ["route"], registry=registry)
        self.cache: dict[str, Gauge] = {}


_shared: _Instruments | None = None


def _shared_instruments() -> _Instruments:
    """One set of instruments per process in multiprocess mode (a metric name is one set of files)."""
    global _shared
    if _shared is None:
        shared = _Instruments(None)
        for name, help_text in CACHE_FIGURES:
            shared.cache[name] = Gauge(f"blockio_cache_{name}", f"Chunk cache {help_text}, per tier", ["tier"], registry=None, multiprocess_mode="livesum")
        _shared = shared
    return _shared


def _scrape_multiprocess() -> bytes:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def init_app(app: Flask) -> None:
    """Count every request and serve ``/metrics`` (summed over every worker in multiprocess mode)."""
    multiprocess = multiprocess_dir() is not None
    if multiprocess:
        instruments = _shared_instruments()
        app.extensions["blockio.metrics"] = None
    else:
        registry = CollectorRegistry()
        instruments = _Instruments(registry)
        registry.register(_CacheCollector(app))
        app.extensions["blockio.metrics"] = registry

    @app.before_request
    def _start() -> None:
        g.blockio_t0 = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        instruments.requests.labels(route, request.method, str(response.status_code)).inc()
        t0 = getattr(g, "blockio_t0", None)
        if t0 is not None:
            instruments.latency.labels(route).observe(time.perf_counter() - t0)
        if response.content_length:
            instruments.sent.labels(route).inc(response.content_length)
        if instruments.cache:
            for name, tiers in _cache_figures(app).items():
                for tier, value in tiers.items():
                    instruments.cache[name].labels(tier).set(value)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        body = _scrape_multiprocess() if multiprocess else generate_latest(app.extensions["blockio.metrics"])
        return Response(body, mimetype=CONTENT_TYPE)
