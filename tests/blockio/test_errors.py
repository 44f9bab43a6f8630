"""The one exception tree: every class has a status and a unique code, the docstring draws them all,
and every error of the writing side maps to a class of the tree."""

from __future__ import annotations

import inspect

import pytest

import blockio.errors as errors
import precomputed.errors as perrors
from blockio.errors import ERRORS, PRECOMPUTED_ERRORS, BlockioError, error_class, from_precomputed


def test_codes_are_unique_and_statuses_are_http() -> None:
    codes = [cls.code for cls in ERRORS]
    assert len(codes) == len(set(codes)), codes
    assert all(400 <= cls.status < 600 for cls in ERRORS)


def test_the_docstring_draws_every_class() -> None:
    tree = errors.__doc__ or ""
    for cls in ERRORS:
        assert f"{cls.__name__} " in tree and f" {cls.status} {cls.code}" in tree, cls.__name__


def test_every_class_of_the_module_is_in_the_table() -> None:
    defined = {obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, BlockioError) and obj.__module__ == errors.__name__}
    assert defined == set(ERRORS)


def test_old_import_locations_still_work() -> None:
    from blockio.data.block_checks import TransformError
    from blockio.serving.api import Busy, TooLarge

    assert TransformError is errors.TransformError and issubclass(TransformError, ValueError)
    assert TooLarge is errors.TooLarge and Busy is errors.Busy and issubclass(Busy, BlockioError)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_a_code_names_its_class(cls: type[BlockioError]) -> None:
    assert error_class(cls.code, cls.status) is cls


def test_an_unknown_code_falls_back_by_status_not_by_message() -> None:
    assert error_class("not_found", 404) is errors.InvalidRequest
    assert error_class("gateway_timeout", 504) is BlockioError


def _precomputed_classes() -> list[type[Exception]]:
    return [getattr(perrors, name) for name in perrors.__all__]


def _instance(cls: type[Exception]) -> Exception:
    try:
        return cls("bad thing")
    except TypeError:  # CorruptChunk and its subclasses take (chunk, reason)
        return cls("8_8_40/0-32_0-32_0-16", "bad thing")


@pytest.mark.parametrize("cls", _precomputed_classes(), ids=lambda c: c.__name__)
def test_every_precomputed_error_maps_into_the_tree(cls: type[Exception]) -> None:
    mapped = from_precomputed(_instance(cls))
    assert isinstance(mapped, BlockioError) and "bad thing" in str(mapped)
    if cls is not perrors.PrecomputedError:
        assert type(mapped) is not BlockioError, f"{cls.__name__} falls through to a plain 500"
    # the builtin it derives from is kept where the tree has one
    for builtin in (KeyError, FileExistsError):
        if issubclass(cls, builtin):
            assert isinstance(mapped, builtin)


def test_the_table_names_blockio_classes_only() -> None:
    assert set(PRECOMPUTED_ERRORS.values()) <= set(ERRORS)
