"""Dataset ids and layer names: the whole string must match, so a trailing newline is refused."""

from __future__ import annotations

import pytest

from precomputed.errors import InvalidDatasetId, InvalidOption
from precomputed.ingest import validate_id
from precomputed.segmentation import validate_name


@pytest.mark.parametrize("bad", ["v\n", "v\r\n", "\nv", "a/b", "", ".", "..", "x" * 129])
def test_bad_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidDatasetId):
        validate_id(bad)
    with pytest.raises(InvalidOption):
        validate_name(bad)


def test_good_ids_pass() -> None:
    assert validate_id("em_2024-01.v2") == "em_2024-01.v2"
    assert validate_name("pred-unet.3") == "pred-unet.3"
