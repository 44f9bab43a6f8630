"""Preparing CloudFiles (and so CloudVolume) for a bucket root: endpoint aliases, credentials.

Two things CloudFiles would otherwise let the user meet:

- **An endpoint in the path.** CloudFiles reads ``s3://https://host:port/bucket/key``
  but CloudVolume refuses it. :func:`endpoint_alias` registers a CloudFiles
  alias for the endpoint (``blockio_<digest>://bucket/key``), which both
  accept. Aliases live in the process: :func:`precomputed.storage.open_root`
  registers them again in every process that opens the root.
- **A session token that is not set.** With ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` in the environment but no ``AWS_SESSION_TOKEN``
  (long-lived keys: the usual case), CloudFiles' credential lookup raises
  ``KeyError: 'AWS_SESSION_TOKEN'``. :func:`guard_aws_credentials` wraps that
  lookup so a missing token is simply no token, and an endpoint alias reads
  the same ``aws-secret.json`` as ``s3://`` (CloudFiles would look for
  ``<alias>-secret.json``).
- **Console noise.** Without a ``google-secret.json``, CloudFiles prints a
  coloured warning on stdout for every bucket it opens, although application
  default credentials (or ``STORAGE_EMULATOR_HOST``) are the normal case.
  :func:`guard_google_credentials` returns "no secrets file" quietly instead,
  and google-cloud-storage finds the credentials the standard way.

Endpoints without anything in the path come the standard way: boto3 reads
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and the AWS credential
variables, files and profiles itself; google-cloud-storage reads
``STORAGE_EMULATOR_HOST`` and application default credentials; CloudFiles
adds CloudVolume's secrets files (``~/.cloudvolume/secrets/aws-secret.json``,
``google-secret.json``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["endpoint_alias", "guard_aws_credentials", "guard_google_credentials", "split_endpoint"]

_ENDPOINT_IN_PATH = re.compile(r"^s3://(?P<endpoint>https?://[^/]+)/(?P<rest>.*)$")
_guard_lock = threading.Lock()
ALIAS_PREFIX = "blockio_"


def split_endpoint(url: str) -> tuple[str | None, str]:
    """``("http://host:port", "bucket/prefix")`` for ``s3://http://host:port/bucket/prefix``, else ``(None, rest)``."""
    match = _ENDPOINT_IN_PATH.match(url)
    if match:
        return match.group("endpoint"), match.group("rest")
    return None, url.removeprefix("s3://")


def endpoint_alias(endpoint: str) -> str:
    """The CloudFiles alias (registered in this process) that stands for an S3 ``endpoint``.

    The name is a digest of the endpoint, so every process derives the same
    alias and URLs built in one work in another that opened the same root.
    """
    from cloudfiles import paths

    alias = ALIAS_PREFIX + hashlib.sha1(endpoint.encode("utf-8")).hexdigest()[:12]
    if paths.ALIASES.get(alias) != f"s3://{endpoint}/":
        paths.add_alias(alias, f"s3://{endpoint}/")
        clear = getattr(paths.extract_format_protocol, "cache_clear", None)
        if clear is not None:  # an earlier parse of this alias's URLs is cached
            clear()
    return alias


def _without_session_token(lookup: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(lookup)
    def credentials(bucket: str = "", service: str = "aws", skip_files: bool = False) -> dict[str, Any]:
        if service.startswith(ALIAS_PREFIX):  # an endpoint alias is still S3: read aws-secret.json, not <alias>-secret.json
            service = "aws"
        try:
            return lookup(bucket, service, skip_files)
        except KeyError as exc:
            if exc.args != ("AWS_SESSION_TOKEN",):
                raise
            found: dict[str, Any] = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION") if k in os.environ}
            return found

    credentials.__dict__["__blockio_guarded__"] = True
    return credentials


def _guard(name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace CloudFiles' credential lookup ``name`` by ``wrap(lookup)`` in both modules that hold it, once."""
    from cloudfiles import connectionpools, secrets

    with _guard_lock:
        for module in (secrets, connectionpools):
            lookup = getattr(module, name)
            if not getattr(lookup, "__blockio_guarded__", False):
                setattr(module, name, wrap(lookup))


def guard_aws_credentials() -> None:
    """Make CloudFiles' AWS credential lookup accept keys without a session token (idempotent)."""
    _guard("aws_credentials", _without_session_token)


def _quiet_google(lookup: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
    from cloudfiles import secrets

    @functools.wraps(lookup)
    def credentials(bucket: str = "") -> tuple[Any, Any]:
        names = ([f"{bucket}-google-secret.json"] if bucket else []) + ["google-secret.json"]
        if any(os.path.exists(secrets.secretpath(name)) for name in names):
            return lookup(bucket)
        return os.environ.get("GOOGLE_CLOUD_PROJECT") or secrets.PROJECT_NAME, None

    credentials.__dict__["__blockio_guarded__"] = True
    return credentials


def guard_google_credentials() -> None:
    """Make CloudFiles' Google credential lookup fall back to default credentials without printing (idempotent)."""
    _guard("google_credentials", _quiet_google)
