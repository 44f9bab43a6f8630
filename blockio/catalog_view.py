"""A store's view of its catalog: the records read once per catalog version, each validated once.

A local catalog is read again when its file's mtime changes (one ``stat``
per call). A bucket has no cheap mtime, so a bucket root's catalog is read
again at most every :data:`REMOTE_CATALOG_TTL_S` seconds; a new writer's
layer is seen within that time, and its new layer version retires the
cached chunks of the old one.
"""

from __future__ import annotations

import time
from typing import Any

from blockio.errors import DatasetNotFound, DatasetUnavailable, StorageError
from precomputed.catalog import Catalog

__all__ = ["REMOTE_CATALOG_TTL_S", "CatalogView"]

REMOTE_CATALOG_TTL_S = 1.0
"""How long a bucket root's catalog is used before it is read again."""


class CatalogView:
    """The records of one catalog, cached by version.

    Parameters
    ----------
    catalog
        The root's :class:`~precomputed.catalog.Catalog`.
    remote
        Whether it lives in a bucket (re-read by time) rather than a file (re-read by mtime).
    """

    def __init__(self, catalog: Catalog, *, remote: bool) -> None:
        self.catalog = catalog
        self.remote = remote
        self._records: tuple[float, dict[str, Any]] | None = None
        self._read_at = 0.0  # monotonic time of the last read of a bucket root's catalog
        self._problems: dict[str, list[str]] = {}
        self._problems_stamp: object = None

    def records(self) -> dict[str, Any]:
        """``{id: record}`` of every dataset, valid or not."""
        if self.remote:
            return self._remote_records()
        try:
            stamp = self.catalog.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        cached = self._records
        if cached is None or cached[0] != stamp:
            self._records = cached = (stamp, self._load())
        return cached[1]

    def record(self, dataset: str) -> dict[str, Any]:
        """One validated record; :class:`DatasetNotFound` or :class:`DatasetUnavailable` (naming the field)."""
        from precomputed.catalog import record_errors

        records = self.records()
        if dataset not in records:
            raise DatasetNotFound(f"no dataset {dataset!r} in the catalog ({len(records)} datasets; datasets() lists them)")
        record = records[dataset]
        # validated once per catalog version: schema validation costs milliseconds, a block read must not
        problems = self._problems.get(dataset)
        if problems is None or self._problems_stamp is not self._records:
            if self._problems_stamp is not self._records:
                self._problems = {}
                self._problems_stamp = self._records
            problems = self._problems[dataset] = record_errors(record)
        if problems:
            raise DatasetUnavailable(f"dataset {dataset!r} is unavailable: {problems[0]}")
        return record  # type: ignore[no-any-return]

    def _remote_records(self) -> dict[str, Any]:
        cached = self._records
        now = time.monotonic()
        if cached is not None and now - self._read_at < REMOTE_CATALOG_TTL_S:
            return cached[1]
        data = self._load()
        self._read_at = now
        if cached is None or cached[1] != data:  # the same records keep their validation (keyed by identity)
            self._records = cached = (now, data)
        return cached[1]

    def _load(self) -> dict[str, Any]:
        from precomputed.errors import CatalogError, StoreError

        try:
            return self.catalog._load()["datasets"]  # type: ignore[no-any-return]
        except CatalogError as exc:
            raise DatasetUnavailable(str(exc)) from exc
        except StoreError as exc:  # the bucket cannot be read (permissions, network)
            raise StorageError(str(exc)) from exc
