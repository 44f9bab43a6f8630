"""Request bodies, checked before they cost anything: JSON objects and ``.npy`` arrays.

A JSON body is bounded in bytes and in nesting depth before it is parsed (a
deeply nested body would exhaust the parser's recursion). An ``.npy`` body's
header is read first and its shape x dtype checked against the block limits
and against the body's own length, so a 128-byte body claiming a terabyte
array is refused without allocating it.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest, TooLarge
from blockio.limits import check_block_size

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "parse_json_object", "parse_npy"]

MAX_JSON_BYTES = 64 << 10
MAX_JSON_DEPTH = 32
_NUMERIC = "biufc"


def _depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json_object(data: bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises
    ------
    TooLarge
        A body over ``max_bytes``.
    InvalidRequest
        Not UTF-8, not JSON, nested deeper than ``max_depth``, or not an object.
    """
    if len(data) > max_bytes:
        raise TooLarge(f"a JSON body may hold at most {max_bytes} bytes, got {len(data)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the JSON body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    if _depth(text) > max_depth:
        raise InvalidRequest(f"the JSON body is nested deeper than {max_depth} levels")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"the JSON body must be an object, got {type(value).__name__}")
    return value


def parse_npy(data: bytes, *, max_voxels: int, max_bytes: int) -> npt.NDArray[Any]:
    """The array of an ``.npy`` body (a read-only view of ``data``, not a copy).

    The header's shape and dtype are checked before anything is allocated:
    numeric dtypes only (no pickles, no records), at least one voxel, within
    the block limits, and exactly as many data bytes as the header says.

    Raises
    ------
    TooLarge
        The header claims an array over ``max_voxels`` or ``max_bytes``.
    InvalidRequest
        Anything else wrong with the body.
    """
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy format version {version[0]}.{version[1]} is not accepted; write version 1.0 or 2.0 (numpy.save)")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InvalidRequest(f"the body must be one .npy array: {exc}") from None
    if dtype.kind not in _NUMERIC or dtype.fields is not None or dtype.hasobject:
        raise InvalidRequest(f"the .npy array must hold numbers, got dtype {dtype}")
    count = math.prod(shape)
    if count == 0:
        raise InvalidRequest(f"the .npy array is empty (shape {list(shape)}); send at least one voxel")
    check_block_size(shape, channels=1, dtype=dtype, max_voxels=max_voxels, max_bytes=max_bytes)
    have = len(data) - buf.tell()
    need = count * dtype.itemsize
    if have != need:
        raise InvalidRequest(f"the .npy body holds {have} data bytes, but its header's shape {list(shape)} of {dtype.name} needs {need}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell()).reshape(shape, order="F" if fortran else "C")
