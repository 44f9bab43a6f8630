"""Keyword arguments beside an options object: ``f(..., options=opts, meshes=False)``.

Every frozen options dataclass of the project (:class:`~precomputed.segmentation_options.SegmentationOptions`,
``blockio``'s ``InferenceOptions`` and ``DatasetOptions``) takes its keyword overrides
the same way, through :func:`with_overrides`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["with_overrides"]

OptionsT = TypeVar("OptionsT", bound="DataclassInstance")


def with_overrides(cls: type[OptionsT], options: OptionsT | None, overrides: Mapping[str, Any], *, caller: str) -> OptionsT:
    """``options`` (default: ``cls()``) with the fields named in ``overrides`` replaced.

    Parameters
    ----------
    cls
        The options dataclass.
    options
        An instance of ``cls``, or ``None`` for the defaults.
    overrides
        ``{field: value}``; the values are checked as ``cls`` checks them when made.
    caller
        The function that took the keywords, named in the error (``"run_inference"``).

    Raises
    ------
    TypeError
        ``options`` is not a ``cls``, or a name that is not a field, as for any
        unexpected keyword argument.
    """
    base = cls() if options is None else options
    if not isinstance(base, cls):
        article = "an" if cls.__name__[:1] in "AEIOU" else "a"
        raise TypeError(f"options must be {article} {cls.__name__}, got {type(base).__name__}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword arguments: {', '.join(unknown)}")
    return dataclasses.replace(base, **overrides) if overrides else base
