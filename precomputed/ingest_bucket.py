"""Ingest straight into an ``s3://`` or ``gs://`` root: staged, resumable, published by one catalog write.

The same tasks as a local ingest (:mod:`precomputed.ingest_tasks`), with keys
under the bucket for paths; what differs is staging and the commit, because
an object store cannot rename a folder:

``.staging/<id>/plan.json``
    The fingerprint of the plan and the run's version ``tag``, created with a
    create-only conditional PUT (two runs planned at once share one tag).
``.staging/<id>/tasks/*``
    Done markers and source digests, as objects.
``zarr/<id>~<tag>.zarr``, ``precomputed/<id>/image~<tag>``
    The stores, written in place by the tasks: no record names these prefixes
    until the commit, so no reader can see them half written.

The commit is one conditional catalog write (:meth:`Catalog.update`) whose
record names the new prefixes; readers see the old dataset or the new one,
whole. Then the prefixes the old record named and the staging objects are
deleted. A run killed anywhere is resumed by the same command: the tag comes
from the staged plan, finished tasks are skipped, and the other tasks write
the same keys with the same bytes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .bucket import delete_prefix, new_tag, root_storage, versioned
from .catalog import Catalog, record_errors
from .errors import DatasetExists
from .ingest_run import Layout, Run, write_stores
from .staging import staged_plan
from .storage import Storage

__all__ = ["ingest_into_bucket", "layout_of", "store_prefixes"]

log = logging.getLogger(__name__)

STAGING = ".staging"


def layout_of(root: str, dataset_id: str, tag: str) -> Layout:
    """Where the run with version ``tag`` writes the stores of ``dataset_id`` under the bucket root ``root``."""
    return Layout(
        zarr=versioned(f"zarr/{dataset_id}", tag, ".zarr"),
        layer=versioned(f"precomputed/{dataset_id}/image", tag),
        tasks=f"{STAGING}/{dataset_id}/tasks",
        root=root,
    )


def store_prefixes(record: dict[str, Any] | None) -> set[str]:
    """Every store prefix a record names: its OME-Zarr image (labels inside) and each layer's path."""
    if record is None:
        return set()
    found = {str(record.get("stores", {}).get("zarr", ""))}
    found |= {str(meta.get("path", "")) for meta in record.get("layers", {}).values()}
    return {p.strip("/") for p in found if p.strip("/")}


def _plan(storage: Storage, staging: str, run: Run, catalog: Catalog) -> dict[str, Any]:
    fingerprint = run.fingerprint

    def discard(old: dict[str, Any]) -> None:  # an abandoned run's stores, unless the catalog names them
        if "tag" not in old:
            return
        abandoned = layout_of(catalog.url, run.dataset_id, str(old["tag"]))
        live = store_prefixes(catalog.get(run.dataset_id)) if run.dataset_id in catalog else set()
        for prefix in (abandoned.zarr, abandoned.layer):
            if prefix not in live:
                delete_prefix(storage, prefix)

    doc = staged_plan(storage, staging, fingerprint, "ingest", discard=discard)
    if doc is not None:
        log.info("resuming the ingest of %s from %s", run.dataset_id, storage.url_for(staging))
        return doc
    doc = {"fingerprint": fingerprint, "plan": run.plan, "tag": new_tag(), "stores": False}
    text = json.dumps(doc, indent=1, default=str).encode()
    if storage.put_if(f"{staging}/plan.json", text, token=None, content_type="application/json"):
        return doc
    # another run of the same dataset planned at the same moment: join it if it is the same plan
    other: dict[str, Any] = json.loads(storage.get(f"{staging}/plan.json") or b"{}")
    if other.get("fingerprint") != fingerprint:
        raise DatasetExists(f"another ingest of {run.dataset_id!r} into {catalog.url} with other inputs is running")
    return other


def ingest_into_bucket(run: Run, catalog: Catalog) -> dict[str, Any]:
    """Write, resume and publish one ingest on the bucket root of ``catalog``; returns the record."""
    root = catalog.url
    storage = root_storage(root)
    staging = f"{STAGING}/{run.dataset_id}"
    doc = _plan(storage, staging, run, catalog)
    layout = layout_of(root, run.dataset_id, str(doc["tag"]))
    if run.dataset_id in catalog:
        current = catalog.get(run.dataset_id)
        if current["stores"]["zarr"] == layout.zarr:  # published, then killed before cleaning up
            delete_prefix(storage, staging)
            return current
    if not doc.get("stores"):
        run.create_stores(layout)
        doc = {**doc, "stores": True}
        storage.put(f"{staging}/plan.json", json.dumps(doc, indent=1, default=str).encode(), content_type="application/json")
    record = write_stores(run, layout)
    record["stores"] = {"zarr": layout.zarr, "precomputed": layout.layer}
    record["layers"]["image"]["path"] = layout.layer
    record, old = _publish(catalog, record, run.options.overwrite)
    for prefix in store_prefixes(old) - store_prefixes(record):
        removed = delete_prefix(storage, prefix)
        log.info("removed %d objects of the replaced store %s", removed, storage.url_for(prefix))
    delete_prefix(storage, staging)
    return record


def _publish(catalog: Catalog, record: dict[str, Any], overwrite: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The one conditional catalog write that makes the new stores live; returns it and the record it replaced."""
    problems = record_errors(record)
    if problems:
        raise RuntimeError(f"internal: the new record of {record['id']!r} fails the schema: {problems[0]}")
    replaced: list[dict[str, Any] | None] = [None]

    def change(old: dict[str, Any] | None) -> dict[str, Any]:
        if old is not None and not overwrite:
            raise DatasetExists(f"dataset {record['id']!r} was catalogued by another process meanwhile; pass --overwrite to replace it")
        replaced[0] = old  # the attempt that lands is the last one to run
        return {**record, "created": old.get("created", record["created"])} if old else record

    new = catalog.update(record["id"], change)
    return new or record, replaced[0]
