"""gunicorn settings for blockio's REST API and review page.

    gunicorn -c python:blockio.serving.gunicorn_conf 'blockio.serving:create_app()'

Options given on gunicorn's command line (``-w 4``, ``-b 0.0.0.0:9000``)
override these. What they do:

- **Threaded workers** (``gthread``, 8 threads each): block reads wait on
  storage, not on Python.
- **One listening socket per worker** (``reuse_port``: ``SO_REUSEPORT``): the
  kernel spreads new connections over the workers by their address. With the
  one socket the master shares, whichever worker woke first accepted a whole
  burst of keep-alive connections and kept them; ``benchmarks/bench_workers.py``
  measures both.
- **Keep-alive** of 5 s between requests, and at most 100 connections held per
  worker (``worker_connections``; past ``100 - threads`` kept alive, a worker
  closes a connection after its answer, so its client reconnects, perhaps to a
  less busy worker).
- **/metrics over every worker**: ``PROMETHEUS_MULTIPROC_DIR`` (a folder of
  your choice, else a new temporary one) is set in the master before any
  worker imports prometheus_client; its metric files are wiped when gunicorn
  starts and a dead worker's live gauges are removed
  (:func:`prometheus_client.multiprocess.mark_process_dead`); see
  :mod:`blockio.serving.metrics`.
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

bind = "0.0.0.0:8000"
workers = 2
worker_class = "gthread"
threads = 8
worker_connections = 100
keepalive = 5
reuse_port = True

_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
if not os.environ.get(_VARIABLE):
    # in the master, before any worker forks: every worker inherits the same folder
    os.environ[_VARIABLE] = tempfile.mkdtemp(prefix="blockio-metrics-")
_METRICS_DIR = os.environ[_VARIABLE]


def on_starting(server: Any) -> None:
    """Wipe the metric files of an earlier run (its counters would be added to this one's)."""
    os.makedirs(_METRICS_DIR, exist_ok=True)
    for path in glob.glob(os.path.join(_METRICS_DIR, "*.db")):
        os.remove(path)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (its counters stay: they were counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)  # type: ignore[no-untyped-call]
