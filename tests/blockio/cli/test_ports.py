"""A busy port is found before any work, and the message names a free one."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockio.cli.main import main
from blockio.cli.ports import busy_port_message, free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_free_port_is_free() -> None:
    port = free_port("127.0.0.1", after=20000)
    assert busy_port_message("127.0.0.1", port) is None


def test_a_busy_port_names_a_free_one(busy_port: int) -> None:
    message = busy_port_message("127.0.0.1", busy_port)
    assert message is not None
    found = re.fullmatch(rf"port {busy_port} is in use; try --port (\d+)", message)
    assert found, message
    suggested = int(found.group(1))
    assert suggested != busy_port
    with socket.socket() as sock:  # the suggestion can really be bound
        sock.bind(("127.0.0.1", suggested))


def test_a_host_that_cannot_be_bound_is_not_called_busy() -> None:
    message = busy_port_message("192.0.2.1", 8000)  # TEST-NET-1: never an address of this machine
    assert message is not None and message.startswith("cannot serve on 192.0.2.1:8000: ")


def test_demo_checks_the_port_before_any_work(busy_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--root", str(tmp_path / "data"), "--port", str(busy_port), "--quiet", "--shape", "32,32,8"])
    out, err = capsys.readouterr()
    assert code == 1
    assert re.match(rf"blockio: error: port {busy_port} is in use; try --port \d+ ", err), err
    assert err.count("\n") == 1
    assert out == ""  # no URL of the program that holds the port, no work done
    assert not (tmp_path / "data").exists()


def test_serve_checks_the_port(busy_port: int, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "catalog.json").write_text('{"schema_version": 1, "datasets": {}}\n')
    assert main(["serve", "--root", str(root), "--port", str(busy_port)]) == 1
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"blockio: error: port {busy_port} is in use; try --port \d+\n", err), err
    assert out == ""
