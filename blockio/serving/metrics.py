"""Prometheus metrics of the service: requests, latency, bytes, cache.

Each Flask app gets its own registry (``app.extensions["blockio.metrics"]``),
exposed at ``/metrics`` in the Prometheus text format.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["init_app"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _CacheCollector:
    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Any:
        store = self._app.extensions.get("blockio.store")
        if store is None:
            return
        for name, help_text in (("hits", "cache hits"), ("misses", "cache misses"), ("bytes", "bytes held"), ("evictions", "evictions"), ("errors", "errors")):
            family = GaugeMetricFamily(f"blockio_cache_{name}", f"Chunk cache {help_text}, per tier", labels=["tier"])
            for tier, stats in store.cache_stats().items():
                if name in stats:
                    family.add_metric([tier], float(stats[name]))
            yield family


def init_app(app: Flask) -> None:
    """Count every request and serve ``/metrics``."""
    registry = CollectorRegistry()
    requests = Counter("blockio_http_requests", "HTTP requests by route and status", ["route", "method", "status"], registry=registry)
    latency = Histogram(
        "blockio_http_request_seconds",
        "Request latency by route",
        ["route"],
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=registry,
    )
    sent = Counter("blockio_http_sent_bytes", "Response body bytes by route", ["route"], registry=registry)
    registry.register(_CacheCollector(app))
    app.extensions["blockio.metrics"] = registry

    @app.before_request
    def _start() -> None:
        g.blockio_t0 = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        requests.labels(route, request.method, str(response.status_code)).inc()
        t0 = getattr(g, "blockio_t0", None)
        if t0 is not None:
            latency.labels(route).observe(time.perf_counter() - t0)
        if response.content_length:
            sent.labels(route).inc(response.content_length)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE)
