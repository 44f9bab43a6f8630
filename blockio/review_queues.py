"""Review queues in the service's database (:mod:`blockio.database`): items handed out one at a time.

A queue is a named, ordered list of items chosen by ``blockio review plan``
(:func:`blockio.inference.review_plan.plan_review`). An item is ``open``,
``assigned`` to one reviewer, or ``done`` with that reviewer's verdict.

Handing out is atomic: :meth:`ReviewQueues.next_item` takes the first open
item and assigns it in one write transaction, so two reviewers never get the
same item, whichever worker or host answers them. On SQLite the transaction
is ``BEGIN IMMEDIATE`` (one writer at a time); on PostgreSQL the row is taken
with ``SELECT ... FOR UPDATE SKIP LOCKED``, so reviewers asking at once each
take a different row without waiting on each other. A reviewer who asks
again before closing their item gets the same item back (a reload loses
nothing); :meth:`ReviewQueues.release` gives it back to the queue.

The queue lives in the database, not in a file under ``ROOT/review/``,
because the database is what every worker already shares (SQLite under a
local root, PostgreSQL across hosts or on a bucket root), it gives the
row lock the hand-out needs, and the CLI, which lives in ``blockio``, reaches
it through the same module as the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from blockio.database import Database, Transaction
from blockio.errors import Conflict, InvalidRequest

__all__ = ["QUEUE_NAME", "SCHEMA", "STATES", "ReviewQueues", "check_name"]

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STATES = ("open", "assigned", "done")
SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS review_queues (
        name TEXT PRIMARY KEY,
        dataset TEXT NOT NULL,
        layer TEXT NOT NULL,
        strategy TEXT NOT NULL,
        other TEXT,
        parameters TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS review_items (
        id {serial},
        queue TEXT NOT NULL,
        rank BIGINT NOT NULL,
        item TEXT NOT NULL,
        state TEXT NOT NULL,
        reviewer TEXT,
        assigned TEXT,
        verdict TEXT,
        note TEXT,
        closed TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS review_items_by_state ON review_items (queue, state, rank)",
    "CREATE INDEX IF NOT EXISTS review_items_by_reviewer ON review_items (queue, reviewer, state)",
)
_COLUMNS = "id, queue, rank, item, state, reviewer, assigned, verdict, note, closed"


def _now() -> str:
    from precomputed.catalog import now

    return now()


def _row(row: Sequence[Any]) -> dict[str, Any]:
    """A stored item as JSON: the planned item, plus its id, state, reviewer and verdict."""
    item_id, queue, rank, item, state, reviewer, assigned, verdict, note, closed = row
    return {
        **json.loads(item),
        "id": int(item_id),
        "queue": queue,
        "rank": int(rank),
        "state": state,
        "reviewer": reviewer,
        "assigned": assigned,
        "verdict": verdict,
        "note": note,
        "closed": closed,
    }


def check_name(name: str) -> str:
    """``name`` if it can name a queue (letters, digits, ``.``, ``_``, ``-``; at most 64), else :class:`InvalidRequest`."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidRequest(f"a queue name is letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit), got {name!r}")
    return name


