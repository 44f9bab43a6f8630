"""The service's database on both engines: one conformance base class, subclassed for SQLite and PostgreSQL.

Verdicts and users round-trip, pages cover every row once, a failed
transaction leaves nothing, tokens are never stored in clear, the session
key is one for every worker, an old reviews.json is imported once, and
concurrent writers (threads, and two processes) lose no verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from blockio.database import Database, PostgresDatabase, SQLiteDatabase, open_database
from blockio.errors import Conflict, InvalidRequest, ReviewsUnavailable
from blockio.users import Users
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401
from viewer.reviews import ReviewLog

REPO = Path(__file__).resolve().parents[2]

_WRITER = """
import sys
from blockio.database import open_database
from viewer.reviews import ReviewLog
root, url, tag, n = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
log = ReviewLog(root, database=open_database(root=root, url=url))
for i in range(n):
    log.add(dataset="demo", layer="pred", verdict="correct", segment=i + 1, note=f"{tag}-{i}", reviewer=tag)
"""


class DatabaseConformance:
    """What every engine must do; subclasses give the ``url`` fixture (``""`` for SQLite under ``root``)."""

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "root"

    @pytest.fixture
    def database(self, root: Path, url: str) -> Database:
        return open_database(root=root, url=url or None)

    @pytest.fixture
    def log(self, root: Path, database: Database) -> ReviewLog:
        return ReviewLog(root, database=database)

    def test_a_verdict_round_trips(self, log: ReviewLog) -> None:
        big = 2**64 - 1
        a = log.add(dataset="demo", layer="pred", verdict="false_merge", segment=big, note="two cells", reviewer="ann")
        b = log.add(dataset="demo", layer="pred", verdict="missing", position=(1.25, 2, 3.5), reviewer="bob")
        log.add(dataset="other", layer="pred", verdict="correct", segment=5, reviewer="ann")
        assert log.all()[0] == a and a["segment"] == big and a["reviewer"] == "ann" and a["time"]
        assert log.for_dataset("demo") == [b, a] and b["position"] == [1.25, 2.0, 3.5] and b["segment"] is None
        assert log.count() == 3 and log.count("demo") == 2 and log.count("demo", layer="nope") == 0

    def test_bad_verdicts_are_refused_and_store_nothing(self, log: ReviewLog) -> None:
        for kwargs in ({"verdict": "great", "segment": 1}, {"verdict": "correct"}, {"verdict": "correct", "segment": 0}, {"verdict": "correct", "position": (1, 2)}, {"verdict": "correct", "position": (1, 2, float("nan"))}):
            with pytest.raises(InvalidRequest):
                log.add(dataset="demo", layer="pred", **kwargs)  # type: ignore[arg-type]
        assert log.count() == 0

    def test_pages_cover_every_verdict_once_newest_first(self, log: ReviewLog) -> None:
        for i in range(1, 251):
            log.add(dataset="demo", layer="pred" if i % 2 else "pred2", verdict="correct", segment=i)
        seen, before, pages = [], None, 0
        while True:
            items, before = log.page("demo", limit=100, before=before)
            seen += [r["segment"] for r in items]
            pages += 1
            if before is None:
                break
        assert pages == 3 and seen == list(range(250, 0, -1))
        items, _ = log.page("demo", limit=1000, layer="pred2")
        assert [r["segment"] for r in items] == list(range(250, 0, -2))

    def test_a_failed_transaction_leaves_nothing(self, database: Database, log: ReviewLog) -> None:
        log.count()  # the table exists
        with pytest.raises(RuntimeError), database.write() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("half", "done"))
            raise RuntimeError("crash mid-transaction")
        with database.read() as tx:
            assert tx.execute("SELECT value FROM meta WHERE key = ?", ("half",)) == []

    def test_the_schema_is_made_once_by_any_number_of_openers(self, root: Path, url: str) -> None:
        logs = [ReviewLog(root, database=open_database(root=root, url=url or None)) for _ in range(4)]
        threads = [threading.Thread(target=lg.count) for lg in logs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        logs[0].add(dataset="demo", layer="pred", verdict="correct", segment=1)
        assert all(lg.count() == 1 for lg in logs)

    def test_users_round_trip_and_tokens_are_hashed(self, database: Database) -> None:
        users = Users(database)
        ann, token = users.add("ann", "reviewer")
        assert token.startswith("blk_") and users.verify(token) == ann and users.verify(token) == ann  # cached the second time
        assert users.verify(token[:-1] + ("x" if token[-1] != "x" else "y")) is None and users.verify("nonsense") is None
        with pytest.raises(Conflict):
            users.add("ann", "admin")
        with pytest.raises(InvalidRequest):
            users.add("bad name", "reader")
        with pytest.raises(InvalidRequest):
            users.add("carl", "superuser")
        assert [(u.name, u.role) for u in users.list()] == [("ann", "reviewer")]
        assert users.any_at_least("reviewer") and not users.any_at_least("writer")
        secret = token.rsplit("_", 1)[1]
        with database.read() as tx:
            stored = " ".join(str(v) for row in tx.execute("SELECT * FROM users") for v in row)
        assert secret not in stored and token not in stored and "scrypt$" in stored
        assert users.remove("ann") and not users.remove("ann")
        assert users.verify(token) is None  # refused at once, cache or not

    def test_every_worker_gets_the_same_session_key(self, root: Path, url: str) -> None:
        keys = {Users(open_database(root=root, url=url or None)).secret_key() for _ in range(3)}
        assert len(keys) == 1 and len(keys.pop()) == 64

    def test_an_old_reviews_json_is_imported_once_and_kept(self, root: Path, url: str) -> None:
        root.mkdir(parents=True)
        old = [
            {"id": "a" * 32, "time": "2026-01-01T00:00:00+00:00", "dataset": "demo", "layer": "pred", "segment": 7, "position": None, "verdict": "correct", "note": "old", "reviewer": "x"},
            {"id": "b" * 32, "time": "2026-01-02T00:00:00+00:00", "dataset": "demo", "layer": "pred", "segment": None, "position": [1, 2, 3], "verdict": "missing", "note": "", "reviewer": ""},
        ]
        text = json.dumps({"schema_version": 1, "reviews": old})
        (root / "reviews.json").write_text(text)
        first = ReviewLog(root, database=open_database(root=root, url=url or None))
        assert [r["id"] for r in first.all()] == ["a" * 32, "b" * 32] and first.all()[1]["position"] == [1.0, 2.0, 3.0]
        first.add(dataset="demo", layer="pred", verdict="false_split", segment=9)
        again = ReviewLog(root, database=open_database(root=root, url=url or None))
        assert again.count() == 3 and (root / "reviews.json").read_text() == text

    def test_a_malformed_reviews_json_is_reported_not_imported(self, root: Path, url: str) -> None:
        root.mkdir(parents=True)
        (root / "reviews.json").write_text("{not json")
        log = ReviewLog(root, database=open_database(root=root, url=url or None))
        with pytest.raises(ReviewsUnavailable, match="reviews.json"):
            log.all()
        (root / "reviews.json").unlink()
        assert log.all() == []

    def test_threads_lose_no_verdict(self, log: ReviewLog) -> None:
        threads, per = 8, 25

        def work(t: int) -> None:
            for i in range(per):
                log.add(dataset="demo", layer="pred", verdict="correct", segment=t * 1000 + i + 1)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        segments = [r["segment"] for r in log.all()]
        assert len(segments) == threads * per and len(set(segments)) == threads * per

    def test_two_processes_lose_no_verdict(self, root: Path, url: str, log: ReviewLog) -> None:
        log.count()  # schema in place, as in a served app
        n = 60
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(root), url, tag, str(n)], cwd=REPO) for tag in ("p1", "p2")]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
        notes = sorted(r["note"] for r in log.all())
        assert notes == sorted(f"{tag}-{i}" for tag in ("p1", "p2") for i in range(n))


class TestSQLite(DatabaseConformance):
    @pytest.fixture
    def url(self) -> str:
        return ""

    def test_it_is_one_wal_file_under_the_root(self, root: Path, database: Database, log: ReviewLog) -> None:
        log.add(dataset="demo", layer="pred", verdict="correct", segment=1)
        assert isinstance(database, SQLiteDatabase) and database.path == root / "review" / "review.sqlite"
        with database.read() as tx:
            assert tx.execute("PRAGMA journal_mode") == [("wal",)]

    def test_a_bucket_root_without_a_database_url_says_what_to_set(self) -> None:
        log = ReviewLog("s3://bucket/root", database=open_database(root="s3://bucket/root"))
        with pytest.raises(ReviewsUnavailable, match="BLOCKIO_DATABASE_URL"):
            log.count()


@pytest.mark.postgres
class TestPostgres(DatabaseConformance):
    @pytest.fixture
    def url(self, postgres_url: str) -> str:  # noqa: F811
        return postgres_url

    def test_the_url_picks_postgres_and_hides_the_password(self, url: str) -> None:
        db = open_database(root="unused", url=url.replace("postgres@", "postgres:s3cret@"))
        assert isinstance(db, PostgresDatabase) and "s3cret" not in db.describe()

    def test_an_unreachable_server_is_a_503_not_a_crash(self, tmp_path: Path) -> None:
        from tests.redis_server import free_port

        db = PostgresDatabase(f"postgresql://postgres:pw@127.0.0.1:{free_port()}/none", timeout_s=2)
        with pytest.raises(ReviewsUnavailable) as info:
            ReviewLog(tmp_path, database=db).count()
        assert info.value.status == 503 and "pw" not in str(info.value)
        db.close()
