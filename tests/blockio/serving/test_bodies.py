"""Request bodies are checked before they cost anything: .npy headers, JSON size and depth."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from flask.testing import FlaskClient

from blockio.errors import InvalidRequest, TooLarge
from blockio.serving.bodies import parse_json_object, parse_npy

from .conftest import TOKEN, npy_bytes

LIMITS = {"max_voxels": 1 << 20, "max_bytes": 4 << 20}


def _lying_header(shape: tuple[int, ...], descr: str = "<u4") -> bytes:
    """A 128-byte .npy body whose header claims ``shape`` (what np.save would write for it, without the data)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_a_valid_body_round_trips_without_a_copy() -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint32).reshape(2, 3, 4)
    got = parse_npy(npy_bytes(a), **LIMITS)
    np.testing.assert_array_equal(got, a)
    np.testing.assert_array_equal(parse_npy(npy_bytes(np.asfortranarray(a)), **LIMITS), a)


@pytest.mark.parametrize(
    ("body", "error", "needle"),
    [
        (_lying_header((100000, 100000, 100000)), TooLarge, "exceeds the limit"),
        (_lying_header((64, 64, 64)) + b"\0" * 16, InvalidRequest, "holds 16 data bytes"),
        (npy_bytes(np.zeros((0, 4, 4), np.uint32)), InvalidRequest, "empty"),
        (npy_bytes(np.array([{"a": 1}], dtype=object))[:128], InvalidRequest, "numbers"),
        (b"not an npy", InvalidRequest, ".npy"),
        (b"", InvalidRequest, ".npy"),
    ],
    ids=["huge-shape", "short-body", "empty", "object", "garbage", "nothing"],
)
def test_bad_bodies_are_refused_before_allocating(body: bytes, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        parse_npy(body, **LIMITS)


def test_json_bodies_are_bounded_in_size_and_depth() -> None:
    assert parse_json_object(b'{"token": "t", "note": "[[[ in a string ]]]"}') == {"token": "t", "note": "[[[ in a string ]]]"}
    with pytest.raises(InvalidRequest, match="nested deeper"):
        parse_json_object(b"[" * 20000 + b"]" * 20000)
    with pytest.raises(TooLarge):
        parse_json_object(b'{"note": "' + b"x" * (1 << 20) + b'"}')
    with pytest.raises(InvalidRequest, match="object"):
        parse_json_object(b"[1, 2]")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json_object(b"{")


@pytest.mark.parametrize(
    ("body", "status"),
    [(_lying_header((100000, 100000, 100000)), 413), (npy_bytes(np.zeros((0, 32, 32), np.uint32)), 400), (_lying_header((16, 32, 32)), 400)],
    ids=["huge-shape", "empty", "short-body"],
)
def test_bad_put_bodies_are_4xx(wclient: FlaskClient, body: bytes, status: int) -> None:
    resp = wclient.put("/api/datasets/v/layers/pred/block?offset=0,0,0", data=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] in ("too_large", "invalid_request")


def test_a_put_layer_name_with_a_newline_is_refused(wclient: FlaskClient) -> None:
    resp = wclient.put("/api/datasets/v/layers/pred%0A/block?offset=0,0,0", data=npy_bytes(np.ones((16, 32, 32), np.uint32)), headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 400
