"""Object-storage servers for tests: moto's S3 server and gcp-storage-emulator, on free loopback ports.

Use the fixtures from any test module (the tests must carry ``@pytest.mark.cloud``)::

    from tests.cloud_servers import gcs_root, gcs_server, s3_root, s3_server  # noqa: F401

    @pytest.mark.cloud
    def test_something(s3_root: str) -> None:
        storage = open_root(s3_root)          # s3://<fresh bucket>/root

Each server starts once per session on 127.0.0.1 and a port the kernel just
handed out; every test gets a bucket of its own. The variables the clients
read (``AWS_ENDPOINT_URL_S3``, test keys without a session token,
``STORAGE_EMULATOR_HOST``) are set with ``monkeypatch``, so nothing leaks
into other tests, and the developer's own AWS files are hidden.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port

__all__ = ["GcsServer", "S3Server", "gcs_root", "gcs_server", "s3_root", "s3_server"]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server."""

    endpoint: str

    def create_bucket(self) -> str:
        """A new, empty bucket; its name."""
        import boto3

        name = f"test-{secrets.token_hex(6)}"
        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=name)
        return name


@dataclass(frozen=True)
class GcsServer:
    """A running gcp-storage-emulator (the GCS JSON API).

    ``enforces_generation_match`` is probed at start: gcp-storage-emulator
    2026.7.19 accepts ``ifGenerationMatch`` and ignores it, so tests that
    need the precondition enforced skip with that reason.
    """

    host: str
    enforces_generation_match: bool

    def create_bucket(self) -> str:
        """A new, empty bucket; its name."""
        name = f"test-{secrets.token_hex(6)}"
        _gcs_client(self.host).create_bucket(name)
        return name


def _gcs_client(host: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": host})


def _probe_generation_match(host: str) -> bool:
    """Whether a second create-only upload (``ifGenerationMatch=0``) of one object is refused."""
    from google.api_core import exceptions

    bucket = _gcs_client(host).create_bucket(f"probe-{secrets.token_hex(6)}")
    bucket.blob("probe").upload_from_string(b"1", if_generation_match=0)
    try:
        bucket.blob("probe").upload_from_string(b"2", if_generation_match=0)
    except exceptions.PreconditionFailed:
        return True
    return False


def _require_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("cloud") is None:
        pytest.fail("a test that starts an object-storage server must be marked @pytest.mark.cloud")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server (``ThreadedMotoServer``), one per session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint=f"http://{HOST}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_root(request: pytest.FixtureRequest, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``s3://<fresh bucket>/root`` with the endpoint in ``AWS_ENDPOINT_URL_S3`` and keys without a session token."""
    _require_marker(request)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return f"s3://{s3_server.create_bucket()}/root"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """gcp-storage-emulator in this process (in memory), one per session."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server(HOST, port, in_memory=True)
    server.start()
    try:
        host = f"http://{HOST}:{port}"
        yield GcsServer(host=host, enforces_generation_match=_probe_generation_match(host))
    finally:
        server.stop()


@pytest.fixture
def gcs_root(request: pytest.FixtureRequest, gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``gs://<fresh bucket>/root`` with ``STORAGE_EMULATOR_HOST`` naming the emulator."""
    _require_marker(request)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return f"gs://{gcs_server.create_bucket()}/root"
