"""The catalog record an ingest writes: shape, stores, layers, statistics, source and provenance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import SCHEMA_VERSION, new_version, now
from .hashing import manifest_sha256
from .imputation import VoxelSize
from .readers.base import Sourced, VolumeReader
from .readers.cast import CastReader, cast_detail

if TYPE_CHECKING:
    from .ingest import IngestOptions

__all__ = ["build_record", "source_entry", "voxel_provenance"]


def voxel_provenance(voxel_size: VoxelSize) -> dict[str, Any]:
    """The record's ``provenance.voxel_size``: overall source and detail, and each axis's own."""
    axes = {name: {"source": a.source, "detail": a.detail} for name, a in zip("xyz", voxel_size.axes)}
    return {"source": voxel_size.source, "detail": voxel_size.detail, "axes": axes}


def source_entry(reader: VolumeReader, spec: Any, files: list[Path], digests: list[str]) -> dict[str, Any]:
    """The record's ``source``: where the data came from and which part of it was read."""
    out: dict[str, Any] = {
        "paths": [str(Path(p).absolute()) for p in reader.paths],
        "format": reader.format,
        "bytes": int(sum(f.stat().st_size for f in files)),
        "sha256": manifest_sha256(files, digests),
        "axes": reader.axes.value,
        "dataset_key": spec.dataset_key,
    }
    if spec.series is not None:
        out["series"] = spec.series
    if spec.timepoint is not None:
        out["timepoint"] = spec.timepoint
    if isinstance(reader, CastReader):
        out["dtype"] = np.dtype(reader.source_dtype).name
    return out


def build_record(reader: VolumeReader, spec: Any, dataset_id: str, options: IngestOptions, mips: list[Any], voxel_size: VoxelSize, chunk: Sourced, record_stats: dict[str, Any], files: list[Path], digests: list[str]) -> dict[str, Any]:
    """The catalog record of a finished ingest (its stores are ``zarr/<id>.zarr`` and ``precomputed/<id>/image``)."""
    stamp = now()
    fmt = reader.format
    dtype_provenance = {"source": "array", "detail": f"dtype of the {fmt} array"}
    if isinstance(reader, CastReader):
        dtype_provenance = {"source": "user", "detail": cast_detail(reader.source_dtype, reader.target)}
    record: dict[str, Any] = {
        "id": dataset_id,
        "shape": list(reader.shape),
        "channels": reader.channels,
        "dtype": np.dtype(reader.dtype).name,
        "voxel_size": list(voxel_size.value),
        "chunk_size": list(chunk.value),
        "mips": [{"voxel_size": list(m.voxel_size), "shape": list(m.shape), "factor": list(m.factor)} for m in mips],
        "stores": {"zarr": f"zarr/{dataset_id}.zarr", "precomputed": f"precomputed/{dataset_id}/image"},
        "layers": {
            "image": {
                "type": "image",
                "path": f"precomputed/{dataset_id}/image",
                "encoding": "raw",
                "compression": options.compress,
                "version": new_version(),  # not the stamp: two ingests in one second must differ
            }
        },
        "stats": record_stats,
        "source": source_entry(reader, spec, files, digests),
        "provenance": {
            "shape": {"source": "array", "detail": f"shape of the {fmt} array"},
            "channels": {"source": "array" if reader.channels == 1 else reader.axes.source, "detail": f"axes {reader.axes.value!r}"},
            "dtype": dtype_provenance,
            "axes": {"source": reader.axes.source, "detail": reader.axes.detail},
            "voxel_size": voxel_provenance(voxel_size),
            "chunk_size": {"source": chunk.source, "detail": chunk.detail},
            "mips": {"source": "default", "detail": "anisotropy-aware plan: 2x2x1 until near-isotropic, then 2x2x2, until one chunk"},
            "stats": {"source": "array", "detail": "streamed over every voxel at ingest"},
            "ingest": {"source": "user", "detail": options.command or f"ingest {spec.paths[0]} --id {dataset_id}"},
        },
        "created": stamp,
        "updated": stamp,
        "schema_version": SCHEMA_VERSION,
    }
    if reader.origin is not None:
        record["provenance"]["origin"] = {"source": reader.origin.source, "detail": reader.origin.detail}
    return record
