"""The verdicts' table, on either engine of :mod:`blockio.database` (SQLite under the root, or PostgreSQL).

One schema for both engines, beside the users of :mod:`blockio.serving.users`
in the same database. A verdict is one row; ``seq`` numbers rows in the
order they were stored and pages them (``before=seq``), with an index on
``(dataset, seq)`` so a page, a count and an insert stay fast at any number
of verdicts. Segment ids are stored as text: they are unsigned 64-bit, and
neither engine has that integer type.

>>> table = ReviewTable(open_database(root=root))
>>> table.insert([review])
>>> items, next_before = table.page("demo", limit=100)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blockio.database import Database, Transaction

__all__ = ["COLUMNS", "REVIEW_SCHEMA", "ReviewTable"]

REVIEW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS reviews (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        dataset TEXT NOT NULL,
        layer TEXT NOT NULL,
        segment TEXT,
        x DOUBLE PRECISION,
        y DOUBLE PRECISION,
        z DOUBLE PRECISION,
        verdict TEXT NOT NULL,
        note TEXT NOT NULL,
        reviewer TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS reviews_by_dataset ON reviews (dataset, seq)",
)
SCHEMA_VERSION = 1

COLUMNS = ("seq", "id", "time", "dataset", "layer", "segment", "x", "y", "z", "verdict", "note", "reviewer")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM reviews"
_INSERT = "INSERT INTO reviews (id, time, dataset, layer, segment, x, y, z, verdict, note, reviewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"

Review = dict[str, Any]


def _row(review: Review) -> tuple[Any, ...]:
    segment = review.get("segment")
    pos = review.get("position") or (None, None, None)
    return (
        review["id"],
        review["time"],
        review["dataset"],
        review["layer"],
        None if segment is None else str(segment),
        *(None if v is None else float(v) for v in pos),
        review["verdict"],
        review["note"],
        review["reviewer"],
    )


def _review(row: Sequence[Any]) -> Review:
    _seq, id_, time, dataset, layer, segment, x, y, z, verdict, note, reviewer = row
    return {
        "id": id_,
        "time": time,
        "dataset": dataset,
        "layer": layer,
        "segment": None if segment is None else int(segment),
        "position": None if x is None else [float(x), float(y), float(z)],
        "verdict": verdict,
        "note": note,
        "reviewer": reviewer,
    }


class ReviewTable:
    """The ``reviews`` table of one database: rows in, pages out."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _ready(self) -> Database:
        self.database.ensure_schema("reviews", SCHEMA_VERSION, REVIEW_SCHEMA)
        return self.database

    def insert(self, reviews: Sequence[Review], *, tx: Transaction | None = None) -> None:
        """Store verdicts (dicts as :class:`viewer.reviews.ReviewLog` makes them); an ``id`` stored already is skipped."""
        if tx is not None:
            tx.executemany(_INSERT, [_row(r) for r in reviews])
            return
        with self._ready().write() as own:
            if len(reviews) == 1:
                own.execute(_INSERT, _row(reviews[0]))
            else:
                own.executemany(_INSERT, [_row(r) for r in reviews])

    def page(self, dataset: str | None, *, limit: int, before: int | None = None, layer: str | None = None) -> tuple[list[Review], int | None]:
        """Up to ``limit`` verdicts, newest first, stored before ``before`` (a ``seq``); and the ``before`` of the next page (``None``: last page)."""
        where, params = self._where(dataset, layer)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        with self._ready().read() as tx:
            rows = tx.execute(sql, [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return [_review(r) for r in rows], (int(rows[-1][0]) if more and rows else None)

    def count(self, dataset: str | None = None, *, layer: str | None = None) -> int:
        """How many verdicts are stored (of one dataset, of one layer)."""
        where, params = self._where(dataset, layer)
        with self._ready().read() as tx:
            rows = tx.execute("SELECT COUNT(*) FROM reviews" + (" WHERE " + " AND ".join(where) if where else ""), params)
        return int(rows[0][0])

    def all(self, dataset: str | None = None) -> list[Review]:
        """Every verdict (of one dataset), oldest first."""
        where, params = self._where(dataset, None)
        with self._ready().read() as tx:
            rows = tx.execute(_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq", params)
        return [_review(r) for r in rows]

    @staticmethod
    def _where(dataset: str | None, layer: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if dataset is not None:
            where.append("dataset = ?")
            params.append(dataset)
        if layer is not None:
            where.append("layer = ?")
            params.append(layer)
        return where, params
