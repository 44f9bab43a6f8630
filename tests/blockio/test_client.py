"""The HTTP client reads what the local store reads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from blockio.client import connect
from blockio.errors import ERRORS, PRECOMPUTED_ERRORS, DatasetNotFound, InvalidRequest, LayerNotFound, OutOfBounds
from blockio.store import Store


def test_same_interface_same_answers(live_server, served_root: Path, served_volume: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    remote, local = connect(live_server.url), Store(served_root)
    assert remote.datasets() == local.datasets() == ["g", "v"]
    assert remote.info("v") == local.info("v")
    for kwargs in ({}, {"mip": 1}, {"normalize": "zscore"}, {"source": "zarr"}, {"dtype": "float32"}):
        np.testing.assert_array_equal(remote.read_block("v", (5, 6, 7), (40, 30, 9), **kwargs), local.read_block("v", (5, 6, 7), (40, 30, 9), **kwargs))
    got, offset, mask = remote.read_block("v", (90, -4, 20), (20, 10, 8), boundary="clip", return_mask=True)
    want, want_offset, want_mask = local.read_block("v", (90, -4, 20), (20, 10, 8), boundary="clip", return_mask=True)
    np.testing.assert_array_equal(got, want)
    assert offset == want_offset and np.array_equal(mask, want_mask)
    z, zmask = remote.read_block("v", (90, 70, 20), (20, 20, 8), boundary="zero", return_mask=True)
    np.testing.assert_array_equal(zmask, local.read_block("v", (90, 70, 20), (20, 20, 8), boundary="zero", return_mask=True)[1])
    assert [b.start for b in remote.iter_blocks("v", (64, 64, 16), (8, 8, 4))] == [b.start for b in local.iter_blocks("v", (64, 64, 16), (8, 8, 4))]


def test_errors_map_to_exceptions(live_server) -> None:  # type: ignore[no-untyped-def]
    remote = connect(live_server.url)
    with pytest.raises(DatasetNotFound):
        remote.info("nope")
    with pytest.raises(OutOfBounds, match="bounds are"):
        remote.read_block("v", (95, 0, 0), (10, 10, 4))
    with pytest.raises(LayerNotFound):
        remote.read_block("v", (0, 0, 0), (10, 10, 4), layer="labels")
    with pytest.raises(InvalidRequest, match="exceeds the limit"):
        remote.read_block("v", (0, 0, 0), (1024, 1024, 1024))
    with pytest.raises(InvalidRequest, match="http"):
        connect("ftp://example")


def test_retries_503_then_succeeds() -> None:
    app = Flask("flaky")
    calls = {"n": 0}

    @app.get("/api/datasets/x")
    def flaky() -> Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return Response('{"error": {"code": "busy", "message": "busy"}}', status=503, headers={"Retry-After": "0"}, mimetype="application/json")
        return Response('{"id": "x"}', mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert connect(f"http://127.0.0.1:{server.server_port}").info("x") == {"id": "x"}
        assert calls["n"] == 3
    finally:
        server.shutdown()


def test_connection_refused_is_a_clear_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionError, match="cannot reach"):
        connect(f"http://127.0.0.1:{port}", retries=1).datasets()


def _raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def info(dataset: str) -> dict:  # type: ignore[type-arg]
        raise exc

    return info


def _precomputed_instance(cls: type[Exception]) -> Exception:
    try:
        return cls("it went wrong")
    except TypeError:  # CorruptChunk and its subclasses take (chunk, reason)
        return cls("0_0_0/0-32_0-32_0-16", "it went wrong")


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_a_remote_error_keeps_its_class_status_and_code(app, live_server, cls) -> None:  # type: ignore[no-untyped-def]
    app.extensions["blockio.store"].info = _raising(cls("it went wrong"))
    with pytest.raises(cls) as info:
        connect(live_server.url, retries=0).info("v")
    assert type(info.value) is cls
    assert (info.value.status, info.value.code) == (cls.status, cls.code)
    assert "it went wrong" in str(info.value) or cls.status >= 500


@pytest.mark.parametrize("cls", sorted(PRECOMPUTED_ERRORS, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_a_precomputed_error_arrives_as_its_blockio_class(app, live_server, cls) -> None:  # type: ignore[no-untyped-def]
    app.extensions["blockio.store"].info = _raising(_precomputed_instance(cls))
    want = PRECOMPUTED_ERRORS[cls]
    with pytest.raises(want) as info:
        connect(live_server.url, retries=0).info("v")
    assert type(info.value) is want and info.value.status == want.status


def test_unknown_codes_keep_the_answers_status_and_code(live_server) -> None:  # type: ignore[no-untyped-def]
    remote = connect(live_server.url, retries=0)
    with pytest.raises(InvalidRequest) as info:
        remote._json("/api/nothing")
    assert (info.value.status, info.value.code) == (404, "not_found")
