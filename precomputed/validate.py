"""Checks that a catalog record and the stores it points to agree.

Used by ``blockio catalog validate``: every problem is one line naming the
dataset, the file and what is wrong. A record's own problems come from the
schema (and numbers that are not finite); its stores' from their metadata
and a scan of every precomputed layer's chunk files
(:func:`precomputed.layer_scan.scan_layer`: missing and truncated chunks).
A deeper pass over every chunk's bytes passes its checks as ``chunk_checks``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .layer_scan import DEFAULT_CHECKS, ChunkCheck, scan_layer

__all__ = ["missing_fields", "validate_catalog", "validate_record"]


def _load_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"{path} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable: {exc}"


def validate_record(root: Path, record: dict[str, Any], *, chunk_checks: Sequence[ChunkCheck] = DEFAULT_CHECKS, zarr_chunks: bool = False) -> list[str]:
    """Problems with one (schema-valid) record's stores; empty when all is well.

    ``chunk_checks`` run on every chunk file of every precomputed layer (see
    :mod:`precomputed.layer_scan`); the default only compares sizes.
    ``zarr_chunks`` also decodes every chunk of the OME-Zarr copy.
    """
    problems: list[str] = []
    mips = record["mips"]
    zarr_root = root / record["stores"]["zarr"]
    group, err = _load_json(zarr_root / "zarr.json")
    if err:
        problems.append(err)
    else:
        try:
            datasets = group["attributes"]["ome"]["multiscales"][0]["datasets"]
        except (KeyError, IndexError, TypeError):
            problems.append(f"{zarr_root}/zarr.json has no OME-Zarr multiscales metadata")
            datasets = []
        if datasets and len(datasets) != len(mips):
            problems.append(f"{zarr_root}: {len(datasets)} multiscale levels, the record lists {len(mips)} mips")
        for level, mip in enumerate(mips):
            meta, err = _load_json(zarr_root / str(level) / "zarr.json")
            if err:
                problems.append(err)
                continue
            shape = list(reversed(meta.get("shape", [])[-3:]))
            if shape != mip["shape"]:
                problems.append(f"{zarr_root}/{level}: shape (x, y, z) {shape}, the record says {mip['shape']}")
    if zarr_chunks and not err:
        from .chunk_audit import audit_zarr

        problems.extend(audit_zarr(zarr_root))
    for name, layer in record["layers"].items():
        layer_root = root / layer["path"]
        info, err = _load_json(layer_root / "info")
        if err:
            problems.append(err)
            continue
        if info.get("type") != layer["type"]:
            problems.append(f"{layer_root}/info: type {info.get('type')!r}, the record says {layer['type']!r}")
        if name == "image":
            scales = info.get("scales", [])
            if len(scales) != len(mips):
                problems.append(f"{layer_root}/info: {len(scales)} scales, the record lists {len(mips)} mips")
            for level, (scale, mip) in enumerate(zip(scales, mips)):
                if list(scale.get("size", [])) != mip["shape"]:
                    problems.append(f"{layer_root}/info scale {level}: size {scale.get('size')}, the record says {mip['shape']}")
                if [float(v) for v in scale.get("resolution", [])] != [float(v) for v in mip["voxel_size"]]:
                    problems.append(f"{layer_root}/info scale {level}: resolution {scale.get('resolution')}, the record says {mip['voxel_size']}")
                if not (layer_root / scale.get("key", "?")).is_dir():
                    problems.append(f"{layer_root}/{scale.get('key')}: no chunk folder for mip {level}")
        try:
            problems.extend(scan_layer(layer_root, fill_missing=bool(layer.get("fill_missing", False)), checks=chunk_checks))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # an info without the fields a scan needs
            problems.append(f"{layer_root}/info: its chunks cannot be scanned: {exc}")
    return problems


def validate_catalog(root: Path, *, chunk_checks: Sequence[ChunkCheck] = DEFAULT_CHECKS, zarr_chunks: bool = False) -> dict[str, list[str]]:
    """``{id: problems}`` for every dataset in the root's catalog (options as in :func:`validate_record`)."""
    out: dict[str, list[str]] = {}
    for dataset_id, record, problems in Catalog(root).records():
        out[dataset_id] = problems if record is None else validate_record(root, record, chunk_checks=chunk_checks, zarr_chunks=zarr_chunks)
    return out


def missing_fields(record: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, detail)`` for every field whose value is still a default guess."""
    skip = {"chunk_size", "mips"}  # layout choices of ours, not facts about the data
    return [
        (name, entry.get("detail", ""))
        for name, entry in sorted(record.get("provenance", {}).items())
        if entry.get("source") == "default" and name not in skip
    ]
