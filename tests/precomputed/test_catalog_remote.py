"""The catalog on bucket roots: optimistic commits, whole reads, no lost updates across processes."""

from __future__ import annotations

import copy
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from precomputed.catalog import CATALOG_NAME, Catalog
from precomputed.errors import CatalogError, InvalidOption
from precomputed.storage import open_root
from precomputed.storage.optimistic import CommitConflict, commit
from tests.cloud_servers import GcsServer, gcs_root, gcs_server, s3_root, s3_server  # noqa: F401
from tests.precomputed.test_catalog import _record

WRITERS = 4
UPDATES = 200


def _bump(counter_id: str) -> Any:
    def change(old: dict[str, Any] | None) -> dict[str, Any]:
        new = copy.deepcopy(old) if old is not None else _record(counter_id)
        new["source"]["bytes"] = (new["source"]["bytes"] if old is not None else 0) + 1
        return new

    return change


def _writer(args: tuple[str, int, int]) -> int:
    """``updates`` catalog updates: every other one bumps the record all writers share, the rest its own."""
    url, writer, updates = args
    catalog = Catalog(url)
    for i in range(updates):
        target = "shared" if i % 2 == 0 else f"writer-{writer}"
        catalog.update(target, _bump(target))
    return writer


def _reader(url: str, seconds: float) -> int:
    """Reads the catalog over and over; each read must parse whole."""
    catalog = Catalog(url)
    reads = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        catalog.ids()
        reads += 1
    return reads


def _many_writers_lose_nothing(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS + 1) as pool:
        reading = pool.apply_async(_reader, (url, 5.0))
        done = pool.map(_writer, [(url, w, UPDATES) for w in range(WRITERS)])
        assert reading.get() > 0  # a torn catalog would have raised CatalogError in the reader
    assert sorted(done) == list(range(WRITERS))
    catalog = Catalog(url)
    assert catalog.get("shared")["source"]["bytes"] == WRITERS * UPDATES // 2
    for w in range(WRITERS):
        assert catalog.get(f"writer-{w}")["source"]["bytes"] == UPDATES // 2


@pytest.mark.cloud
@pytest.mark.slow
def test_s3_writers_in_four_processes_lose_no_update(s3_root: str) -> None:
    _many_writers_lose_nothing(s3_root)


@pytest.mark.cloud
@pytest.mark.slow
def test_gcs_writers_in_four_processes_lose_no_update(gcs_root: str, gcs_server: GcsServer) -> None:
    if not gcs_server.enforces_generation_match:
        pytest.skip("gcp-storage-emulator ignores ifGenerationMatch: concurrent GCS writers are not testable on it (see README, Object storage)")
    _many_writers_lose_nothing(gcs_root)


@pytest.mark.cloud
@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_put_get_remove_on_a_bucket(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_root")
    catalog = Catalog(url)
    assert catalog.is_remote and catalog.ids() == []
    catalog.put(_record("a"))
    catalog.put(_record("b"))
    assert Catalog(url).ids() == ["a", "b"]
    assert Catalog(url).get("a") == _record("a")
    catalog.remove("a")
    assert "a" not in Catalog(url)
    stored = json.loads(open_root(url).get(CATALOG_NAME) or b"")
    assert sorted(stored["datasets"]) == ["b"]
    assert catalog.location == f"{url}/{CATALOG_NAME}"


@pytest.mark.cloud
def test_a_malformed_catalog_on_a_bucket_is_never_overwritten(s3_root: str) -> None:
    storage = open_root(s3_root)
    storage.put(CATALOG_NAME, b'{"datasets": {"a": ')
    with pytest.raises(CatalogError, match=r"catalog.json: not valid JSON at line 1"):
        Catalog(s3_root).put(_record("b"))
    assert storage.get(CATALOG_NAME) == b'{"datasets": {"a": '


@pytest.mark.cloud
def test_a_bucket_catalog_has_no_lock_and_no_folder(s3_root: str) -> None:
    catalog = Catalog(s3_root)
    with pytest.raises(InvalidOption, match="has no lock"):
        catalog.lock()
    with pytest.raises(InvalidOption, match="is a bucket"):
        _ = catalog.root


# -- the commit loop itself, on a local root (whose put_if enforces its token) ----------------


def test_commit_reapplies_a_change_that_lost_a_race(tmp_path: Path) -> None:
    storage = open_root(str(tmp_path))
    storage.put("counter", b"0")
    calls: list[bytes | None] = []

    def increment(current: bytes | None) -> tuple[bytes, int]:
        calls.append(current)
        if len(calls) == 1:  # another writer commits between our read and our write
            storage.put("counter", b"10")
        value = int(current or b"0") + 1
        return str(value).encode(), value

    assert commit(storage, "counter", increment) == 11
    assert calls == [b"0", b"10"]
    assert storage.get("counter") == b"11"


def test_commit_gives_up_with_nothing_written(tmp_path: Path) -> None:
    storage = open_root(str(tmp_path))
    storage.put("counter", b"0")
    writes = iter(range(1, 10_000))

    def always_beaten(current: bytes | None) -> tuple[bytes, None]:
        storage.put("counter", str(next(writes)).encode())  # someone else, every time
        return b"mine", None

    with pytest.raises(CommitConflict, match="nothing written"):
        commit(storage, "counter", always_beaten, timeout_s=0.2)
    assert storage.get("counter") != b"mine"


def test_commit_writes_nothing_when_the_change_says_so(tmp_path: Path) -> None:
    storage = open_root(str(tmp_path))
    assert commit(storage, "absent", lambda current: (None, "unchanged")) == "unchanged"
    assert storage.get("absent") is None
