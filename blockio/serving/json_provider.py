"""JSON answers that are always valid JSON: never ``NaN`` or ``Infinity``.

Python's ``json`` writes ``NaN`` for a float NaN, which no JSON parser (nor
a browser) accepts. The app's provider refuses such values, and
:func:`finite_record` turns a catalog record holding one into
:class:`~blockio.errors.DatasetUnavailable` naming the field, so the
dataset is listed as unavailable and the others are served.
"""

from __future__ import annotations

import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

from blockio.errors import DatasetUnavailable

__all__ = ["StrictJSONProvider", "finite_record", "non_finite_field"]


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's provider with ``allow_nan=False``: a non-finite number is an error, not invalid JSON."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def non_finite_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinite number in ``value``, or ``None``."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "(the value)")
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_field(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = non_finite_field(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def finite_record(dataset: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` if every number in it is finite; else :class:`DatasetUnavailable` naming the field."""
    field = non_finite_field(record)
    if field is not None:
        raise DatasetUnavailable(f"dataset {dataset!r} is unavailable: {field} is not a finite number")
    return record
