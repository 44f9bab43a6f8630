"""Who may do what: Bearer tokens by role, the old write token, sessions signed with a shared key,
CSRF on cookie-carried changes, the reads setting, CORS only on data reads, rate limits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from blockio.config import Settings
from blockio.errors import InvalidSettings
from blockio.serving.app import create_app
from blockio.serving.auth import SESSION_COOKIE
from blockio.serving.ratelimit import RateLimiter
from blockio.users import Users
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

WRITE_TOKEN = "old-s3cret"


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("auth")
    np.save(tmp / "v.npy", np.zeros((16, 32, 32), dtype=np.uint8))
    root = tmp / "root"
    ingest(tmp / "v.npy", root, "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    write_segmentation(root, "v", "pred", np.zeros((16, 32, 32), dtype=np.uint32), provenance={"model": "test"}, meshes=False)
    return root


def make(small_root: Path, tmp_path: Path, **config: object) -> Flask:
    # every test its own database, beside the shared read-only root
    return create_app({"BLOCKIO_ROOT": str(small_root), "BLOCKIO_DATABASE_URL": f"sqlite:///{tmp_path}/users.sqlite", "TESTING": True, **config})


def users(app: Flask) -> Users:
    return app.extensions["blockio.users"]  # type: ignore[no-any-return]


def npy(block: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, block)
    return buf.getvalue()


def put(client: FlaskClient, token: str | None, **headers: str):  # type: ignore[no-untyped-def]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.put("/api/datasets/v/layers/pred/block?offset=0,0,0", data=npy(np.ones((16, 32, 32), np.uint32)), headers=headers)


def test_puts_need_a_writer(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path, BLOCKIO_WRITE_TOKEN=WRITE_TOKEN)
    tokens = {role: users(app).add(role + "-user", role)[1] for role in ("reader", "reviewer", "writer", "admin")}
    client = app.test_client()
    assert put(client, None).status_code == 401
    assert put(client, "blk_0000_nope").status_code == 401
    for role, code in (("reader", 403), ("reviewer", 403)):
        resp = put(client, tokens[role])
        assert resp.status_code == code and resp.get_json()["error"]["code"] == "forbidden", role
    for token in (tokens["writer"], tokens["admin"], WRITE_TOKEN):  # the old write token still writes
        assert put(client, token).status_code == 200


def test_writes_are_disabled_without_a_write_token_or_a_writer(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path)
    reviewer = users(app).add("rev", "reviewer")[1]
    client = app.test_client()
    assert put(client, reviewer).status_code == 403 and "disabled" in put(client, None).get_json()["error"]["message"]
    writer = users(app).add("wri", "writer")[1]
    assert put(client, None).status_code == 401 and put(client, writer).status_code == 200


def test_a_removed_users_token_stops_at_once(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path)
    token = users(app).add("wri", "writer")[1]
    client = app.test_client()
    assert put(client, token).status_code == 200  # verified and remembered by this process
    users(app).remove("wri")
    users(app).add("keeps-writes-on", "writer")
    assert put(client, token).status_code == 401


def test_a_signed_in_writer_puts_with_the_csrf_token_only(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path)
    token = users(app).add("wri", "writer")[1]
    client = app.test_client()
    with app.test_request_context():
        from blockio.serving import auth

        auth.sign_in(token)
        from flask import session

        csrf, uid = session["csrf"], session["uid"]
    with client.session_transaction() as sess:
        sess["uid"], sess["csrf"] = uid, csrf
    assert put(client, None).status_code == 403  # the cookie alone: refused (CSRF)
    assert put(client, None, **{"X-CSRF-Token": "wrong"}).status_code == 403
    assert put(client, None, **{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
    assert put(client, None, **{"X-CSRF-Token": csrf, "Origin": "http://localhost"}).status_code == 200


def test_tokens_are_never_stored_in_clear(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path)
    token = users(app).add("ann", "admin")[1]
    data = (tmp_path / "users.sqlite").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("users.sqlite-*"))
    secret = token.rsplit("_", 1)[1].encode()
    assert secret not in data and token.encode() not in data and b"scrypt$" in data


def test_every_worker_signs_sessions_with_the_same_stored_key(small_root: Path, tmp_path: Path) -> None:
    one, two = make(small_root, tmp_path), make(small_root, tmp_path)  # two workers, one database
    user = users(one).add("wri", "writer")[0]
    first = one.test_client()
    with first.session_transaction() as sess:
        sess["uid"], sess["csrf"] = user.id, "c" * 43
    cookie = first.get_cookie(SESSION_COOKIE)
    assert cookie is not None and cookie.secure and cookie.http_only and cookie.same_site == "Lax"
    second = two.test_client()
    second.set_cookie(SESSION_COOKIE, cookie.value)
    assert put(second, None, **{"X-CSRF-Token": "c" * 43}).status_code == 200  # signed by one, read by two
    assert one.secret_key == two.secret_key and len(str(one.secret_key)) == 64
    (tmp_path / "elsewhere").mkdir()
    other = make(small_root, tmp_path / "elsewhere")  # another database: another key, a writer with the same id
    assert users(other).add("wri", "writer")[0].id == user.id
    forged = other.test_client()
    forged.set_cookie(SESSION_COOKIE, cookie.value)
    assert put(forged, None, **{"X-CSRF-Token": "c" * 43}).status_code == 401  # the cookie is not signed with its key


def test_a_configured_secret_key_wins(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path, BLOCKIO_SECRET_KEY="k" * 40)
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["x"] = 1
    assert app.secret_key == "k" * 40


def test_reads_can_need_a_user(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path, BLOCKIO_READS="signed-in")
    reader = users(app).add("rea", "reader")[1]
    client = app.test_client()
    for path in ("/api/datasets", "/api/datasets/v", "/precomputed/v/image/info", "/api/datasets/v/block?offset=0,0,0&size=8,8,8"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": f"Bearer {reader}"}).status_code == 200, path
    assert client.get("/healthz").status_code == 200 and client.get("/api/openapi.json").status_code == 200
    # a preflight is answered; the read itself is what needs the token
    assert client.options("/api/datasets", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "GET"}).status_code < 400
    with pytest.raises(InvalidSettings):
        Settings(reads="sometimes")


def test_cors_only_on_the_read_only_data_routes(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path, BLOCKIO_WRITE_TOKEN=WRITE_TOKEN)
    client = app.test_client()
    origin = {"Origin": "http://other.example"}
    for path in ("/api/datasets", "/api/datasets/v", "/precomputed/v/image/info", "/precomputed/v/image/nope", "/healthz"):
        assert client.get(path, headers=origin).headers.get("Access-Control-Allow-Origin") == "*", path
    assert "Access-Control-Allow-Origin" not in put(client, WRITE_TOKEN, **origin).headers
    preflight = client.options("/api/datasets/v/layers/pred/block", headers={**origin, "Access-Control-Request-Method": "PUT"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_state_changing_requests_are_rate_limited_per_user(small_root: Path, tmp_path: Path) -> None:
    app = make(small_root, tmp_path, BLOCKIO_RATE_PER_S="0.001", BLOCKIO_RATE_BURST="2")
    one, two = users(app).add("one", "writer")[1], users(app).add("two", "writer")[1]
    client = app.test_client()
    assert [put(client, one).status_code for _ in range(3)] == [200, 200, 429]
    resp = put(client, one)
    assert resp.status_code == 429 and resp.get_json()["error"]["code"] == "rate_limited" and resp.headers["Retry-After"]
    assert put(client, two).status_code == 200  # another user's bucket


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert limiter.allow("a") and not limiter.allow("a") and limiter.allow("b")
    assert all(RateLimiter(rate=0, burst=1).allow("a") for _ in range(100))  # 0: no limit
