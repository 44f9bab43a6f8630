"""Review verdicts: ``ROOT/reviews.json``, beside the catalog.

A verdict says what a reviewer found at one segment (or one position) of one
prediction layer: ``correct``, ``false_merge``, ``false_split`` or
``missing``, with a note. Writes follow the catalog's discipline
(:mod:`precomputed.catalog`): an exclusive file lock, re-read under the lock,
append, write a temporary file in the same folder, fsync, rename, fsync the
folder; so concurrent reviewers lose nothing and a crash leaves the old or
the new file. Exported as JSON and as CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from blockio.errors import InvalidRequest, ReviewsUnavailable
from precomputed.atomic import replace_file
from precomputed.catalog import now

__all__ = ["CSV_FIELDS", "REVIEWS_NAME", "VERDICTS", "ReviewLog", "to_csv"]

REVIEWS_NAME = "reviews.json"
VERDICTS = ("correct", "false_merge", "false_split", "missing")
CSV_FIELDS = ("id", "time", "dataset", "layer", "segment", "position", "verdict", "note", "reviewer")
MAX_NOTE = 2000
_LOCK_TIMEOUT_S = 60.0

Review = dict[str, Any]


class ReviewLog:
    """The verdicts of one store root (``ROOT/reviews.json``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / REVIEWS_NAME
        self._lock = FileLock(str(self.root / (REVIEWS_NAME + ".lock")), timeout=_LOCK_TIMEOUT_S)
        self._cache: tuple[int, list[Review]] | None = None

    def all(self) -> list[Review]:
        """Every verdict, oldest first."""
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        cached = self._cache
        if cached is None or cached[0] != stamp:
            cached = self._cache = (stamp, self._load())
        return list(cached[1])

    def for_dataset(self, dataset: str) -> list[Review]:
        """The verdicts of one dataset, newest first."""
        return [r for r in reversed(self.all()) if r.get("dataset") == dataset]

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
        """Append one verdict; returns it with its ``id`` and ``time``.

        ``segment`` is a segment id of ``layer``; ``position`` (x, y, z)
        voxels is stored when no segment is given (a ``missing`` object has
        none). One of the two is required.
        """
        if verdict not in VERDICTS:
            raise InvalidRequest(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if segment is None and position is None:
            raise InvalidRequest("a verdict needs a segment id or a position")
        if segment is not None and (isinstance(segment, bool) or not isinstance(segment, int) or not 0 < segment < 2**64):
            raise InvalidRequest(f"segment must be a positive 64-bit id, got {segment!r}")
        pos = None if position is None else [round(float(v), 3) for v in position]
        if pos is not None and len(pos) != 3:
            raise InvalidRequest(f"position must be (x, y, z), got {position!r}")
        review: Review = {
            "id": uuid.uuid4().hex,
            "time": now(),
            "dataset": dataset,
            "layer": layer,
            "segment": segment,
            "position": pos,
            "verdict": verdict,
            "note": str(note)[:MAX_NOTE],
            "reviewer": str(reviewer)[:200],
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            reviews = self._load()
            reviews.append(review)
            self._write(reviews)
        return review

    def _load(self) -> list[Review]:
        """The stored verdicts; :class:`ReviewsUnavailable` (naming the file relative to the root) if malformed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ReviewsUnavailable(f"{REVIEWS_NAME} cannot be read: {exc.__class__.__name__}") from exc
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # never written over while malformed, as the catalog
            where = f" at line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else ""
            raise ReviewsUnavailable(f"{REVIEWS_NAME} is not valid JSON{where}; fix or remove it") from exc
        if not isinstance(data, dict) or not isinstance(data.get("reviews"), list):
            raise ReviewsUnavailable(f"{REVIEWS_NAME}: the top level must be an object with a 'reviews' list")
        bad = next((i for i, r in enumerate(data["reviews"]) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ReviewsUnavailable(f"{REVIEWS_NAME}: reviews[{bad}] is not an object")
        return list(data["reviews"])

    def _write(self, reviews: list[Review]) -> None:
        replace_file(self.path, json.dumps({"schema_version": 1, "reviews": reviews}, indent=1, allow_nan=False) + "\n")


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
