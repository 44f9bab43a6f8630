"""Query-string arguments, checked the same way by every route that takes them."""

from __future__ import annotations

from typing import TypeVar

from flask import request

from blockio.errors import InvalidRequest

__all__ = ["int_arg"]

DefaultT = TypeVar("DefaultT", int, None)


def int_arg(name: str, default: DefaultT, lo: int = 0, hi: int = 1 << 30) -> int | DefaultT:
    """The integer ``?name=`` of the current request, or ``default`` when it is absent or empty.

    Raises
    ------
    InvalidRequest
        Not an integer, or outside ``lo..hi`` (400).
    """
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value
