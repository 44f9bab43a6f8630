"""A mistyped root is an error naming it, for open_store and every read command."""

from __future__ import annotations

from pathlib import Path

import pytest

import blockio
from blockio.errors import StoreNotFound
from blockio.roots import local_folder, require_store


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound) as exc:
        require_store(tmp_path / "typo")
    assert str(exc.value) == f"no blockio store at {tmp_path / 'typo'}: no catalog.json (the folder does not exist); create one with blockio ingest or blockio demo"
    assert isinstance(exc.value, FileNotFoundError) and exc.value.status == 404 and exc.value.code == "store_not_found"


def test_a_folder_without_a_catalog_is_not_a_store(root: Path) -> None:
    with pytest.raises(StoreNotFound, match=r": no catalog\.json; create one with blockio ingest or blockio demo$"):
        require_store(root)


def test_a_store_is_its_folder(root: Path) -> None:
    (root / "catalog.json").write_text('{"schema_version": 1, "datasets": {}}\n')
    assert require_store(root) == root
    assert require_store(f"file://{root}") == root


def test_bucket_urls_have_no_local_folder() -> None:
    # a bucket root is checked by asking the bucket: tests/blockio/test_store_remote.py
    assert local_folder("s3://bucket/root") is None and local_folder("gs://bucket/root") is None


def test_open_store_refuses_a_mistyped_root(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="no blockio store at"):
        blockio.open_store(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_open_store_default_root_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(blockio.StoreNotFound, match=r"blockio-data: no catalog\.json \(the folder does not exist\)"):
        blockio.open_store()


def test_open_store_opens_an_empty_catalog(root: Path) -> None:
    (root / "catalog.json").write_text('{"schema_version": 1, "datasets": {}}\n')
    assert blockio.open_store(root).datasets() == []
