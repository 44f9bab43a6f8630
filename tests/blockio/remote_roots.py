"""A small real store root (ingested locally) and its byte-for-byte copy into a bucket, for the bucket-reading tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.storage import open_root
from tests.cloud_servers import GcsServer, S3Server

SHAPE_ZYX = (20, 70, 90)
CHUNK = (32, 32, 16)


def build_root(tmp: Path) -> Path:
    """``v`` (uint16, plain chunks, a segmentation layer ``seg``) and ``g`` (gzip chunk files): real ingest."""
    volume = np.random.default_rng(21).integers(0, 4000, size=SHAPE_ZYX, dtype=np.uint16)
    np.save(tmp / "v.npy", volume)
    root = tmp / "root"
    ingest(tmp / "v.npy", root, "v", IngestOptions(voxel_size=(4, 4, 40), chunk_size=CHUNK, progress=False, workers=1))
    ingest(tmp / "v.npy", root, "g", IngestOptions(voxel_size=(4, 4, 40), chunk_size=CHUNK, progress=False, workers=1, compress="gzip"))
    labels = (np.arange(np.prod(SHAPE_ZYX), dtype=np.uint32).reshape(SHAPE_ZYX) // 997).astype(np.uint32)
    write_segmentation(root, "v", "seg", labels, provenance={"model": "test"}, meshes=False)
    return root


def copy_root(local: Path, url: str) -> int:
    """Every file of ``local`` into the bucket root ``url``, byte for byte, through precomputed.storage; the count."""
    src, dst = open_root(local), open_root(url)
    keys = list(src.list(""))
    dst.put_many({key: src.get(key) or b"" for key in keys})
    copied = dst.get_many(keys)
    assert all(copied[key] == src.get(key) for key in keys), "the bucket copy differs"  # noqa: S101
    return len(keys)


@contextmanager
def bucket_environment(s3: S3Server | None, gcs: GcsServer | None, tmp: Path) -> Iterator[pytest.MonkeyPatch]:
    """The variables of ``tests.cloud_servers``' ``s3_root`` / ``gcs_root`` fixtures, for a module-scoped bucket."""
    with pytest.MonkeyPatch.context() as mp:
        if s3 is not None:
            mp.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
            for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
                mp.setenv(name, value)
            mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
            for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
                mp.delenv(name, raising=False)
        if gcs is not None:
            mp.setenv("STORAGE_EMULATOR_HOST", gcs.host)
            mp.setenv("GOOGLE_CLOUD_PROJECT", "test")
            mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        yield mp


@dataclass
class GetCounter:
    """Object GETs botocore sent (CloudFiles' and our own clients alike): which, their Range, how many at once at most."""

    paths: list[str] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chunk_gets(self, scale: str) -> list[str]:
        return [p for p in self.paths if f"/{scale}/" in p]


@contextmanager
def counting_s3_gets() -> Iterator[GetCounter]:
    """Count every GET request botocore sends over HTTP (the real request still goes out)."""
    from urllib.parse import unquote, urlsplit

    from botocore.httpsession import URLLib3Session

    counter = GetCounter()
    original: Callable[..., Any] = URLLib3Session.send

    def send(self: Any, request: Any) -> Any:
        counted = request.method == "GET"
        if counted:
            with counter.lock:
                counter.paths.append(unquote(urlsplit(request.url).path))
                wanted = request.headers.get("Range")
                counter.ranges.append(wanted.decode() if isinstance(wanted, bytes) else wanted)
                counter.in_flight += 1
                counter.most_in_flight = max(counter.most_in_flight, counter.in_flight)
        try:
            return original(self, request)
        finally:
            if counted:
                with counter.lock:
                    counter.in_flight -= 1

    URLLib3Session.send = send  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        URLLib3Session.send = original  # type: ignore[method-assign]
