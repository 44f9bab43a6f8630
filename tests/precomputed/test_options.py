"""One rule for keyword overrides beside an options object."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from precomputed.options import with_overrides


@dataclass(frozen=True, kw_only=True)
class Knobs:
    size: int = 1
    name: str = "a"


@dataclass(frozen=True, kw_only=True)
class Extras:
    size: int = 1


def test_defaults_and_replaced_fields() -> None:
    assert with_overrides(Knobs, None, {}, caller="f") == Knobs()
    base = Knobs(name="b")
    assert with_overrides(Knobs, base, {}, caller="f") is base
    assert with_overrides(Knobs, base, {"size": 3}, caller="f") == Knobs(size=3, name="b")


def test_unknown_names_are_named_with_the_caller() -> None:
    with pytest.raises(TypeError, match=r"^f\(\) got unexpected keyword arguments: colour, sise$"):
        with_overrides(Knobs, None, {"sise": 2, "colour": "red"}, caller="f")


def test_options_of_another_class_are_refused() -> None:
    with pytest.raises(TypeError, match="options must be a Knobs, got Extras"):
        with_overrides(Knobs, Extras(), {}, caller="f")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options must be an Extras, got Knobs"):
        with_overrides(Extras, Knobs(), {}, caller="f")  # type: ignore[arg-type]