class ReviewQueues:
    """The review queues of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _ready(self) -> None:
        self.db.ensure_schema("review_queues", SCHEMA_VERSION, SCHEMA)

    def _lock_clause(self, *, skip_locked: bool = False) -> str:
        """PostgreSQL's row lock (SQLite's ``BEGIN IMMEDIATE`` already holds the whole file)."""
        if self.db.dialect != "postgresql":
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"

    def create(self, name: str, plan: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """Store a plan (:meth:`ReviewPlan.to_json`) as queue ``name``; returns its summary.

        An existing queue of that name is a :class:`Conflict` unless
        ``replace``, which drops its items (their verdicts stay in the verdict store).
        """
        check_name(name)
        self._ready()
        with self.db.write() as tx:
            if tx.execute("SELECT name FROM review_queues WHERE name = ?" + self._lock_clause(), (name,)):
                if not replace:
                    raise Conflict(f"queue {name!r} exists; give --replace to plan it again (its items and assignments are dropped)")
                tx.execute("DELETE FROM review_items WHERE queue = ?", (name,))
                tx.execute("DELETE FROM review_queues WHERE name = ?", (name,))
            tx.execute(
                "INSERT INTO review_queues (name, dataset, layer, strategy, other, parameters, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, plan["dataset"], plan["layer"], plan["strategy"], plan.get("other"), json.dumps(plan.get("parameters", {})), _now()),
            )
            tx.executemany(
                "INSERT INTO review_items (queue, rank, item, state) VALUES (?, ?, ?, 'open')",
                [(name, rank, json.dumps(item, sort_keys=True)) for rank, item in enumerate(plan["items"])],
            )
        found = self.get(name)
        assert found is not None  # written just now, in the same database
        return found

    def _queue(self, tx: Transaction, name: str) -> dict[str, Any] | None:
        rows = tx.execute("SELECT name, dataset, layer, strategy, other, parameters, created FROM review_queues WHERE name = ?", (name,))
        if not rows:
            return None
        qname, dataset, layer, strategy, other, parameters, created = rows[0]
        return {"name": qname, "dataset": dataset, "layer": layer, "strategy": strategy, "other": other, "parameters": json.loads(parameters), "created": created}

    def names(self) -> list[str]:
        """Every queue's name, sorted."""
        self._ready()
        with self.db.read() as tx:
            return [str(r[0]) for r in tx.execute("SELECT name FROM review_queues ORDER BY name")]

    def get(self, name: str) -> dict[str, Any] | None:
        """A queue and its progress (``None`` if there is none of that name).

        ``progress``: ``{"open", "assigned", "done", "total"}``;
        ``reviewers``: ``{name: {"assigned", "done", "verdicts": {verdict: n}}}``.
        """
        self._ready()
        with self.db.read() as tx:
            queue = self._queue(tx, name)
            if queue is None:
                return None
            rows = tx.execute("SELECT state, reviewer, verdict, COUNT(*) FROM review_items WHERE queue = ? GROUP BY state, reviewer, verdict", (name,))
        progress = {state: 0 for state in STATES}
        reviewers: dict[str, dict[str, Any]] = {}
        for state, reviewer, verdict, count in rows:
            progress[state] += int(count)
            if reviewer is not None:
                mine = reviewers.setdefault(reviewer, {"assigned": 0, "done": 0, "verdicts": {}})
                mine[state] += int(count)
                if verdict is not None:
                    mine["verdicts"][verdict] = mine["verdicts"].get(verdict, 0) + int(count)
        progress["total"] = sum(progress[s] for s in STATES)
        return {**queue, "progress": progress, "reviewers": dict(sorted(reviewers.items()))}

    def items(self, name: str) -> list[dict[str, Any]]:
        """Every item of a queue, in its order."""
        self._ready()
        with self.db.read() as tx:
            return [_row(r) for r in tx.execute(f"SELECT {_COLUMNS} FROM review_items WHERE queue = ? ORDER BY rank", (name,))]

    def item(self, name: str, item_id: int) -> dict[str, Any] | None:
        """One item of a queue, or ``None``."""
        self._ready()
        with self.db.read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM review_items WHERE queue = ? AND id = ?", (name, item_id))
        return _row(rows[0]) if rows else None

    def next_item(self, name: str, reviewer: str) -> dict[str, Any] | None:
        """The reviewer's open assignment in this queue, else the first open item, now assigned to them.

        ``None`` when nothing is left to hand out. Atomic across workers and
        hosts (see the module docstring).
        """
        if not reviewer:
            raise InvalidRequest("a reviewer name is needed to take an item")
        self._ready()
        with self.db.write() as tx:
            mine = tx.execute(f"SELECT {_COLUMNS} FROM review_items WHERE queue = ? AND reviewer = ? AND state = 'assigned' ORDER BY rank LIMIT 1", (name, reviewer))
            if mine:
                return _row(mine[0])
            free = tx.execute("SELECT id FROM review_items WHERE queue = ? AND state = 'open' ORDER BY rank LIMIT 1" + self._lock_clause(skip_locked=True), (name,))
            if not free:
                return None
            taken = tx.execute(
                f"UPDATE review_items SET state = 'assigned', reviewer = ?, assigned = ? WHERE id = ? AND state = 'open' RETURNING {_COLUMNS}",
                (reviewer, _now(), free[0][0]),
            )
        return _row(taken[0]) if taken else None

    def _assigned_to(self, tx: Transaction, name: str, item_id: int, reviewer: str) -> dict[str, Any]:
        rows = tx.execute(f"SELECT {_COLUMNS} FROM review_items WHERE queue = ? AND id = ?" + self._lock_clause(), (name, item_id))
        if not rows:
            raise InvalidRequest(f"queue {name!r} has no item {item_id}")
        item = _row(rows[0])
        if item["state"] != "assigned" or item["reviewer"] != reviewer:
            holder = f"assigned to {item['reviewer']}" if item["state"] == "assigned" else item["state"]
            raise Conflict(f"item {item_id} of queue {name!r} is {holder}, not assigned to {reviewer}; ask for the next item")
        return item

    def check_assigned(self, name: str, item_id: int, reviewer: str) -> dict[str, Any]:
        """The item, if it is assigned to ``reviewer`` (else :class:`Conflict`)."""
        self._ready()
        with self.db.read() as tx:
            return self._assigned_to(tx, name, item_id, reviewer)

    def close(self, name: str, item_id: int, reviewer: str, *, verdict: str, note: str = "") -> dict[str, Any]:
        """Record the verdict on an item assigned to ``reviewer``; the item is done."""
        self._ready()
        with self.db.write() as tx:
            self._assigned_to(tx, name, item_id, reviewer)
            rows = tx.execute(
                f"UPDATE review_items SET state = 'done', verdict = ?, note = ?, closed = ? WHERE id = ? RETURNING {_COLUMNS}",
                (verdict, note, _now(), item_id),
            )
        return _row(rows[0])

    def release(self, name: str, item_id: int, reviewer: str) -> dict[str, Any]:
        """Give an item assigned to ``reviewer`` back to the queue (open again, for anyone)."""
        self._ready()
        with self.db.write() as tx:
            self._assigned_to(tx, name, item_id, reviewer)
            rows = tx.execute(f"UPDATE review_items SET state = 'open', reviewer = NULL, assigned = NULL WHERE id = ? RETURNING {_COLUMNS}", (item_id,))
        return _row(rows[0])
