"""The index and view pages show a dataset's newest verdicts without loading every stored one."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from viewer.reviews import ReviewLog


def test_pages_show_the_newest_verdicts_and_the_count_without_loading_all(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    log = app.extensions["viewer.reviews"]
    for i in range(30):
        log.add(dataset="demo", layer="pred", verdict="correct", segment=i + 1, note=f"note-{i}", reviewer="rev")

    def refuse(self: ReviewLog) -> None:
        raise AssertionError("a page loaded every stored verdict")

    monkeypatch.setattr(ReviewLog, "all", refuse)
    index = client.get("/").get_data(as_text=True)
    assert "note-29" in index and "note-19" not in index  # the newest ten
    assert "all 30" in index
    view = client.get("/view/demo?layout=overlay&pred=pred").get_data(as_text=True)
    assert "note-29" in view and "note-10" in view and "note-9" not in view  # the newest twenty
