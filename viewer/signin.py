"""Signing in on the page: ``GET``/``POST /signin``, ``POST /signout``, ``GET /session.json``.

The form takes a user's token (``blockio users add``) and, with the form's
CSRF token, signs the browser's session in (:func:`blockio.serving.auth.sign_in`):
the session cookie then carries the user, and every state-changing request
of the page sends the session's CSRF token. ``/session.json`` tells the
page's scripts who is signed in and the CSRF token to send; it has no CORS
headers, so another origin cannot read it.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from blockio.errors import Unauthorized
from blockio.serving import auth

__all__ = ["bp", "safe_next"]

bp = Blueprint("signin", __name__, template_folder="templates")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("viewer.index")
    return target


@bp.get("/signin")
def signin() -> str:
    return render_template("viewer_signin.html", next=safe_next(request.args.get("next")), problem="")


@bp.post("/signin")
def signin_post() -> tuple[str, int] | WerkzeugResponse:
    auth.check_csrf()
    target = safe_next(request.form.get("next"))
    try:
        auth.sign_in(request.form.get("token", ""))
    except Unauthorized as exc:
        return render_template("viewer_signin.html", next=target, problem=str(exc)), 401
    return redirect(target, code=303)


@bp.post("/signout")
def signout() -> WerkzeugResponse:
    auth.sign_out()
    return redirect(url_for("signin.signin"), code=303)


@bp.get("/session.json")
def session_json() -> Response:
    user = auth.current_user()
    body = {"user": None if user is None else {"name": user.name, "role": user.role}, "csrf_token": auth.csrf_token()}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp
