"""The JSON catalog: ``ROOT/catalog.json``, one record per dataset.

On a local root, writes take an exclusive file lock (``catalog.json.lock``),
re-read the file under the lock, change only the records asked for, and
replace the file atomically (temporary file in the same folder, fsync,
rename, fsync of the folder), so concurrent writers lose nothing and a crash
leaves either the old or the new catalog.

On a bucket root (``s3://``, ``gs://``) there is no lock server: a write reads
the object with its ETag or generation, changes the records asked for, and
puts it back only if it is still that version (S3 ``If-Match`` /
``If-None-Match``, GCS ``ifGenerationMatch``); on a conflict it reads again and
reapplies the change after a jittered back-off
(:func:`precomputed.storage.optimistic.commit`). An object PUT is atomic, so a
reader always sees a whole catalog. A file that is not valid JSON is never written over: the
error names its line and column. A record that fails the schema makes only
that dataset unavailable, with an error naming the field; so does a number
that is not finite (NaN, infinity: Python's ``json`` reads them, JSON has none).

Every layer record carries a ``version``, new on every write of that layer
(:func:`new_version`); caches key a layer's chunks by :func:`layer_version`,
so writing one layer never retires another layer's cached chunks.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .atomic import replace_file
from .errors import CatalogError, DatasetNotFound, InvalidOption, RootNotWritable

if TYPE_CHECKING:  # jsonschema and filelock load on first use: `blockio catalog list` and `--help` stay fast
    import jsonschema
    from filelock import FileLock

    from .storage import Storage

__all__ = ["CATALOG_NAME", "SCHEMA_VERSION", "Catalog", "layer_version", "new_version", "non_finite", "now", "record_errors", "schema"]

CATALOG_NAME = "catalog.json"
SCHEMA_VERSION = 1
LOCK_TIMEOUT_S = 120.0

Record = dict[str, Any]


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The catalog's JSON Schema (shipped as ``precomputed/schema/catalog.schema.json``)."""
    text = resources.files("precomputed").joinpath("schema/catalog.schema.json").read_text()
    return cast(dict[str, Any], json.loads(text))


@lru_cache(maxsize=1)
def _record_validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    full = schema()
    sub = {"$defs": full["$defs"], **full["$defs"]["record"]}
    return jsonschema.Draft202012Validator(sub, format_checker=jsonschema.FormatChecker())


