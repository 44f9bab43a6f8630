"""Ingest straight into s3:// and gs:// roots: the same stores as a local ingest, resumable after a kill."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.catalog import Catalog
from precomputed.errors import InvalidOption
from precomputed.ingest import IngestOptions, ingest
from precomputed.storage import Storage, open_root
from tests.cloud_servers import gcs_root, gcs_server, s3_root, s3_server  # noqa: F401

pytestmark = pytest.mark.cloud

TASK_BYTES = 4 << 20


def _options(**kw: Any) -> IngestOptions:
    kw.setdefault("chunk_size", (32, 32, 32))
    kw.setdefault("progress", False)
    kw.setdefault("workers", 4)
    kw.setdefault("voxel_size", (8, 8, 40))
    kw.setdefault("task_bytes", TASK_BYTES)
    return IngestOptions(**kw)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(11)
    vol = rng.integers(0, 3000, size=(20, 150, 200), dtype=np.uint16)  # partial edge chunks on every axis
    np.save(tmp_path / "v.npy", vol)
    return tmp_path / "v.npy", vol


def local_tree(root: Path, prefix: str) -> dict[str, str]:
    """SHA-256 of every file of a local store, by key relative to the store."""
    base = root / prefix
    return {p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.rglob("*")) if p.is_file()}


def bucket_tree(storage: Storage, prefix: str) -> dict[str, str]:
    """SHA-256 of every object of a store in a bucket, by key relative to the store."""
    keys = list(storage.list(prefix + "/"))
    found = storage.get_many(keys)
    return {k[len(prefix) + 1 :]: hashlib.sha256(found[k] or b"").hexdigest() for k in keys}


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between roots and runs: store paths, time stamps, versions, the command."""
    out = {k: v for k, v in record.items() if k not in ("created", "updated", "stores")}
    out["provenance"] = {k: v for k, v in record["provenance"].items() if k != "ingest"}
    out["layers"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("version", "path")} for k, v in record["layers"].items()}
    return out


def assert_same_stores(local: Path, local_record: dict[str, Any], storage: Storage, record: dict[str, Any]) -> None:
    for kind, layer_key in (("zarr", "zarr"), ("precomputed", "precomputed")):
        want = local_tree(local, local_record["stores"][layer_key])
        got = bucket_tree(storage, record["stores"][layer_key])
        assert want, kind
        assert got == want, f"{kind}: {sorted(set(got) ^ set(want))[:5]}"
    assert comparable(record) == comparable(local_record)


@pytest.mark.parametrize("root_fixture", ["s3_root", "gcs_root"])
def test_ingest_into_a_bucket_equals_a_local_ingest(request: pytest.FixtureRequest, root_fixture: str, tmp_path: Path, source: tuple[Path, np.ndarray]) -> None:
    url = request.getfixturevalue(root_fixture)
    src, _ = source
    local = ingest(src, tmp_path / "local", "v", _options())
    record = ingest(src, url, "v", _options())
    storage = open_root(url)
    assert record["stores"]["zarr"].startswith("zarr/v~") and record["layers"]["image"]["path"].startswith("precomputed/v/image~")
    assert_same_stores(tmp_path / "local", local, storage, record)
    assert Catalog(url).get("v") == record
    assert not list(storage.list(".staging/")), "staging objects are removed after the commit"
    # again with --overwrite: the new stores are published, the replaced ones deleted
    again = ingest(src, url, "v", _options(overwrite=True))
    assert again["stores"]["zarr"] != record["stores"]["zarr"] and again["created"] == record["created"]
    assert not list(storage.list(record["stores"]["zarr"] + "/")) and not list(storage.list(record["stores"]["precomputed"] + "/"))
    assert_same_stores(tmp_path / "local", local, storage, again)


def test_tensorstore_reads_the_s3_copy(s3_root: str, s3_server: Any, source: tuple[Path, np.ndarray]) -> None:  # noqa: F811
    import tensorstore as ts

    src, vol = source
    record = ingest(src, s3_root, "v", _options(compress="gzip"))
    bucket, _, prefix = s3_root.removeprefix("s3://").partition("/")

    def kvstore(key: str) -> dict[str, Any]:
        return {"driver": "s3", "bucket": bucket, "path": f"{prefix}/{key}/", "endpoint": s3_server.endpoint, "aws_region": "us-east-1", "aws_credentials": {"type": "environment"}}

    level0 = ts.open({"driver": "zarr3", "kvstore": kvstore(record["stores"]["zarr"] + "/0")}).result().read().result()
    np.testing.assert_array_equal(level0, vol)
    for mip in range(len(record["mips"])):
        zarr_level = ts.open({"driver": "zarr3", "kvstore": kvstore(f"{record['stores']['zarr']}/{mip}")}).result().read().result()
        layer = ts.open({"driver": "neuroglancer_precomputed", "kvstore": kvstore(record["layers"]["image"]["path"]), "scale_index": mip}).result()
        pre = np.asarray(layer.read().result())[..., 0].T  # (x, y, z, c) -> [z, y, x]
        np.testing.assert_array_equal(pre, zarr_level, err_msg=f"mip {mip}")


def test_shard_on_a_bucket_is_refused(s3_root: str, source: tuple[Path, np.ndarray]) -> None:  # noqa: F811
    with pytest.raises(InvalidOption, match="local roots"):
        ingest(source[0], s3_root, "v", _options(shard=True))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "blockio.cli", *args]


@pytest.mark.slow
def test_killed_ingest_into_s3_resumes_bit_identical(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    rng = np.random.default_rng(7)
    np.save(tmp_path / "big.npy", rng.integers(0, 4000, size=(64, 128, 256), dtype=np.uint16))
    args = ["--id", "big", "--voxel-size", "8,8,40", "--chunk-size", "32,32,32", "--task-mib", "1", "--workers", "1", "--quiet"]
    clean_url, killed_url = s3_root + "/clean", s3_root + "/killed"
    subprocess.run(_cli("ingest", str(tmp_path / "big.npy"), "--root", clean_url, *args), check=True)

    killed = open_root(killed_url)
    proc = subprocess.Popen(_cli("ingest", str(tmp_path / "big.npy"), "--root", killed_url, *args))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len([k for k in killed.list(".staging/big/tasks/") if "/p0-" in k]) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "ingest finished before it could be killed; make the source larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "big" not in Catalog(killed_url), "the record is written last"
    staged = set(killed.list(""))
    assert any(k.startswith("zarr/big~") for k in staged) and any("/p0-" in k for k in staged)

    subprocess.run(_cli("ingest", str(tmp_path / "big.npy"), "--root", killed_url, *args), check=True)
    clean, resumed = Catalog(clean_url).get("big"), Catalog(killed_url).get("big")
    assert comparable(resumed) == comparable(clean)
    for field in ("zarr", "precomputed"):
        assert bucket_tree(killed, resumed["stores"][field]) == bucket_tree(open_root(clean_url), clean["stores"][field])
    assert not list(killed.list(".staging/"))
