"""In Chromium: a reviewer signs in through the form; a page on another origin, with that reviewer's
cookie in the same browser, can neither read the session's CSRF token nor store a verdict; the
reviewer's own page can.

Headless Debian Chromium driven by the ``playwright`` package (:mod:`tests.browser`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.browser import launch_chromium
from tests.live_server import LiveServer

from .conftest import make_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VERDICT = {"layer": "pred", "segment": 5, "verdict": "false_merge", "note": "from the browser"}

EVIL_PAGE = """<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<iframe name="sink"></iframe>
<form id="forged" method="post" target="sink" action="%(target)s/view/demo/review">
<input name="verdict" value="correct"><input name="segments" value="5"><input name="layer" value="pred"></form>
<script>
window.results = {};
async function attempt(name, run) {
  try { const r = await run(); window.results[name] = r; } catch (e) { window.results[name] = "blocked: " + e.name; }
}
window.attack = async function () {
  await attempt("session", async () => (await (await fetch("%(target)s/session.json", {credentials: "include"})).json()).csrf_token);
  await attempt("json", async () => (await fetch("%(target)s/api/datasets/demo/reviews", {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": "guess"}, body: JSON.stringify(%(verdict)s)})).status);
  await attempt("simple", async () => (await fetch("%(target)s/api/datasets/demo/reviews", {method: "POST", credentials: "include", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify(%(verdict)s)})).type);
  document.getElementById("forged").submit();
  return true;
};
</script>"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def servers(root_copy: Path) -> Iterator[tuple[Flask, str, str]]:
    app = make_app(root_copy)
    served = LiveServer(app)
    target = served.url.replace("127.0.0.1", "localhost")  # Chromium keeps Secure cookies on http://localhost
    evil = Flask("elsewhere")
    evil.add_url_rule("/", "page", lambda: EVIL_PAGE % {"target": target, "verdict": json.dumps(VERDICT)})
    other = LiveServer(evil)
    try:
        # another port of the same host: the same site, so SameSite=Lax still sends the cookie and only CSRF stops it
        yield app, target, other.url.replace("127.0.0.1", "localhost")
    finally:
        other.stop()
        served.stop()


def test_another_origin_cannot_store_a_verdict_but_the_page_can(browser: Any, servers: tuple[Flask, str, str]) -> None:
    app, target, elsewhere = servers
    token = app.extensions["blockio.users"].add("ann", "reviewer")[1]
    log = app.extensions["viewer.reviews"]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{target}/signin?next=/")
    page.fill("input[name=token]", token)
    page.click("#signin button[type=submit]")
    page.wait_for_url(f"{target}/")
    assert "ann (reviewer)" in page.inner_text("#signed-in")
    cookie = next(c for c in context.cookies() if c["name"] == "blockio_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    attacker = context.new_page()  # same browser, same cookies: the classic cross-site request
    attacker.goto(elsewhere + "/")
    with attacker.expect_response(lambda r: r.url.endswith("/view/demo/review")) as forged:
        attacker.evaluate("window.attack()")
    assert forged.value.status == 403  # the forged form carried the cookie, not the CSRF token
    results = attacker.evaluate("window.results")
    assert str(results["session"]).startswith("blocked") and str(results["json"]).startswith("blocked"), results
    assert results["simple"] == "opaque", results  # sent, unreadable, and refused by the server (no CSRF token)
    assert log.count() == 0

    stored = page.evaluate(
        """async (verdict) => {
             const csrf = document.querySelector('meta[name="csrf-token"]').content;
             const r = await fetch("/api/datasets/demo/reviews", {method: "POST", body: JSON.stringify(verdict),
                 headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
             return [r.status, (await r.json()).reviewer];
           }""",
        VERDICT,
    )
    assert stored == [201, "ann"] and log.count() == 1
    context.close()
