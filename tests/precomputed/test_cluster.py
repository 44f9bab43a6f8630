"""A dask.distributed cluster whose workers share nothing but the bucket ingests into s3:// and finalises a segmentation layer there.

Each worker process runs in a working folder of its own (its ``local_directory``,
made its cwd by a worker plugin); the source ``.npy`` lies at an absolute path
every worker is given explicitly (the one thing besides the bucket they
share: readers take local files). Staging, markers and both stores live in
moto's S3 only, so the result must read equal to a local ingest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.catalog import Catalog
from precomputed.ingest import IngestOptions, ingest
from precomputed.storage import open_root
from tests.cloud_servers import s3_root, s3_server  # noqa: F401
from tests.precomputed.test_ingest_remote import assert_same_stores

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.cloud


class OwnFolder(distributed.WorkerPlugin):  # type: ignore[misc]
    """Make each worker's cwd its own ``local_directory``."""

    def setup(self, worker: Any) -> None:
        os.chdir(worker.local_directory)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_root: str) -> Iterator[tuple[str, list[Path]]]:  # noqa: F811
    """Two worker processes, each with a folder of its own; the S3 variables reach them through the environment."""
    folders = [tmp_path / f"worker-{i}" for i in range(2)]
    monkeypatch.chdir(tmp_path)
    with distributed.LocalCluster(n_workers=0, threads_per_worker=2, processes=True, protocol="tcp://", dashboard_address=None) as cluster:
        for i, folder in enumerate(folders):
            folder.mkdir()
            spec = cluster.new_worker_spec()
            (name, worker), = spec.items()
            cluster.worker_spec[f"own-{i}"] = {**worker, "options": {**worker["options"], "local_directory": str(folder)}}
        cluster.sync(cluster._correct_state)
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            client.register_plugin(OwnFolder())
            cwds = client.run(os.getcwd)
            assert len(set(cwds.values())) == 2 and all(str(tmp_path / "worker-") in c for c in cwds.values()), cwds
            yield cluster.scheduler_address, folders


def test_cluster_ingest_into_s3_equals_local(cluster: tuple[str, list[Path]], s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    address, folders = cluster
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 2000, size=(24, 160, 200), dtype=np.uint16)
    src = tmp_path / "shared" / "v.npy"
    src.parent.mkdir()
    np.save(src, vol)
    options = {"chunk_size": (32, 32, 32), "voxel_size": (8, 8, 40), "task_bytes": 1 << 20, "progress": False}
    local = ingest(src, tmp_path / "local", "v", IngestOptions(**options))
    record = ingest(src, s3_root, "v", IngestOptions(**options, scheduler=address))
    assert_same_stores(tmp_path / "local", local, open_root(s3_root), record)
    assert Catalog(s3_root).get("v") == record
    # a segmentation layer finalised by the same workers (pyramid, counts, meshes) equals a local one
    from precomputed.segmentation import write_segmentation
    from tests.precomputed.test_ingest_remote import bucket_tree, local_tree

    labels = (1 + np.indices(vol.shape)[2] // 50 + 10 * (np.indices(vol.shape)[1] // 40)).astype(np.uint32)
    want = write_segmentation(tmp_path / "local", "v", "pred", labels, provenance={"model": "test"})
    got = write_segmentation(s3_root, "v", "pred", labels, provenance={"model": "test"}, scheduler=address)
    assert bucket_tree(open_root(s3_root), got["path"]) == local_tree(tmp_path / "local", want["path"])
    assert bucket_tree(open_root(s3_root), got["zarr"]) == local_tree(tmp_path / "local", want["zarr"])
    for folder in folders:  # nothing of the run was written to a worker's own folder
        assert not [p for p in folder.rglob("*") if ".staging" in p.parts or p.suffix in (".npz", ".json")]
