"""Staging folders of resumable runs (ingest, segmentation, inference).

A run stages its work under a folder holding ``plan.json`` with the
fingerprint of everything that determines its output. Rerun with the same
fingerprint, it resumes from its done markers; with another, the folder is
emptied first, so stale markers never vouch for different work. On a
bucket root the folder is a key prefix and the markers are objects
(:func:`staged_plan`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["reuse_or_reset", "staged_plan"]

log = logging.getLogger(__name__)


def reuse_or_reset(staging: Path, fingerprint: str, what: str) -> bool:
    """True when ``staging`` holds an unfinished run of the same plan; else empty it (created if missing)."""
    plan_file = staging / "plan.json"
    if plan_file.exists():
        try:
            previous = json.loads(plan_file.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            previous = None
        if previous == fingerprint:
            return True
        log.warning("discarding an unfinished %s in %s: its inputs or options changed", what, staging)
    if staging.exists():
        for child in list(staging.iterdir()):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    return False


def staged_plan(storage: Storage, staging: str, fingerprint: str, what: str, *, discard: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """The bucket side of :func:`reuse_or_reset`: the plan document under the key prefix ``staging``.

    Returns the staged ``plan.json`` when it holds the same fingerprint (an
    unfinished run to resume); otherwise deletes every object under
    ``staging/`` (stale markers must never vouch for other work) and returns None.
    """
    from .bucket import delete_prefix

    data = storage.get(f"{staging}/plan.json")
    if data is not None:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("fingerprint") == fingerprint:
            return doc
        log.warning("discarding an unfinished %s in %s: its inputs or options changed", what, storage.url_for(staging))
        if isinstance(doc, dict) and discard is not None:
            discard(doc)
    delete_prefix(storage, staging)
    return None
