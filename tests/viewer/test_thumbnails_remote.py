"""Thumbnails of a dataset in a bucket are cached in the bucket, under the root like everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockio.store import Store
from precomputed.storage import open_root
from tests.blockio.remote_roots import bucket_environment, build_root, copy_root
from tests.cloud_servers import GcsServer, S3Server, gcs_server, s3_server  # noqa: F401
from viewer.thumbnails import thumbnail_png

pytestmark = pytest.mark.cloud


def test_thumbnails_on_a_bucket_root_are_cached_in_the_bucket(tmp_path: Path, s3_server: S3Server, gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src").mkdir()
    local = build_root(tmp_path / "src")
    monkeypatch.chdir(tmp_path)  # a bucket root must never become a local folder named after it
    with bucket_environment(s3_server, gcs_server, tmp_path / "aws"):
        url = f"s3://{s3_server.create_bucket()}/root"
        copy_root(local, url)
        png = thumbnail_png(Store(url), "v", "xy")
        assert png == thumbnail_png(Store(local), "v", "xy")  # the same picture as from the folder
        cached = [k for k in open_root(url).list(".cache/thumbnails/v/") if k.endswith(".png")]
        assert len(cached) == 1 and open_root(url).get(cached[0]) == png
        assert thumbnail_png(Store(url), "v", "xy") == png  # now from the cache
    assert not list(tmp_path.glob("s3*"))
