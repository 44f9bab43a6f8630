"""InferenceOptions: checked when made, frozen, and replaced field by field by run_inference's keywords."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blockio.errors import InvalidRequest
from blockio.inference import InferenceOptions
from blockio.inference.options import with_overrides
from blockio.inference.run import run_inference


def test_values_are_normalised_and_frozen() -> None:
    options = InferenceOptions(block="64,64,32", overlap=[8, 8, 4], threshold=1)  # type: ignore[arg-type]
    assert options.block == (64, 64, 32) and options.overlap == (8, 8, 4) and options.threshold == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.block = (1, 1, 1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        InferenceOptions((64, 64, 32))  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block": (0, 32, 32)}, "block must be positive"),
        ({"overlap": (32, 0, 0), "block": (32, 32, 32)}, "smaller than the block"),
        ({"mip": 1}, "mip 0 only"),
        ({"normalize": "gamma"}, "normalize must be one of"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": True}, "threshold must be a finite number"),
    ],
)
def test_bad_values_fail_when_made(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        InferenceOptions(**kwargs)  # type: ignore[arg-type]


def test_overrides_replace_fields() -> None:
    base = InferenceOptions(block=(64, 64, 64), meshes=False)
    both = with_overrides(base, {"overlap": (4, 4, 4)})
    assert (both.block, both.overlap, both.meshes) == ((64, 64, 64), (4, 4, 4), False)
    assert with_overrides(None, {}) == InferenceOptions()
    with pytest.raises(InvalidRequest, match="smaller than the block"):
        with_overrides(base, {"overlap": (64, 0, 0)})


def test_unknown_keywords_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: blok"):
        run_inference(tmp_path, "em", "x:y", "pred", blok=(1, 2, 3))
    with pytest.raises(TypeError, match="must be an InferenceOptions"):
        run_inference(tmp_path, "em", "x:y", "pred", options={"block": (1, 2, 3)})  # type: ignore[arg-type]
