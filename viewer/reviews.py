"""Review verdicts: a table in the service's database (:mod:`viewer.db`), with a one-time import of ``ROOT/reviews.json``.

A verdict says what a reviewer found at one segment (or one position) of one
prediction layer: ``correct``, ``false_merge``, ``false_split`` or
``missing``, with a note, who gave it and when. Verdicts live in SQLite
under the root (``ROOT/review/review.sqlite``, WAL) or in PostgreSQL
(``BLOCKIO_DATABASE_URL``): one row per verdict, so storing one costs the
same at 100,000 verdicts as at none, and concurrent reviewers (threads,
workers, hosts) lose nothing. A ``reviews.json`` left by an older version is
imported once, on first use (the file is kept; a malformed one is reported
and nothing is imported until it is fixed or removed). Exported as JSON and
as CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blockio.database import Database, open_database
from blockio.errors import InvalidRequest, ReviewsUnavailable
from precomputed.catalog import now

from .db import ReviewTable

__all__ = ["CSV_FIELDS", "REVIEWS_NAME", "VERDICTS", "ReviewLog", "to_csv"]

REVIEWS_NAME = "reviews.json"
VERDICTS = ("correct", "false_merge", "false_split", "missing")
CSV_FIELDS = ("id", "time", "dataset", "layer", "segment", "position", "verdict", "note", "reviewer")
MAX_NOTE = 2000
MAX_NAME = 200
_IMPORTED = "reviews_json_imported"

Review = dict[str, Any]


def check_verdict(verdict: Any, segment: Any, position: Any) -> tuple[int | None, list[float] | None]:
    """The checked ``(segment, position)`` of a verdict (:class:`InvalidRequest` for anything wrong)."""
    if verdict not in VERDICTS:
        raise InvalidRequest(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if segment is None and position is None:
        raise InvalidRequest("a verdict needs a segment id or a position")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, int) or not 0 < segment < 2**64):
        raise InvalidRequest(f"segment must be a positive 64-bit id, got {segment!r}")
    if position is None:
        return segment, None
    if isinstance(position, (str, bytes)) or not isinstance(position, Sequence) or len(position) != 3:
        raise InvalidRequest(f"position must be (x, y, z), got {position!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) < 1e12 for v in position):
        raise InvalidRequest(f"position must be three finite numbers (x, y, z), got {position!r}")
    return segment, [round(float(v), 3) for v in position]


class ReviewLog:
    """The verdicts of one store root (or of the database ``database``, shared by every root's workers)."""

    def __init__(self, root: str | os.PathLike[str], database: Database | None = None) -> None:
        self.root = Path(root) if "://" not in os.fspath(root) else None
        self.database = database if database is not None else open_database(root=root)
        self.table = ReviewTable(self.database)
        self.path = self.root / REVIEWS_NAME if self.root is not None else None
        self._imported = False
        self._lock = threading.Lock()

    def all(self) -> list[Review]:
        """Every verdict, oldest first."""
        return self._ready().all()

    def for_dataset(self, dataset: str) -> list[Review]:
        """The verdicts of one dataset, newest first."""
        return list(reversed(self._ready().all(dataset)))

    def page(self, dataset: str | None, *, limit: int, before: int | None = None, layer: str | None = None) -> tuple[list[Review], int | None]:
        """Up to ``limit`` verdicts, newest first, and the ``before`` of the next page (see :meth:`ReviewTable.page`)."""
        return self._ready().page(dataset, limit=limit, before=before, layer=layer)

    def count(self, dataset: str | None = None, *, layer: str | None = None) -> int:
        """How many verdicts are stored (of one dataset, one layer)."""
        return self._ready().count(dataset, layer=layer)

    def add(
        self,
        *,
        dataset: str,
        layer: str,
        verdict: str,
        segment: int | None = None,
        position: Sequence[float] | None = None,
        note: str = "",
        reviewer: str = "",
    ) -> Review:
        """Store one verdict; returns it with its ``id`` and ``time``.

        ``segment`` is a segment id of ``layer``; ``position`` (x, y, z)
        voxels is stored when no segment is given (a ``missing`` object has
        none). One of the two is required. ``reviewer`` is the user's name.
        """
        segment, pos = check_verdict(verdict, segment, position)
        review: Review = {
            "id": uuid.uuid4().hex,
            "time": now(),
            "dataset": dataset,
            "layer": layer,
            "segment": segment,
            "position": pos,
            "verdict": verdict,
            "note": str(note)[:MAX_NOTE],
            "reviewer": str(reviewer)[:MAX_NAME],
        }
        self._ready().insert([review])
        return review

    def _ready(self) -> ReviewTable:
        """The table, after importing ``reviews.json`` once (in one transaction, so two workers import it once)."""
        if self._imported or self.path is None:
            return self.table
        with self._lock:
            if self._imported:
                return self.table
            self.table._ready()
            with self.database.read() as tx:
                done = bool(tx.execute("SELECT 1 FROM meta WHERE key = ?", (_IMPORTED,)))
            if not done and self.path.exists():
                with self.database.write() as tx:
                    if not tx.execute("SELECT 1 FROM meta WHERE key = ?", (_IMPORTED,)):
                        old = _load(self.path)
                        self.table.insert([_imported(r) for r in old], tx=tx)
                        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_IMPORTED, f"{len(old)} verdicts on {now()}"))
            self._imported = True
        return self.table


def _load(path: Path) -> list[Review]:
    """The verdicts of an old ``reviews.json``; :class:`ReviewsUnavailable` (naming the file) if it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewsUnavailable(f"{REVIEWS_NAME} cannot be read: {exc.__class__.__name__}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ReviewsUnavailable(f"{REVIEWS_NAME} is not valid JSON{where}; fix or remove it to import it") from exc
    if not isinstance(data, dict) or not isinstance(data.get("reviews"), list):
        raise ReviewsUnavailable(f"{REVIEWS_NAME}: the top level must be an object with a 'reviews' list")
    bad = next((i for i, r in enumerate(data["reviews"]) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ReviewsUnavailable(f"{REVIEWS_NAME}: reviews[{bad}] is not an object")
    return list(data["reviews"])


def _imported(old: Review) -> Review:
    """An old verdict as a row: its own id and time kept, fields made the right types."""
    segment = old.get("segment")
    position = old.get("position")
    ok_position = isinstance(position, list) and len(position) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in position)
    return {
        "id": str(old.get("id") or uuid.uuid4().hex),
        "time": str(old.get("time") or ""),
        "dataset": str(old.get("dataset") or ""),
        "layer": str(old.get("layer") or ""),
        "segment": segment if isinstance(segment, int) and not isinstance(segment, bool) and 0 < segment < 2**64 else None,
        "position": [float(v) for v in position] if ok_position and isinstance(position, list) else None,
        "verdict": str(old.get("verdict") or ""),
        "note": str(old.get("note") or "")[:MAX_NOTE],
        "reviewer": str(old.get("reviewer") or "")[:MAX_NAME],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    text = str(value)
    # a spreadsheet would run a cell starting with these as a formula
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def to_csv(reviews: list[Review]) -> str:
    """Verdicts as CSV with a header row (``position`` as ``x y z``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for review in reviews:
        writer.writerow([_cell(review.get(field)) for field in CSV_FIELDS])
    return out.getvalue()
