"""Who is asking, and may they: Bearer tokens, the signed session cookie, CSRF, rate limits.

A request names its user one of three ways:

* ``Authorization: Bearer TOKEN`` with a user's token (``blockio users add``)
  or the old ``BLOCKIO_WRITE_TOKEN`` (a writer named ``write-token``); a
  Bearer header that matches nothing is a 401, never a fall-back to the
  cookie. Bearer calls need no CSRF token: a browser never adds the header
  by itself.
* the session cookie set by signing in on the page (Flask's signed session,
  HTTP-only, ``SameSite=Lax``, ``Secure`` unless ``BLOCKIO_COOKIE_SECURE=0``;
  the key is ``BLOCKIO_SECRET_KEY`` or one kept in the database so every
  worker agrees). A state-changing request carried by the cookie must send
  the session's CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form
  field) and, when the browser sends ``Origin``, come from this host.
* nobody (anonymous).

:func:`require` ("reviewer", ...) raises :class:`~blockio.errors.Unauthorized`
(401) for anonymous callers and :class:`~blockio.errors.Forbidden` (403)
for a weaker role. With ``BLOCKIO_READS=signed-in`` every read but the
public endpoints needs a user. State-changing requests are rate limited per
user and process (:mod:`blockio.serving.ratelimit`); their bodies are bounded
by the routes (``MAX_CONTENT_LENGTH``, the JSON limits of
:mod:`blockio.serving.bodies`).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Response as WerkzeugResponse

from blockio.config import Settings
from blockio.database import open_database
from blockio.errors import Forbidden, RateLimited, Unauthorized
from blockio.serving.ratelimit import RateLimiter
from blockio.users import ROLES, Users, role_at_least

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Principal",
    "check_csrf",
    "csrf_token",
    "current_user",
    "get_users",
    "init_app",
    "make_public",
    "require",
    "sign_in",
    "sign_out",
    "writes_enabled",
]

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "blockio_session"
SESSION_LIFETIME = timedelta(hours=12)
WRITE_TOKEN_USER = "write-token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_PUBLIC = "blockio.public_endpoints"
_ANONYMOUS = object()


@dataclass(frozen=True)
class Principal:
    """The user a request acts for: ``name``, ``role`` and how it was named (``token``, ``session``, ``write-token``)."""

    name: str
    role: str
    via: str

    def may(self, role: str) -> bool:
        """Whether this user may do what ``role`` may."""
        return role_at_least(self.role, role)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its key read from the database on first use (not at start-up)."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if self._serializer is None:
            app.secret_key = self._key()
            self._serializer = super().get_signing_serializer(app)
        return self._serializer

    def open_session(self, app: Flask, request: Any) -> Any:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # no cookie: no key needed, no database touched
        return super().open_session(app, request)


def get_users() -> Users:
    """The users of the current app's database."""
    return current_app.extensions["blockio.users"]  # type: ignore[no-any-return]


