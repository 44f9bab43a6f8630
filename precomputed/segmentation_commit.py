"""Committing a staged segmentation layer: both stores into place, then its record.

A commit is a journal and four steps, each of which a rerun can tell is done,
so a process killed anywhere leaves a state that the next call finishes
(:func:`resume_commit`) instead of refusing or corrupting:

1. ``commit.json`` in the staging folder holds the layer's record (with its
   version) and whether it may replace a layer of that name. From here on the
   commit only goes forward.
2. What the layer replaces (``ROOT/precomputed/<id>/<name>/`` and
   ``ROOT/zarr/<id>.zarr/labels/<name>``) is parked in
   ``ROOT/.staging/.trash-<id>-<name>/``, and the staged stores are moved into
   place; a store is in place when its staged folder is gone.
3. The name is listed in the labels group and the record put in the catalog;
   done when the catalog holds this version.
4. The staging folder is moved into the trash in one rename (the journal
   goes with it), and the trash is deleted.

Steps 2 and 3 run under the catalog lock. An exception (not a kill) in them
moves everything back and removes the journal, leaving the staged layer as it
was for another :meth:`~precomputed.segmentation.SegmentationWriter.finalize`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, cast

from filelock import FileLock, Timeout

from . import labels
from .atomic import replace_file
from .catalog import Catalog, now
from .errors import DatasetExists, DatasetNotFound, StoreError
from .ingest import STAGING

__all__ = ["JOURNAL", "commit_layer", "finish_commit", "read_journal", "resume_commit", "staging_folder"]

log = logging.getLogger(__name__)

JOURNAL = "commit.json"
FINALIZE_LOCK = "finalize.lock"


def staging_folder(root: Path, dataset_id: str, name: str) -> Path:
    """``ROOT/.staging/<id>/<name>/``: the staged layer, its plan, markers and journal."""
    return root / STAGING / dataset_id / name


def _trash(root: Path, dataset_id: str, name: str) -> Path:
    return root / STAGING / f".trash-{dataset_id}-{name}"


def read_journal(staging: Path) -> dict[str, Any] | None:
    """The journal of a commit under way in ``staging``, or None."""
    try:
        return cast(dict[str, Any], json.loads((staging / JOURNAL).read_text()))
    except FileNotFoundError:
        return None


def commit_layer(root: Path, dataset_id: str, name: str, layer: dict[str, Any]) -> dict[str, Any]:
    """Write the journal for ``layer`` (its catalog record) and commit it; returns the record.

    The caller holds the staging folder's finalize lock.
    """
    staging = staging_folder(root, dataset_id, name)
    overwrite = bool(json.loads((staging / "writer.json").read_text()).get("overwrite", False))
    # without a journal, a trash folder is what a commit killed while deleting it left
    shutil.rmtree(_trash(root, dataset_id, name), ignore_errors=True)
    replace_file(staging / JOURNAL, json.dumps({"layer": layer, "overwrite": overwrite}, allow_nan=False))
    return finish_commit(root, dataset_id, name)


def finish_commit(root: Path, dataset_id: str, name: str) -> dict[str, Any]:
    """Take the journalled commit of layer ``name`` forward from wherever it stopped; returns the record.

    The caller holds the staging folder's finalize lock (see :func:`resume_commit`).

    Raises
    ------
    DatasetExists
        The catalog got another layer of that name meanwhile and the layer may not replace it.
    DatasetNotFound
        The dataset left the catalog meanwhile.
    """
    staging = staging_folder(root, dataset_id, name)
    journal = read_journal(staging)
    if journal is None:
        raise RuntimeError(f"internal: no commit journal in {staging}")
    layer: dict[str, Any] = journal["layer"]
    trash = _trash(root, dataset_id, name)
    catalog = Catalog(root)
    with catalog.lock():
        record = catalog.get(dataset_id)
        if record["layers"].get(name, {}).get("version") != layer["version"]:
            _move_and_record(catalog, record, name, layer, staging, trash, overwrite=bool(journal["overwrite"]))
    if staging.exists():
        trash.mkdir(parents=True, exist_ok=True)
        _discard(staging, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return layer


def resume_commit(root: Path, dataset_id: str, name: str) -> dict[str, Any] | None:
    """Finish a commit of layer ``name`` that a killed process left; None when there is none.

    Raises
    ------
    DatasetExists
        Another process is finalising the layer right now.
    """
    staging = staging_folder(root, dataset_id, name)
    if read_journal(staging) is None:
        return None
    lock = FileLock(str(staging / FINALIZE_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise DatasetExists(f"layer {name!r} of {dataset_id!r} is being finalised by another process") from exc
    try:
        if read_journal(staging) is None:  # finished by the process that held the lock
            return None
        log.info("finishing the interrupted commit of layer %s of %s", name, dataset_id)
        return finish_commit(root, dataset_id, name)
    finally:
        lock.release()


def _stores(root: Path, record: dict[str, Any], name: str, staging: Path, trash: Path) -> list[tuple[Path, Path, Path]]:
    """(staged, final, parked) of the precomputed layer and the OME-Zarr labels."""
    final_labels = root / record["stores"]["zarr"] / "labels" / name
    final_layer = root / "precomputed" / record["id"] / name
    return [(staging / "layer", final_layer, trash / "layer"), (staging / "labels.zarr", final_labels, trash / "labels")]


def _move_and_record(catalog: Catalog, record: dict[str, Any], name: str, layer: dict[str, Any], staging: Path, trash: Path, *, overwrite: bool) -> None:
    stores = _stores(catalog.root, record, name, staging, trash)
    labels_group = stores[1][1].parent
    listed = labels.ensure_labels_group(labels_group)
    try:
        old = record["layers"].get(name)
        if old is not None and not overwrite:
            raise DatasetExists(f"dataset {record['id']!r} got a layer {name!r} meanwhile; create it with overwrite=True to replace it")
        if old is not None and old.get("version") is not None and layer["version"] <= old["version"]:
            raise RuntimeError(f"internal: version {layer['version']} is not after {old['version']}")
        trash.mkdir(parents=True, exist_ok=True)
        for staged, final, parked in stores:
            _move_into_place(staged, final, parked)
        if name not in listed:
            labels.set_labels(labels_group, [*listed, name])

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise DatasetNotFound(f"dataset {record['id']!r} was removed from the catalog meanwhile")
            return {**current, "layers": {**current["layers"], name: layer}, "updated": now()}

        catalog.update(record["id"], change)
    except BaseException:
        for staged, final, parked in reversed(stores):
            if final.exists() and not staged.exists():
                os.replace(final, staged)
            if parked.exists() and not final.exists():
                os.replace(parked, final)
        if name not in listed:
            labels.set_labels(labels_group, listed)
        (staging / JOURNAL).unlink(missing_ok=True)
        raise


def _move_into_place(staged: Path, final: Path, parked: Path) -> None:
    """Park what ``final`` holds, then move ``staged`` there; done already when ``staged`` is gone."""
    if not staged.exists():
        if not final.exists():
            raise StoreError(f"the staged {staged} and the committed {final} are both missing; write the layer again")
        return
    if final.exists():
        if parked.exists():
            raise StoreError(f"{final} appeared while a commit had it parked in {parked}; move one of them away and rerun")
        os.replace(final, parked)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


def _discard(staging: Path, trash: Path) -> None:
    """Step 4: the staging folder leaves in one rename, so it is whole or gone."""
    os.replace(staging, trash / "staging")
