"""Running independent tasks on Dask, with a progress bar.

``scheduler`` is ``"threads"`` (Dask's local threaded scheduler, the
default), ``"processes"`` (local process pool), ``"sync"`` (one thread, for
debugging) or a ``tcp://HOST:PORT`` address of a ``dask.distributed``
scheduler. Tasks must be module-level functions of picklable arguments so
the same plan runs on any of them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dask.callbacks import Callback
from tqdm import tqdm

from .errors import InvalidOption

__all__ = ["LOCAL_SCHEDULERS", "run_tasks"]

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("threads", "processes", "sync")


class _Progress(Callback):
    def __init__(self, bar: tqdm) -> None:
        super().__init__()
        self._bar = bar

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._bar.update(1)


def _bar(total: int, desc: str, progress: bool | None) -> tqdm:
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit="task", disable=not show, leave=False)


def run_tasks(
    func: Callable[..., Any],
    jobs: Sequence[Any],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    desc: str = "ingest",
) -> list[Any]:
    """``[func(job) for job in jobs]``, in parallel, results in job order.

    Parameters
    ----------
    scheduler
        See the module docstring; ``None`` means ``"threads"``.
    workers
        Local worker count (default: the number of CPUs).
    progress
        Show a bar; ``None`` shows it only on a terminal.
    """
    if not jobs:
        return []
    scheduler = scheduler or "threads"
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise InvalidOption(f"--workers must be at least 1, got {workers}")
    if scheduler.startswith("tcp://") or scheduler.startswith("tls://"):
        return _run_distributed(func, jobs, scheduler, progress, desc)
    if scheduler not in LOCAL_SCHEDULERS:
        raise InvalidOption(f"unknown scheduler {scheduler!r}: use {', '.join(LOCAL_SCHEDULERS)} or tcp://HOST:PORT")
    from dask.base import compute
    from dask.delayed import delayed

    tasks = [delayed(func, pure=False)(job) for job in jobs]
    with _bar(len(jobs), desc, progress) as bar, _Progress(bar):
        return list(compute(*tasks, scheduler=scheduler, num_workers=workers))


def _run_distributed(func: Callable[..., Any], jobs: Sequence[Any], address: str, progress: bool | None, desc: str) -> list[Any]:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InvalidOption("a dask.distributed scheduler needs the 'dask' extra: pip install 'blockio[dask]'") from exc
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise InvalidOption(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        futures = client.map(func, jobs, pure=False)
        with _bar(len(jobs), desc, progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        return list(client.gather(futures))
    finally:
        client.close()