def now() -> str:
    """UTC time stamp as stored in records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_version() -> str:
    """A layer version no other write has: UTC time to the nanosecond plus 32 random bits.

    Sorting by it sorts by time (to the clock's resolution); two writes in the
    same nanosecond, or in two processes, still differ.
    """
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z-{secrets.token_hex(4)}"


def layer_version(record: Record, layer: str) -> str:
    """The version of one layer of a record: what cache keys, ETags and thumbnails use.

    Records written before layers had versions fall back to the record's
    ``updated`` stamp (which changes on any write of the dataset).

    Raises
    ------
    KeyError
        The record has no such layer.
    """
    meta = record["layers"][layer]
    return str(meta.get("version") or record["updated"])


def _field(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def non_finite(value: Any, path: tuple[Any, ...] = ()) -> list[str]:
    """Every number in ``value`` that is NaN or infinite, as ``field: nan is not a finite number``."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{_field(path) or '(value)'}: {value} is not a finite number (JSON has no NaN or infinity)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite(v, (*path, k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite(v, (*path, i))]
    return []


def record_errors(record: Any) -> list[str]:
    """Every schema violation of one record, each naming the field (``voxel_size[2]: ...``).

    Numbers that are not finite count as violations: the schema's ``number``
    admits them, a catalog must not hold them.
    """
    errors = sorted(_record_validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    out = [f"{_field(err.absolute_path) or '(record)'}: {err.message}" for err in errors]
    return out + non_finite(record)


class Catalog:
    """The catalog of one store root: a local folder or a bucket prefix.

    Parameters
    ----------
    root
        The store root (a folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``);
        ``catalog.json`` lives directly inside it.

    Attributes
    ----------
    url
        The root as given (a folder's path, or the bucket URL).
    location
        Where the catalog is, for messages (``/data/root/catalog.json``,
        ``s3://bucket/prefix/catalog.json``).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from .storage import is_remote

        self._remote: Storage | None = None
        self._root: Path | None = None
        if is_remote(root):
            from .storage import open_root

            self._remote = open_root(str(root))
            self.url = self._remote.url
            self.location = f"{self.url}/{CATALOG_NAME}"
        else:
            self._root = Path(root)
            self.url = str(self._root)
            self.location = str(self._root / CATALOG_NAME)
        self._file_lock: FileLock | None = None

    @property
    def is_remote(self) -> bool:
        """Whether the catalog is an object in a bucket (optimistic commits) rather than a locked file."""
        return self._remote is not None

    @property
    def root(self) -> Path:
        """The local root folder. A bucket root has none: raises :class:`InvalidOption` (use ``url``)."""
        if self._root is None:
            raise InvalidOption(f"store root {self.url} is a bucket, not a folder on this machine")
        return self._root

    @property
    def path(self) -> Path:
        """``ROOT/catalog.json`` of a local root (see :attr:`root`)."""
        return self.root / CATALOG_NAME

    @property
    def _lock(self) -> FileLock:
        if self._file_lock is None:
            from filelock import FileLock

            self._file_lock = FileLock(str(self.root / (CATALOG_NAME + ".lock")), timeout=LOCK_TIMEOUT_S)
        return self._file_lock

    # reading ---------------------------------------------------------------
    def _read(self) -> str | None:
        if self._remote is not None:
            data = self._remote.get(CATALOG_NAME)
            if data is None:
                return None
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CatalogError(f"{self.location}: not UTF-8 text at byte {exc.start}; fix or move it away (it is never overwritten while malformed)") from exc
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CatalogError(f"{self.path}: cannot be read: {exc.strerror or exc}") from exc

    def _parse(self, text: str | None) -> dict[str, Any]:
        if text is None:
            return {"schema_version": SCHEMA_VERSION, "datasets": {}}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"{self.location}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                "fix or move it away (it is never overwritten while malformed)"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
            raise CatalogError(f"{self.location}: top level must be an object with a 'datasets' object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CatalogError(f"{self.location}: schema_version is {version!r}, this blockio reads {SCHEMA_VERSION}")
        return data

    def _load(self) -> dict[str, Any]:
        return self._parse(self._read())

    def ids(self) -> list[str]:
        """Every catalogued id, valid or not, sorted."""
        return sorted(self._load()["datasets"])

    def get(self, dataset_id: str) -> Record:
        """One validated record; a record that fails the schema raises CatalogError naming the field."""
        datasets = self._load()["datasets"]
        if dataset_id not in datasets:
            known = ", ".join(sorted(datasets)) or "none"
            raise DatasetNotFound(f"no dataset {dataset_id!r} in {self.location} (catalogued: {known})")
        record: Record = datasets[dataset_id]
        problems = record_errors(record)
        if problems:
            raise CatalogError(f"dataset {dataset_id!r} is unavailable: {problems[0]}")
        return record

    def records(self) -> Iterator[tuple[str, Record | None, list[str]]]:
        """``(id, record or None, problems)`` for every dataset; invalid ones have problems."""
        for dataset_id, record in sorted(self._load()["datasets"].items()):
            problems = record_errors(record)
            yield dataset_id, (None if problems else record), problems

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._load()["datasets"]

    def table(self) -> Any:
        """The metadata table across datasets (:mod:`precomputed.catalog_table`): a pandas DataFrame, or a list of dicts without pandas."""
        from .catalog_table import table

        return table(self.records())

    # writing ---------------------------------------------------------------
    def update(self, dataset_id: str, change: Callable[[Record | None], Record | None]) -> Record | None:
        """Apply ``change(old) -> new`` to one record; ``None`` removes it.

        The new record is validated before anything is written. Locally this
        runs once under the lock; on a bucket root ``change`` runs again on
        the newer record whenever another writer committed first, so it must
        depend only on its argument.

        Raises
        ------
        CatalogError
            The catalog is malformed (it is never overwritten then), or the new record fails the schema.
        precomputed.storage.optimistic.CommitConflict
            Bucket roots: other writers won every attempt for two minutes.
        """
        if self._remote is not None:
            return self._commit(self._remote, dataset_id, change)
        self._ensure_root()
        with self._lock:
            data = self._load()
            new = self._apply(data, dataset_id, change)
            self._write(data)
            return new

    def _apply(self, data: dict[str, Any], dataset_id: str, change: Callable[[Record | None], Record | None]) -> Record | None:
        new = change(data["datasets"].get(dataset_id))
        if new is None:
            data["datasets"].pop(dataset_id, None)
        else:
            problems = record_errors(new)
            if problems:
                raise CatalogError(f"refusing to write dataset {dataset_id!r}: {problems[0]}")
            data["datasets"][dataset_id] = new
        return new

    def _commit(self, storage: Storage, dataset_id: str, change: Callable[[Record | None], Record | None]) -> Record | None:
        from .storage.optimistic import commit

        def attempt(current: bytes | None) -> tuple[bytes, Record | None]:
            text = None if current is None else current.decode("utf-8", errors="strict")
            data = self._parse(text)
            new = self._apply(data, dataset_id, change)
            return self._serialise(data).encode("utf-8"), new

        try:
            return commit(storage, CATALOG_NAME, attempt, content_type="application/json")
        except UnicodeDecodeError as exc:
            raise CatalogError(f"{self.location}: not UTF-8 text at byte {exc.start}; fix or move it away (it is never overwritten while malformed)") from exc

    def put(self, record: Record) -> Record:
        """Insert or replace a record (its ``id`` is the key)."""
        self.update(record["id"], lambda _old: record)
        return record

    def remove(self, dataset_id: str) -> None:
        """Drop a record; the stores are not touched."""
        if dataset_id not in self:
            raise DatasetNotFound(f"no dataset {dataset_id!r} in {self.location}")
        self.update(dataset_id, lambda _old: None)

    def lock(self) -> FileLock:
        """The catalog's lock, for callers that must move stores and write the record as one step.

        Local roots only: a bucket root has no lock (:meth:`update` commits
        with a precondition instead) and raises :class:`InvalidOption`.
        """
        if self._remote is not None:
            raise InvalidOption(f"the catalog of {self.url} has no lock (a bucket root): commit with Catalog.update")
        self._ensure_root()
        return self._lock

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RootNotWritable(f"store root {self.root} cannot be created: {exc.strerror or exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise RootNotWritable(f"store root {self.root} is not writable")

    def _serialise(self, data: dict[str, Any]) -> str:
        # another record may hold one, read from a hand-edited file: name it rather than json's ValueError
        bad = non_finite(data)
        if bad:
            raise CatalogError(f"refusing to write {self.location}: {bad[0]}")
        return json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"

    def _write(self, data: dict[str, Any]) -> None:
        replace_file(self.path, self._serialise(data))
