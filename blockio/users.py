"""Users and their roles, in the service's database (:mod:`blockio.database`); the standard library only, so ``blockio users`` starts light.

A user has a name, a role (``reader`` < ``reviewer`` < ``writer`` <
``admin``; each may do what the ones before it may) and one token, shown
once when the user is added: ``blk_<id>_<secret>``. Only a salted scrypt
hash of the secret is stored; a token is checked by looking its ``id`` up
and comparing hashes in constant time. A process remembers the tokens it
has verified (keyed by an HMAC under a key of its own, never the token) so
a Bearer request costs one scrypt per token and process, not one per
request; the user's row is still read every time, so a removed user is
refused at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from blockio.database import Database
from blockio.errors import Conflict, InvalidRequest

__all__ = ["ROLES", "User", "Users", "role_at_least"]

ROLES = ("reader", "reviewer", "writer", "admin")
"""The roles, weakest first."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
TOKEN_PREFIX = "blk_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_VERIFIED_MAX = 4096

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        id {serial},
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        token_id TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
)


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class User:
    """A user as stored (never with the token)."""

    id: int
    name: str
    role: str
    created: str


def _hash(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, maxmem=64 << 20, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _matches(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2, maxmem=64 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


class Users:
    """The users of one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._verified: dict[bytes, tuple[int, str]] = {}
        self._verified_key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def _ready(self) -> Database:
        self.database.ensure_schema("users", 1, SCHEMA)
        return self.database

    def add(self, name: str, role: str) -> tuple[User, str]:
        """Add a user; returns it and its token (the only time the token is seen).

        Raises :class:`~blockio.errors.Conflict` when the name is taken and
        :class:`~blockio.errors.InvalidRequest` for a bad name or role.
        """
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidRequest(f"invalid user name {name!r}: 1-64 characters of A-Z a-z 0-9 . _ @ -, starting with a letter or digit")
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        stored = _hash(secret, secrets.token_bytes(16))
        with self._ready().write() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (name,)):
                raise Conflict(f"user {name!r} exists already; remove it first to give it a new token")
            rows = tx.execute(
                "INSERT INTO users (name, role, token_id, token_hash, created) VALUES (?, ?, ?, ?, ?) RETURNING id, created",
                (name, role, token_id, stored, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )
        return User(int(rows[0][0]), name, role, str(rows[0][1])), f"{TOKEN_PREFIX}{token_id}_{secret}"

    def list(self) -> list[User]:
        """Every user, by name."""
        with self._ready().read() as tx:
            rows = tx.execute("SELECT id, name, role, created FROM users ORDER BY name")
        return [User(int(i), str(n), str(r), str(c)) for i, n, r, c in rows]

    def remove(self, name: str) -> bool:
        """Remove a user (its token stops working at once); ``False`` when there was none."""
        with self._ready().write() as tx:
            return bool(tx.execute("DELETE FROM users WHERE name = ? RETURNING id", (name,)))

    def get(self, user_id: int) -> User | None:
        """The user with this id, or ``None`` (removed)."""
        with self._ready().read() as tx:
            rows = tx.execute("SELECT id, name, role, created FROM users WHERE id = ?", (user_id,))
        return User(int(rows[0][0]), str(rows[0][1]), str(rows[0][2]), str(rows[0][3])) if rows else None

    def any_at_least(self, role: str) -> bool:
        """Whether some user has ``role`` or a stronger one."""
        stronger = ROLES[ROLES.index(role) :]
        with self._ready().read() as tx:
            marks = ", ".join("?" * len(stronger))
            return bool(tx.execute(f"SELECT 1 FROM users WHERE role IN ({marks}) LIMIT 1", stronger))

    def verify(self, token: str) -> User | None:
        """The user whose token this is, or ``None``."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        token_id, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
        if not token_id or not secret:
            return None
        key = hmac.digest(self._verified_key, token.encode(), "sha256")
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            user = self.get(known[0])
            return user if user is not None else None
        with self._ready().read() as tx:
            rows = tx.execute("SELECT id, token_hash FROM users WHERE token_id = ?", (token_id,))
        if not rows or not _matches(secret, str(rows[0][1])):
            return None
        with self._lock:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified[key] = (int(rows[0][0]), token_id)
        return self.get(int(rows[0][0]))

    def secret_key(self) -> str:
        """The key that signs session cookies: made by the first process that asks, the same for every worker and host."""
        with self._ready().write() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", ("session_secret_key", secrets.token_hex(32)))
            rows = tx.execute("SELECT value FROM meta WHERE key = ?", ("session_secret_key",))
        return str(rows[0][0])
