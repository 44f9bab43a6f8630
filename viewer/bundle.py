"""Neuroglancer's browser client, built from the npm registry into a cache folder.

The review page embeds Neuroglancer's own default viewer, served by Flask
from the page's origin (``/neuroglancer/``), with the whole viewer state in
the URL fragment (``#!{json}``): any worker on any host answers every request.
Neuroglancer's code is never in the repository: ``viewer/client/`` holds only
``package.json`` (with its lock), the bundler's configuration and a two-line
entry; :func:`build_client` runs ``npm ci`` and Vite on them in a folder of the
cache (``BLOCKIO_VIEWER_CACHE``, default ``~/.cache/blockio``), named after
the Neuroglancer version and a digest of those files, so a changed build
file makes a new build and an unchanged one is built once per machine.

Build it explicitly (CI and deployments do, before serving)::

    python -m viewer.bundle          # prints the folder of the built client

or let the page build it on first use: the first request for ``/neuroglancer/``
starts the build in the background and answers 503 until it is there.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

from filelock import FileLock

__all__ = ["CLIENT_FILES", "NEUROGLANCER_VERSION", "ClientBuildError", "ClientBuilder", "build_client", "built_client", "client_folder", "default_cache"]

log = logging.getLogger(__name__)

NEUROGLANCER_VERSION = "2.41.2"
#: the build inputs in ``viewer/client/``; their digest names the build folder
CLIENT_FILES = ("package.json", "package-lock.json", "vite.config.js", "index.html", "main.js")
_DONE = "BUILT"
# npm ci and vite together take ~20 s on a warm npm cache; a cold one downloads ~90 MB
_STEP_TIMEOUT_S = 900


class ClientBuildError(RuntimeError):
    """Neuroglancer's client could not be built (no node/npm, no registry, a failed step)."""


def default_cache(configured: str | None = None) -> Path:
    """The cache root: ``configured`` (``BLOCKIO_VIEWER_CACHE``), else ``~/.cache/blockio``."""
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "blockio"


def _sources() -> dict[str, bytes]:
    folder = resources.files("viewer") / "client"
    return {name: (folder / name).read_bytes() for name in CLIENT_FILES}


def client_folder(cache: Path) -> Path:
    """``cache/neuroglancer-<version>-<digest of the build files>``."""
    digest = hashlib.sha256()
    for name, data in sorted(_sources().items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return cache / f"neuroglancer-{NEUROGLANCER_VERSION}-{digest.hexdigest()[:12]}"


def built_client(cache: Path) -> Path | None:
    """The folder of static files (``index.html``, ``assets/``) when built, else None."""
    dist = client_folder(cache) / "dist"
    return dist if (client_folder(cache) / _DONE).is_file() and (dist / "index.html").is_file() else None


def _run(args: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=_STEP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ClientBuildError(f"{' '.join(args[:2])} took over {_STEP_TIMEOUT_S} s in {cwd}") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise ClientBuildError(f"{' '.join(args[:2])} failed (exit {done.returncode}) in {cwd}:\n" + "\n".join(tail))


def build_client(cache: Path) -> Path:
    """Build Neuroglancer's client under ``cache`` unless it is built; returns its static folder.

    Several processes may call this at once: one builds under a file lock,
    the others wait for it and take its result.

    Raises
    ------
    ClientBuildError
        ``node`` or ``npm`` is not on ``PATH``, or ``npm ci`` / the bundler failed
        (the message ends with the tool's last lines of output).
    """
    done = built_client(cache)
    if done is not None:
        return done
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise ClientBuildError(
            "building Neuroglancer's client needs Node.js 20+ and npm on PATH "
            "(apt-get install nodejs npm); then run: python -m viewer.bundle"
        )
    folder = client_folder(cache)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        done = built_client(cache)
        if done is not None:
            return done
        folder.mkdir(exist_ok=True)
        for name, data in _sources().items():
            (folder / name).write_bytes(data)
        log.info("building Neuroglancer %s's client in %s", NEUROGLANCER_VERSION, folder)
        _run([npm, "ci", "--loglevel=error", "--no-progress", "--no-audit", "--no-fund", "--no-update-notifier"], folder)
        staging = folder / "dist.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        _run([node, str(folder / "node_modules" / "vite" / "bin" / "vite.js"), "build", "--outDir", str(staging)], folder)
        if not (staging / "index.html").is_file():
            raise ClientBuildError(f"the bundler wrote no index.html in {staging}")
        shutil.rmtree(folder / "dist", ignore_errors=True)
        staging.rename(folder / "dist")
        (folder / _DONE).write_text(NEUROGLANCER_VERSION + "\n")
    return folder / "dist"


class ClientBuilder:
    """One process's view of the client: built, being built in the background, or failed."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def folder(self) -> Path | None:
        """The static folder when built; otherwise starts a background build (once) and returns None."""
        done = built_client(self.cache)
        if done is not None:
            return done
        with self._lock:
            if self._thread is None or (not self._thread.is_alive() and self.error is None):
                self.error = None
                self._thread = threading.Thread(target=self._build, name="neuroglancer-client-build", daemon=True)
                self._thread.start()
        return None

    def retry(self) -> None:
        """Forget a failed build so that the next :meth:`folder` tries again."""
        with self._lock:
            if self._thread is not None and not self._thread.is_alive():
                self._thread, self.error = None, None

    def _build(self) -> None:
        try:
            build_client(self.cache)
        except (ClientBuildError, OSError) as exc:
            log.error("Neuroglancer's client was not built: %s", exc)
            self.error = str(exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m viewer.bundle [--cache DIR]``: build the client, print its folder."""
    import argparse

    from blockio.config import Settings

    parser = argparse.ArgumentParser(prog="python -m viewer.bundle", description="Build Neuroglancer's client for the review page.")
    parser.add_argument("--cache", help="cache root (default: BLOCKIO_VIEWER_CACHE, else ~/.cache/blockio)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(build_client(default_cache(args.cache or Settings.from_env().viewer_cache)))
    except ClientBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
