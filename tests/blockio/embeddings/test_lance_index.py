"""The LanceDB engine passes the conformance suite, locally and on an s3:// root; its IVF index's recall is measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockio.embeddings.index import VectorIndex, open_index
from blockio.embeddings.lance_index import LanceIndex
from blockio.embeddings.rows import Rows
from tests.blockio.embeddings.conformance import IndexConformance, exact
from tests.cloud_servers import s3_root, s3_server  # noqa: F401

pytest.importorskip("lancedb")


class TestLanceIndex(IndexConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.uri = str(tmp_path / "index.lance")

    def make(self, name: str, dim: int, metric: str = "l2") -> VectorIndex:
        return LanceIndex(self.uri, name, dim=dim, metric=metric)


@pytest.mark.cloud
class TestLanceIndexOnS3(IndexConformance):
    @pytest.fixture(autouse=True)
    def _root(self, s3_root: str) -> None:  # noqa: F811
        self.root = s3_root

    def make(self, name: str, dim: int, metric: str = "l2") -> VectorIndex:
        return open_index(self.root, "ds", name, dim=dim, metric=metric, engine="lance")

    def test_the_index_lives_in_the_bucket(self) -> None:
        import boto3

        index = self.make("where", 2)
        index.add(Rows.build([1], [[1.0, 2.0]]))
        bucket, prefix = self.root.removeprefix("s3://").split("/", 1)
        client = boto3.client("s3")
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/embeddings/ds/index.lance/").get("Contents", [])]
        assert keys, "LanceDB wrote nothing under ROOT/embeddings/ds/index.lance/"


def test_ivf_recall_at_10_against_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, 32)).astype(np.float32) * 3
    vectors = centres[rng.integers(0, 200, 40_000)] + rng.standard_normal((40_000, 32)).astype(np.float32)
    index = LanceIndex(str(tmp_path / "ann.lance"), "ann", dim=32)
    index.add(Rows.build(np.arange(len(vectors)), vectors))
    index.build_ann()
    assert index.has_ann()
    queries = vectors[rng.integers(0, len(vectors), 40)] + 0.3 * rng.standard_normal((40, 32)).astype(np.float32)
    recall = []
    for q in queries:
        order, _ = exact(vectors, q, 10)
        recall.append(len(set(order.tolist()) & {h.key for h in index.knn(q, 10)}) / 10)
    print(f"LanceDB IVF_FLAT recall@10 = {np.mean(recall):.3f} (nprobes {index.nprobes}, 40,000 x 32-d)")
    assert np.mean(recall) >= 0.9
