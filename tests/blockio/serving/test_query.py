"""Integer query-string arguments: absent or empty gives the default, anything else is checked."""

from __future__ import annotations

import pytest
from flask import Flask

from blockio.errors import InvalidRequest
from blockio.serving.query import int_arg


@pytest.mark.parametrize(("query", "expected"), [("", 7), ("?n=", 7), ("?n=3", 3), ("?n=10", 10)])
def test_present_values_and_the_default(query: str, expected: int) -> None:
    with Flask(__name__).test_request_context(f"/{query}"):
        assert int_arg("n", 7, 1, 10) == expected


def test_the_default_may_be_none() -> None:
    with Flask(__name__).test_request_context("/"):
        assert int_arg("n", None, 1, 10) is None


@pytest.mark.parametrize(("query", "match"), [("?n=x", "n must be an integer, got 'x'"), ("?n=0", "n must be between 1 and 10, got 0"), ("?n=11", "between 1 and 10")])
def test_bad_values_are_invalid_requests(query: str, match: str) -> None:
    with Flask(__name__).test_request_context(f"/{query}"), pytest.raises(InvalidRequest, match=match):
        int_arg("n", 7, 1, 10)
