"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.live_server import LiveServer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty store root inside the test's own temp folder."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _no_user_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # a developer's own settings must not leak into tests
    for name in ("BLOCKIO_ROOT", "BLOCKIO_PROFILES", "BLOCKIO_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the ``app`` fixture of the test's own package."""
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """That app on a real loopback socket."""
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture
def small_disk_size() -> str:
    """The size of ``small_disk`` as ``mount -o size=`` takes it; a test module overrides it."""
    return "4m"


@pytest.fixture
def small_disk(tmp_path: Path, small_disk_size: str) -> Iterator[Path]:
    """A small tmpfs (4 MiB unless ``small_disk_size`` says otherwise): a real full disk (needs root, as in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={small_disk_size}", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
