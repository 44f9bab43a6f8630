"""Atomic file replacement: whole or nothing, no temp files left, permissions as open() gives them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from precomputed import atomic
from precomputed.atomic import atomic_write, remove_leftovers, replace_bytes, replace_file


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test and restore it after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    replace_file(path, "old")
    replace_file(path, "new ü")
    replace_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert path.read_text(encoding="utf-8") == "new ü" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "f.json"]


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_default_mode_is_what_open_gives_under_the_umask(tmp_path: Path, umask: object, mask: int, expected: int) -> None:
    umask(mask)  # type: ignore[operator]
    replace_file(tmp_path / "catalog.json", "{}")
    replace_bytes(tmp_path / "thumb.png", b"png", durable=False)
    with open(tmp_path / "plain", "w", encoding="utf-8") as fh:
        fh.write("x")
    assert _mode(tmp_path / "catalog.json") == _mode(tmp_path / "thumb.png") == _mode(tmp_path / "plain") == expected


def test_an_explicit_mode_is_exact(tmp_path: Path, umask: object) -> None:
    umask(0o077)  # type: ignore[operator]
    replace_bytes(tmp_path / "a", b"x", mode=0o640)
    replace_file(tmp_path / "secret", "token", mode=0o600)
    assert _mode(tmp_path / "a") == 0o640 and _mode(tmp_path / "secret") == 0o600


def test_replacing_takes_the_new_mode_not_the_old_file_s(tmp_path: Path, umask: object) -> None:
    umask(0o022)  # type: ignore[operator]
    path = tmp_path / "catalog.json"
    path.write_text("{}")
    path.chmod(0o600)  # as the old writer left it
    replace_file(path, '{"datasets": {}}')
    assert _mode(path) == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "marker.npz"
    replace_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_write(path) as fh:
            fh.write(b"partial")
            raise RuntimeError("half-way")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["marker.npz"]


def test_a_writer_callback_streams_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    with atomic_write(path, durable=False) as fh:
        np.savez(fh, counts=np.arange(5))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["counts"], np.arange(5))


def test_durable_writes_fsync_file_and_folder_others_do_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    replace_bytes(tmp_path / "chunk", b"x", durable=False)
    assert synced == []
    replace_file(tmp_path / "catalog.json", "{}")
    assert len(synced) == 2


def test_remove_leftovers_clears_only_hidden_temp_files(tmp_path: Path) -> None:
    (tmp_path / ".catalog.json.abc123.tmp").write_text("x")
    (tmp_path / "keep.tmp").write_text("x")  # not hidden: not ours
    (tmp_path / ".hidden").write_text("x")
    replace_file(tmp_path / "catalog.json", "{}")
    assert remove_leftovers(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "catalog.json", "keep.tmp"]


def test_the_catalog_is_readable_by_whoever_reads_the_chunks(tmp_path: Path, umask: object) -> None:
    from precomputed.catalog import Catalog

    umask(0o022)  # type: ignore[operator]
    root = tmp_path / "root"
    root.mkdir()
    catalog = Catalog(root)
    catalog.update("d", lambda old: None)
    assert _mode(catalog.path) == 0o644
