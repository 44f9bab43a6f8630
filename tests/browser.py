"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by the
``playwright`` package (never ``playwright install``), with the project's flags.

A test without Chromium or playwright is skipped, naming what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "WEBGL_ARGS", "launch_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync")
"""Every launch: no sandbox (CI runs as root), no GPU, nothing fetched in the background."""
WEBGL_ARGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")
"""WebGL in software, for pages that render with Neuroglancer."""


@contextmanager
def launch_chromium(*extra_args: str) -> Iterator[Any]:
    """A launched playwright ``Browser`` with ``CHROMIUM_ARGS`` and ``extra_args``, closed on exit."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed: pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
