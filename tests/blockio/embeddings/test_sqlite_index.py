"""The SQLite + sqlite-vec engine passes the conformance suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockio.embeddings.index import VectorIndex
from blockio.embeddings.sqlite_index import SqliteIndex
from blockio.errors import Conflict
from tests.blockio.embeddings.conformance import IndexConformance


class TestSqliteIndex(IndexConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.path = tmp_path / "index.sqlite"

    def make(self, name: str, dim: int, metric: str = "l2") -> VectorIndex:
        return SqliteIndex(self.path, name, dim=dim, metric=metric)


def test_a_set_reopened_with_another_dimension_is_a_conflict(tmp_path: Path) -> None:
    SqliteIndex(tmp_path / "i.sqlite", "s", dim=4)
    with pytest.raises(Conflict, match="4-d|float\\[4\\]"):
        SqliteIndex(tmp_path / "i.sqlite", "s", dim=8)