def _settings() -> Settings:
    return current_app.extensions["blockio.settings"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """Attach the database (``app.extensions["blockio.database"]``), the users, the session and the checks to ``app``."""
    settings: Settings = app.extensions["blockio.settings"]
    database = open_database(root=settings.root, url=settings.database_url)
    users = Users(database)
    app.extensions["blockio.database"] = database
    app.extensions["blockio.users"] = users
    app.extensions["blockio.limiter"] = RateLimiter(rate=settings.rate_per_s, burst=settings.rate_burst)
    app.extensions[_PUBLIC] = {"healthz", "static", "metrics", "openapi.openapi_json"}
    app.session_interface = _SessionInterface(lambda: settings.secret_key or users.secret_key())
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.before_request(_gate)
    app.context_processor(lambda: {"csrf_token": csrf_token, "current_user": current_user, "roles": ROLES})


def make_public(app: Flask, *endpoints: str) -> None:
    """Let anyone reach ``endpoints`` even with ``BLOCKIO_READS=signed-in`` (the sign-in page, say)."""
    app.extensions[_PUBLIC].update(endpoints)


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _identify() -> Principal | None:
    token = _bearer()
    if token is not None:
        write_token = _settings().write_token
        if write_token and hmac.compare_digest(token.encode(), write_token.encode()):
            return Principal(WRITE_TOKEN_USER, "writer", "write-token")
        user = get_users().verify(token)
        if user is None:
            raise Unauthorized("this Bearer token belongs to no user (blockio users add NAME --role ROLE makes one)")
        return Principal(user.name, user.role, "token")
    uid = session.get("uid")
    if isinstance(uid, int):
        user = get_users().get(uid)
        if user is not None:
            return Principal(user.name, user.role, "session")
        session.pop("uid", None)  # removed since signing in
    return None


def current_user() -> Principal | None:
    """The user of this request, or ``None`` (anonymous); a Bearer token that matches nobody is a 401."""
    found = g.get("blockio_user", _ANONYMOUS)
    if found is _ANONYMOUS:
        found = g.blockio_user = _identify()
    return found  # type: ignore[no-any-return]


def require(role: str, *, action: str = "do this") -> Principal:
    """The user of this request if it may act as ``role``; 401 when anonymous, 403 when too weak."""
    user = current_user()
    if user is None:
        raise Unauthorized(f"sign in (or send 'Authorization: Bearer <token>') to {action}: it needs a {role}")
    if not user.may(role):
        raise Forbidden(f"{user.name} is a {user.role}; to {action} needs a {role} or stronger")
    return user


def writes_enabled() -> bool:
    """Whether block writes can be made at all: a write token is configured, or some user is a writer."""
    return bool(_settings().write_token) or get_users().any_at_least("writer")


def csrf_token() -> str:
    """This session's CSRF token (made on first use); pages put it in forms and in the ``X-CSRF-Token`` header."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by every browser on same-origin requests; the CSRF token still decides
    return origin != "null" and urlsplit(origin).netloc.lower() == request.host.lower()


def check_csrf() -> None:
    """Refuse (403) a cookie-carried state-changing request without this session's CSRF token, or from another origin."""
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = request.form.get(CSRF_FIELD)
    if not _same_origin():
        raise Forbidden(f"a request from {request.headers.get('Origin')} cannot change anything here")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(f"the CSRF token is missing or wrong: send the page's token in {CSRF_HEADER} or the {CSRF_FIELD} field (reload the page)")


def sign_in(token: str) -> Principal:
    """Sign this session in with a user's token (401 when it matches nobody); a new session and CSRF token."""
    user = get_users().verify(token.strip())
    if user is None:
        raise Unauthorized("this token belongs to no user")
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)
    g.blockio_user = principal = Principal(user.name, user.role, "session")
    return principal


def sign_out() -> None:
    """Forget this session's user."""
    session.clear()
    g.blockio_user = None


def _rate_key() -> str:
    try:
        user = current_user()
    except Unauthorized:  # the route answers it, after its own checks
        user = None
    return f"user:{user.name}" if user is not None else f"addr:{request.remote_addr or '?'}"


def _gate() -> WerkzeugResponse | None:
    """Before every request: the reads setting, CSRF on cookie-carried changes, the per-user rate."""
    endpoint = request.endpoint or ""
    public = endpoint in current_app.extensions[_PUBLIC]
    if request.method in SAFE_METHODS:
        # a CORS preflight never carries credentials: it is answered, and the request itself checked
        if _settings().reads == "signed-in" and request.method != "OPTIONS" and not public and current_user() is None:
            signin = current_app.extensions.get("blockio.signin_endpoint")
            if signin and request.method == "GET" and request.accept_mimetypes.best == "text/html":
                return redirect(url_for(signin, next=request.full_path.rstrip("?")), code=303)
            raise Unauthorized("this server's reads need a user: sign in, or send 'Authorization: Bearer <token>'")
        return None
    if "Authorization" not in request.headers and session.get("uid") is not None:
        check_csrf()  # before the user is even looked up: a forged request costs nothing
    if not current_app.extensions["blockio.limiter"].allow(_rate_key()):
        raise RateLimited(f"too many requests; at most {_settings().rate_per_s:g} per second (bursts of {_settings().rate_burst})")
    return None
