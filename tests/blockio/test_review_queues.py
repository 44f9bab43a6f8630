"""Review queues on both database engines: one conformance suite, subclassed for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from blockio.database import Database, PostgresDatabase, SQLiteDatabase
from blockio.errors import Conflict, InvalidRequest
from blockio.review_queues import ReviewQueues
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401

ITEMS = 30


def _plan(n: int = ITEMS) -> dict[str, Any]:
    items = [{"layer": "pred", "segments": [i + 1], "segment": i + 1, "position": [i, 0, 0], "voxels": 100 - i, "reason": "test", "kind": "largest"} for i in range(n)]
    return {"dataset": "demo", "layer": "pred", "strategy": "largest", "other": None, "parameters": {"size": n}, "items": items}


class QueueConformance:
    """What every engine's queues must do; subclasses give ``db``."""

    @pytest.fixture
    def queues(self, db: Database) -> ReviewQueues:
        queues = ReviewQueues(db)
        queues.create("q", _plan())
        return queues

    def test_items_go_out_in_order_once_each(self, queues: ReviewQueues) -> None:
        first = queues.next_item("q", "ann")
        assert first is not None and first["rank"] == 0 and first["state"] == "assigned"
        assert queues.next_item("q", "ann") == first  # asked again: the same
        second = queues.next_item("q", "bob")
        assert second is not None and second["rank"] == 1

    def test_reviewers_asking_at_once_never_share_an_item(self, queues: ReviewQueues) -> None:
        taken: list[tuple[str, int]] = []
        errors: list[BaseException] = []

        def reviewer(name: str) -> None:
            try:
                while (item := queues.next_item("q", name)) is not None:
                    taken.append((name, item["id"]))
                    queues.close("q", item["id"], name, verdict="correct")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        ids = [item_id for _name, item_id in taken]
        assert len(ids) == len(set(ids)) == ITEMS
        queue = queues.get("q")
        assert queue is not None and queue["progress"] == {"open": 0, "assigned": 0, "done": ITEMS, "total": ITEMS}
        assert sum(r["done"] for r in queue["reviewers"].values()) == ITEMS

    def test_only_the_assignee_closes_or_releases(self, queues: ReviewQueues) -> None:
        item = queues.next_item("q", "ann")
        assert item is not None
        with pytest.raises(Conflict):
            queues.close("q", item["id"], "bob", verdict="correct")
        released = queues.release("q", item["id"], "ann")
        assert released["state"] == "open" and released["reviewer"] is None
        again = queues.next_item("q", "bob")
        assert again is not None and again["id"] == item["id"]
        done = queues.close("q", item["id"], "bob", verdict="false_merge", note="n")
        assert (done["state"], done["verdict"], done["note"]) == ("done", "false_merge", "n")
        with pytest.raises(Conflict):
            queues.release("q", item["id"], "bob")

    def test_replanning_needs_replace(self, queues: ReviewQueues) -> None:
        with pytest.raises(Conflict, match="--replace"):
            queues.create("q", _plan(3))
        summary = queues.create("q", _plan(3), replace=True)
        assert summary["progress"]["total"] == 3 and queues.names() == ["q"]
        with pytest.raises(InvalidRequest):
            queues.create("bad name", _plan(1))

    def test_an_empty_queue_hands_out_nothing(self, db: Database) -> None:
        queues = ReviewQueues(db)
        queues.create("empty", _plan(0))
        assert queues.next_item("empty", "ann") is None
        assert queues.get("missing") is None


class TestSQLiteQueues(QueueConformance):
    @pytest.fixture
    def db(self, tmp_path: Path) -> Database:
        return SQLiteDatabase(tmp_path / "review" / "review.sqlite")


@pytest.mark.postgres
class TestPostgresQueues(QueueConformance):
    @pytest.fixture
    def db(self, postgres_url: str) -> Any:  # noqa: F811
        database = PostgresDatabase(postgres_url)
        yield database
        database.close()
