"""Verdicts over the API and from the page: roles, sign-in, CSRF, other origins, limits, paging, exports, OpenAPI."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .conftest import make_app, sign_in

URL = "/api/datasets/demo/reviews"
VERDICT = {"layer": "pred", "segment": 5, "verdict": "false_merge", "note": "two cells"}


def bearer(app: Flask, role: str, name: str | None = None) -> dict[str, str]:
    token = app.extensions["blockio.users"].add(name or role + "-user", role)[1]
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_is_401_a_reader_403_a_reviewer_stores_who_and_when(app: Flask) -> None:
    client = app.test_client()
    resp = client.post(URL, json=VERDICT)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"
    resp = client.post(URL, json=VERDICT, headers=bearer(app, "reader"))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"
    for role in ("reviewer", "writer", "admin"):
        resp = client.post(URL, json={**VERDICT, "note": role}, headers=bearer(app, role, "ann-" + role))
        assert resp.status_code == 201, resp.text
        stored = resp.get_json()
        assert stored["reviewer"] == "ann-" + role and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stored["time"]) and stored["segment"] == 5
    assert [r["reviewer"] for r in client.get(URL).get_json()["items"]] == ["ann-admin", "ann-writer", "ann-reviewer"]
    assert client.get("/reviews.json").get_json()["reviews"][0]["note"] == "reviewer"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**VERDICT, "verdict": "great"}, 400),
        ({**VERDICT, "layer": "image"}, 404),
        ({**VERDICT, "layer": "nope"}, 404),
        ({"layer": "pred", "verdict": "missing"}, 400),
        ({"layer": "pred", "verdict": "missing", "position": [1, 2]}, 400),
        ({"layer": "pred", "verdict": "missing", "position": "1,2,3"}, 400),
        ({**VERDICT, "segment": 2**64}, 400),
        ({**VERDICT, "segment": True}, 400),
        ({**VERDICT, "note": ["x"]}, 400),
        ({**VERDICT, "note": "x" * 2001}, 400),
        ({**VERDICT, "reviewer": "someone else"}, 400),
    ],
)
def test_bad_verdicts_are_4xx_and_store_nothing(app: Flask, body: dict[str, object], code: int) -> None:
    client = app.test_client()
    resp = client.post(URL, json=body, headers=bearer(app, "reviewer"))
    assert resp.status_code == code, resp.text
    assert client.get(URL).get_json()["total"] == 0


def test_a_position_verdict_and_an_unknown_dataset(app: Flask) -> None:
    client = app.test_client()
    auth = bearer(app, "reviewer")
    stored = client.post(URL, json={"layer": "pred", "verdict": "missing", "position": [10, 20.5, 3]}, headers=auth).get_json()
    assert stored["position"] == [10.0, 20.5, 3.0] and stored["segment"] is None
    assert client.post("/api/datasets/nope/reviews", json=VERDICT, headers=auth).status_code == 404
    assert client.get("/api/datasets/nope/reviews").status_code == 404
    assert client.get("/api/datasets/bad%0A/reviews").status_code == 400


def test_bodies_are_bounded(app: Flask) -> None:
    client = app.test_client()
    resp = client.post(URL, data=json.dumps({**VERDICT, "pad": "x" * (20 << 10)}), content_type="application/json", headers=bearer(app, "reviewer"))
    assert resp.status_code == 413


def test_get_pages_newest_first_and_counts(app: Flask) -> None:
    client = app.test_client()
    auth = bearer(app, "reviewer")
    for i in range(1, 8):
        assert client.post(URL, json={**VERDICT, "segment": i, "layer": "pred" if i % 2 else "pred2"}, headers=auth).status_code == 201
    first = client.get(URL + "?per_page=3").get_json()
    assert [r["segment"] for r in first["items"]] == [7, 6, 5] and first["total"] == 7 and first["next"]
    second = client.get(f"{URL}?per_page=3&before={first['next']}").get_json()
    third = client.get(f"{URL}?per_page=3&before={second['next']}").get_json()
    assert [r["segment"] for r in second["items"] + third["items"]] == [4, 3, 2, 1] and third["next"] is None
    only = client.get(URL + "?layer=pred2").get_json()
    assert [r["segment"] for r in only["items"]] == [6, 4, 2] and only["total"] == 3
    assert client.get(URL + "?per_page=0").status_code == 400 and client.get(URL + "?before=x").status_code == 400


def test_the_page_session_needs_its_csrf_token(app: Flask) -> None:
    client = app.test_client()
    sign_in(app, client)
    csrf = client.environ_base.pop("HTTP_X_CSRF_TOKEN")
    refused = client.post(URL, json=VERDICT)
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["error"]["message"]
    assert client.post(URL, json=VERDICT, headers={"X-CSRF-Token": "forged"}).status_code == 403
    form = {"verdict": "correct", "segments": "5", "layer": "pred"}
    assert client.post("/view/demo/review", data=form).status_code == 403  # the page's form without the field
    assert client.post("/view/demo/review", data={**form, "csrf_token": csrf}).status_code == 303
    assert client.post(URL, json=VERDICT, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert client.get(URL).get_json()["total"] == 2


def test_a_page_on_another_origin_cannot_store_or_read_tokens(app: Flask) -> None:
    client = app.test_client()
    sign_in(app, client)  # the victim is signed in; its cookie goes with the forged request
    other = {"Origin": "http://127.0.0.1:9999"}
    assert client.post(URL, json=VERDICT, headers=other).status_code == 403  # even with the right CSRF token
    assert client.post("/view/demo/review", json={"verdict": "correct", "segments": [5]}, headers=other).status_code == 403
    # and it cannot read what it would need: no CORS on the page, the session, the verdicts or sign-in
    for path in ("/", "/view/demo?layout=overlay&pred=pred", "/session.json", "/signin", URL, "/reviews.json", "/reviews.csv"):
        assert "Access-Control-Allow-Origin" not in client.get(path, headers=other).headers, path
    preflight = client.options(URL, headers={**other, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-CSRF-Token"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    # the data routes Neuroglancer reads still allow any origin
    assert client.get("/precomputed/demo/image/info", headers=other).headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/api/datasets/demo", headers=other).headers["Access-Control-Allow-Origin"] == "*"
    assert client.get(URL).get_json()["total"] == 0


def test_sign_in_form_cookie_and_sign_out(app: Flask) -> None:
    client = app.test_client()
    token = app.extensions["blockio.users"].add("ann", "reviewer")[1]
    page = client.get("/signin?next=/view/demo").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/signin", data={"token": token}).status_code == 403  # the form's CSRF field is needed too
    bad = client.post("/signin", data={"token": "blk_00_nope", "csrf_token": csrf})
    assert bad.status_code == 401 and 'id="signin-problem"' in bad.text
    ok = client.post("/signin", data={"token": token, "csrf_token": csrf, "next": "/view/demo"})
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/view/demo")
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie and token not in cookie
    who = client.get("/session.json").get_json()
    assert who["user"] == {"name": "ann", "role": "reviewer"} and who["csrf_token"] != csrf  # a new one after signing in
    assert "ann (reviewer)" in client.get("/").text
    assert client.post("/signout").status_code == 403  # CSRF here too
    assert client.post("/signout", data={"csrf_token": who["csrf_token"]}).status_code == 303
    assert client.get("/session.json").get_json()["user"] is None


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_sign_in_never_sends_you_elsewhere(app: Flask, target: str) -> None:
    client = app.test_client()
    token = app.extensions["blockio.users"].add("ann", "reviewer")[1]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").text).group(1)  # type: ignore[union-attr]
    resp = client.post("/signin", data={"token": token, "csrf_token": csrf, "next": target})
    assert resp.status_code == 303 and "evil" not in resp.headers["Location"]


def test_a_signed_in_reads_setting_sends_the_page_to_sign_in(root_copy: Path) -> None:
    app = make_app(root_copy, BLOCKIO_READS="signed-in")
    client = app.test_client()
    page = client.get("/view/demo?layout=overlay&pred=pred", headers={"Accept": "text/html"})
    assert page.status_code == 303 and "/signin?next=" in page.headers["Location"]
    assert client.get(URL).status_code == 401 and client.get("/reviews.csv").status_code == 401
    assert client.get("/signin").status_code == 200
    sign_in(app, client, "rea", "reader")
    assert client.get("/view/demo?layout=overlay&pred=pred").status_code == 200 and client.get(URL).status_code == 200
    assert client.post(URL, json=VERDICT).status_code == 403  # a reader reads, never reviews


def test_verdicts_are_rate_limited_per_user(root_copy: Path) -> None:
    app = make_app(root_copy, BLOCKIO_RATE_PER_S="0.001", BLOCKIO_RATE_BURST="3")
    client = app.test_client()
    ann, bob = bearer(app, "reviewer", "ann"), bearer(app, "reviewer", "bob")
    assert [client.post(URL, json=VERDICT, headers=ann).status_code for _ in range(4)] == [201, 201, 201, 429]
    assert client.post(URL, json=VERDICT, headers=bob).status_code == 201


def test_exports_come_from_the_database_and_an_old_file_is_imported_once(root_copy: Path) -> None:
    old = {"id": "f" * 32, "time": "2026-01-01T00:00:00+00:00", "dataset": "demo", "layer": "pred", "segment": 9, "position": None, "verdict": "correct", "note": "=1+1", "reviewer": "old"}
    (root_copy / "reviews.json").write_text(json.dumps({"schema_version": 1, "reviews": [old]}))
    app = make_app(root_copy)
    client = app.test_client()
    assert client.post(URL, json=VERDICT, headers=bearer(app, "reviewer", "ann")).status_code == 201
    again = make_app(root_copy).test_client()  # another worker: nothing imported twice
    exported = again.get("/reviews.json").get_json()["reviews"]
    assert [(r["id"][:4], r["reviewer"]) for r in exported][0] == ("ffff", "old") and len(exported) == 2
    rows = list(csv.DictReader(io.StringIO(again.get("/reviews.csv?dataset=demo").text)))
    assert [r["reviewer"] for r in rows] == ["old", "ann"] and rows[0]["note"] == "'=1+1"
    assert again.get(URL).get_json()["total"] == 2 and (root_copy / "review" / "review.sqlite").exists()


def test_both_routes_are_in_the_openapi_document(client: FlaskClient) -> None:
    doc = client.get("/api/openapi.json").get_json()
    path = doc["paths"]["/api/datasets/{dataset}/reviews"]
    assert set(path) == {"get", "post"} and path["post"]["security"] == [{"bearer": []}]
    assert {"401", "403", "429"} <= set(path["post"]["responses"])
    assert path["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["verdict"]["enum"] == ["correct", "false_merge", "false_split", "missing"]
