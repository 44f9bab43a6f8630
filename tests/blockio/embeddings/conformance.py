"""The conformance suite every vector index engine passes: subclass :class:`IndexConformance`, define ``make``."""

from __future__ import annotations

import numpy as np
import pytest

from blockio.embeddings.index import VectorIndex
from blockio.embeddings.rows import Rows, Where
from blockio.errors import InvalidRequest

BIG = [0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


def exact(vectors: np.ndarray, q: np.ndarray, k: int, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """numpy's exact k-NN: (positions, distances), nearest first."""
    v = vectors.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "l2":
        d = np.sqrt(((v - qq) ** 2).sum(axis=1))
    else:
        d = 1.0 - (v @ qq) / (np.linalg.norm(v, axis=1) * np.linalg.norm(qq))
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


def random_rows(n: int, dim: int, seed: int = 0) -> Rows:
    rng = np.random.default_rng(seed)
    keys = rng.choice(2**40, size=n, replace=False).astype(np.uint64) * np.uint64(4099)
    return Rows.build(
        keys,
        rng.standard_normal((n, dim)).astype(np.float32),
        centres=rng.uniform(0, 100, (n, 3)),
        boxes=rng.integers(0, 100, (n, 6)),
        layer=rng.choice(["image", "labels"], n).tolist(),
        model=rng.choice(["m1", "m2"], n).tolist(),
    )


class IndexConformance:
    """What both engines must do alike."""

    def make(self, name: str, dim: int, metric: str = "l2") -> VectorIndex:
        raise NotImplementedError

    def test_empty_set_answers_nothing(self) -> None:
        index = self.make("empty", 4)
        assert index.count() == 0
        assert index.knn([0, 0, 0, 1], 5) == []
        assert len(index.get([1, 2])) == 0

    def test_uint64_keys_survive_with_their_rows(self) -> None:
        index = self.make("big", 3)
        rows = Rows.build(BIG, np.arange(18, dtype=np.float32).reshape(6, 3), centres=np.arange(18).reshape(6, 3) + 0.5, boxes=np.arange(36).reshape(6, 6), layer="seg", model="m")
        index.add(rows)
        got = index.get(list(reversed(BIG)) + [12345])
        assert got.keys.tolist() == list(reversed(BIG))
        np.testing.assert_array_equal(got.vectors, rows.vectors[::-1])
        np.testing.assert_array_equal(got.centres, rows.centres[::-1])
        np.testing.assert_array_equal(got.boxes, rows.boxes[::-1])
        assert set(got.layer.tolist()) == {"seg"}
        hit = index.knn(rows.vectors[5], 1)[0]
        assert hit.key == 2**64 - 1 and hit.distance == pytest.approx(0.0, abs=1e-6)
        assert hit.box == tuple(range(30, 36)) and hit.centre == (15.5, 16.5, 17.5)

    def test_adding_a_key_again_replaces_its_row(self) -> None:
        index = self.make("upsert", 2)
        index.add(Rows.build([1, 2], [[0, 0], [1, 1]]))
        index.add(Rows.build([2, 3], [[5, 5], [9, 9]], layer="other"))
        assert index.count() == 3
        got = index.get([2])
        assert got.vectors.tolist() == [[5.0, 5.0]] and got.layer.tolist() == ["other"]

    def test_delete_counts_what_was_there(self) -> None:
        index = self.make("delete", 2)
        index.add(Rows.build([1, 2, 2**64 - 1], [[0, 0], [1, 1], [2, 2]]))
        assert index.delete([2, 2**64 - 1, 77]) == 2
        assert index.count() == 1 and index.get([1, 2]).keys.tolist() == [1]

    @pytest.mark.parametrize("metric", ["l2", "cosine"])
    def test_knn_equals_numpy_exact(self, metric: str) -> None:
        rows = random_rows(3000, 16)
        index = self.make(f"exact-{metric}", 16, metric)
        index.add(rows)
        rng = np.random.default_rng(1)
        for q in rng.standard_normal((5, 16)).astype(np.float32):
            hits = index.knn(q, 10)
            order, dist = exact(rows.vectors, q, 10, metric)
            assert [h.key for h in hits] == rows.keys[order].tolist()
            np.testing.assert_allclose([h.distance for h in hits], dist, rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize(
        "where",
        [Where(layer="labels"), Where(model="m2"), Where(region=((10, 20, 0), (60, 90, 50))), Where(layer="image", model="m1", region=((0, 0, 0), (50, 100, 100)))],
        ids=["layer", "model", "region", "all"],
    )
    def test_filters_equal_numpy_on_the_filtered_rows(self, where: Where) -> None:
        rows = random_rows(2000, 8, seed=3)
        index = self.make("filtered", 8)
        index.add(rows)
        keep = where.mask(rows)
        assert index.count(where) == int(keep.sum())
        q = np.random.default_rng(4).standard_normal(8).astype(np.float32)
        order, _ = exact(rows.vectors[keep], q, 7)
        assert [h.key for h in index.knn(q, 7, where)] == rows.keys[keep][order].tolist()

    def test_wrong_dimensions_are_refused(self) -> None:
        index = self.make("dims", 4)
        with pytest.raises(InvalidRequest, match="4-d"):
            index.add(Rows.build([1], [[1, 2, 3]]))
        with pytest.raises(InvalidRequest, match="4-d"):
            index.knn([1, 2, 3], 3)

    def test_drop_removes_the_set(self) -> None:
        index = self.make("dropped", 2)
        index.add(Rows.build([1], [[1, 1]]))
        index.drop()
        assert self.make("dropped", 2).count() == 0
