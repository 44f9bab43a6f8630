"""Staging folders of resumable runs (ingest, segmentation, inference).

A run stages its work under a folder holding ``plan.json`` with the
fingerprint of everything that determines its output. Rerun with the same
fingerprint, it resumes from its done markers; with another, the folder is
emptied first, so stale markers never vouch for different work.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

__all__ = ["reuse_or_reset"]

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
