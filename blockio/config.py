"""Settings of the reader and the service: the only place that reads ``BLOCKIO_*``.

>>> settings = Settings.from_env()                    # defaults, then the environment
>>> settings = Settings.from_env().replace(root="data", max_block_voxels=256**3)

Every setting, its variable and its default are in :data:`ENV_VARS` (and in
the README's "Settings" table). A value that cannot be used raises
:class:`blockio.errors.InvalidSettings` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from blockio import DEFAULT_ROOT
from blockio.errors import InvalidSettings

__all__ = ["DEFAULT_ROOT", "ENV_VARS", "READS", "Settings"]

#: the values of ``reads`` (``BLOCKIO_READS``)
READS = ("open", "signed-in")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of a store and of the service (frozen; see :data:`ENV_VARS`)."""

    #: the store root: a folder or ``file://`` URL
    root: str = DEFAULT_ROOT
    #: a shared Redis chunk cache behind the in-process one; ``None`` for none
    redis_url: str | None = None
    #: byte budget of the in-process chunk cache; 0 disables it
    cache_bytes: int = 512 << 20
    #: the Bearer token that block writes need; ``None`` disables writes (never in the repr)
    write_token: str | None = dataclasses.field(default=None, repr=False)
    #: origins allowed to read from other sites; ``("*",)`` for any
    cors_origins: tuple[str, ...] = ("*",)
    #: the largest block a read may ask for, in voxels
    max_block_voxels: int = 512**3
    #: the largest block a read may ask for (or a write send), in bytes of the layer's dtype
    max_block_bytes: int = 256 << 20
    #: block reads served at once per process; more wait in a queue
    max_inflight: int = 8
    #: seconds a block read waits for a worker before a 503
    queue_timeout_s: float = 2.0
    #: the largest request body, in bytes
    max_content_length: int = 256 << 20
    #: where Neuroglancer's client is built (``viewer.bundle``); ``None`` for ``~/.cache/blockio``
    viewer_cache: str | None = None
    #: the users, queues and verdicts database (``postgresql://...``); ``None``: SQLite under the root
    database_url: str | None = dataclasses.field(default=None, repr=False)
    #: the key that signs session cookies; ``None``: one generated once and kept in the database
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    #: ``open``: anyone may read; ``signed-in``: reads need a user too
    reads: str = "open"
    #: whether the session cookie is sent over HTTPS only (turn off only behind plain HTTP)
    cookie_secure: bool = True
    #: state-changing requests per second each user may make (per process); 0 for no limit
    rate_per_s: float = 20.0
    #: how many such requests a user may make at once before the rate applies
    rate_burst: int = 200
    #: live model layers ``NAME=pkg.mod:fn[?option=value&...]`` served as ``/precomputed/<id>/live/<NAME>/``
    live_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("cache_bytes", "max_block_voxels", "max_block_bytes", "max_inflight", "max_content_length"):
            value = getattr(self, name)
            low = 0 if name == "cache_bytes" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidSettings(f"{name} must be an integer >= {low}, got {value!r}")
        timeout = self.queue_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < float("inf"):
            raise InvalidSettings(f"queue_timeout_s must be a finite number of seconds >= 0, got {timeout!r}")
        if not isinstance(self.root, str) or not self.root:
            raise InvalidSettings(f"root must be a non-empty path, got {self.root!r}")
        if self.reads not in READS:
            raise InvalidSettings(f"reads must be one of {', '.join(READS)}, got {self.reads!r}")
        rate = self.rate_per_s
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < float("inf"):
            raise InvalidSettings(f"rate_per_s must be a finite number >= 0, got {rate!r}")
        if isinstance(self.rate_burst, bool) or not isinstance(self.rate_burst, int) or self.rate_burst < 1:
            raise InvalidSettings(f"rate_burst must be an integer >= 1, got {self.rate_burst!r}")
        if not isinstance(self.cors_origins, tuple) or not all(isinstance(o, str) and o for o in self.cors_origins):
            raise InvalidSettings(f"cors_origins must be a tuple of origins, got {self.cors_origins!r}")
        if not isinstance(self.live_models, tuple) or not all(isinstance(m, str) and _LIVE_MODEL.match(m) for m in self.live_models):
            raise InvalidSettings(f"live_models must be a tuple of NAME=pkg.module:callable, got {self.live_models!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by the ``BLOCKIO_*`` variables that are set and not empty."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, (field, parse, _meaning) in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[field] = _parse(var, parse, raw.strip())
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (checked like the constructor)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:  # an unknown field name
            raise InvalidSettings(str(exc)) from None

    def with_variables(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with overrides keyed by variable name (``{"BLOCKIO_ROOT": ...}``).

        Values may be typed (``1000``, ``None``) or strings as in the
        environment (``"1000"``). Keys that are not settings raise
        :class:`InvalidSettings`; see :meth:`split_variables`.
        """
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            var = _ALIASES.get(key, key)
            if var not in ENV_VARS:
                raise InvalidSettings(f"{key} is not a setting; the settings are {', '.join(sorted(ENV_VARS))}")
            field, parse, _meaning = ENV_VARS[var]
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            changes[field] = _parse(var, parse, value) if isinstance(value, str) else value
        if isinstance(changes.get("cors_origins"), (list, set)):
            changes["cors_origins"] = tuple(changes["cors_origins"])
        return self.replace(**changes)

    @staticmethod
    def split_variables(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(settings, rest)``: the keys of a mapping that are settings, and the others."""
        known = ENV_VARS.keys() | _ALIASES.keys()
        return {k: v for k, v in mapping.items() if k in known}, {k: v for k, v in mapping.items() if k not in known}

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a cross-site reader from ``origin`` may read (always, with ``*``)."""
        return "*" in self.cors_origins or (origin is not None and origin in self.cors_origins)


def _parse(var: str, parse: Callable[[str], Any], raw: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise InvalidSettings(f"{var}={raw!r} cannot be used: {exc}") from None


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    if not origins:
        raise ValueError("give * or a comma-separated list of origins")
    return origins


def _optional(raw: str) -> str | None:
    return raw or None


_LIVE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}=[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\?\S*)?$")


def _live_models(raw: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in raw.split(";") if m.strip())
    bad = [m for m in models if not _LIVE_MODEL.match(m)]
    if bad:
        raise ValueError(f"give NAME=pkg.module:callable[?option=value&...] separated by ';', not {bad[0]!r}")
    return models


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("give 1 or 0 (true / false)")


#: variable -> (Settings field, parser of its text, meaning); the README's table lists the same
ENV_VARS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "BLOCKIO_ROOT": ("root", str, "the store root (a folder or file:// URL)"),
    "BLOCKIO_REDIS_URL": ("redis_url", _optional, "a shared Redis chunk cache (redis://host:port/db)"),
    "BLOCKIO_CACHE_BYTES": ("cache_bytes", int, "byte budget of the in-process chunk cache; 0 disables it"),
    "BLOCKIO_WRITE_TOKEN": ("write_token", _optional, "the Bearer token block writes need; unset disables writes"),
    "BLOCKIO_CORS_ORIGINS": ("cors_origins", _origins, "* or a comma-separated list of origins allowed to read"),
    "BLOCKIO_MAX_BLOCK_VOXELS": ("max_block_voxels", int, "the largest block a read may ask for, in voxels"),
    "BLOCKIO_MAX_BLOCK_BYTES": ("max_block_bytes", int, "the largest block, in bytes of the layer's dtype (reads and writes)"),
    "BLOCKIO_MAX_INFLIGHT": ("max_inflight", int, "block reads served at once per process"),
    "BLOCKIO_QUEUE_TIMEOUT_S": ("queue_timeout_s", float, "seconds a block read waits for a worker before a 503"),
    "BLOCKIO_MAX_CONTENT_LENGTH": ("max_content_length", int, "the largest request body, in bytes"),
    "BLOCKIO_VIEWER_CACHE": ("viewer_cache", _optional, "the folder Neuroglancer's client is built in"),
    "BLOCKIO_DATABASE_URL": ("database_url", _optional, "users, queues and verdicts in PostgreSQL (postgresql://...); unset: SQLite under the root"),
    "BLOCKIO_SECRET_KEY": ("secret_key", _optional, "the key that signs session cookies; unset: generated once, kept in the database"),
    "BLOCKIO_READS": ("reads", str, "open (anyone reads) or signed-in (reads need a user too)"),
    "BLOCKIO_COOKIE_SECURE": ("cookie_secure", _flag, "1: the session cookie goes over HTTPS only; 0 behind plain HTTP"),
    "BLOCKIO_RATE_PER_S": ("rate_per_s", float, "state-changing requests per second per user, per process; 0 for no limit"),
    "BLOCKIO_RATE_BURST": ("rate_burst", int, "state-changing requests a user may make at once before the rate applies"),
    "BLOCKIO_LIVE_MODELS": ("live_models", _live_models, "live model layers NAME=pkg.mod:fn[?block=x,y,z&...], separated by ';'"),
}
# Flask's own name of the body limit, accepted in create_app's mapping as before
_ALIASES = {"MAX_CONTENT_LENGTH": "BLOCKIO_MAX_CONTENT_LENGTH"}
