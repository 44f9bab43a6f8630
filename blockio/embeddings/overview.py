"""An overview of a cell embedding set: its first three principal components as RGB, a precomputed image layer.

>>> layer = write_overview("blockio-data", "demo", "cells")   # layer "cells-pca"

The set's vectors ``[D, nz, ny, nx]`` are standardised per dimension (the
features of a set have different units), the principal axes are fitted
(numpy's SVD; on at most :data:`FIT_ROWS` cells drawn at random), and each
cell's first three components are mapped to 0..255 between their 1st and
99th percentiles: red, green and blue. Similar cells get similar colours.

The layer is written with CloudVolume's ``info`` and our atomic, checksummed
chunk writer in the image's physical grid at the cell resolution: voxel
``(i, j, k)`` is cell ``(i, j, k)``, its voxel size the cell's size in nm,
so Neuroglancer draws it over the image. It is catalogued as an image layer
(``<set>-pca``, 3 channels, uint8) whose provenance names the set and the
set's plan: :func:`overview_layers` lists the current ones, and a set
computed anew makes its overview stale until it is written again.
"""

from __future__ import annotations

import copy
import os
import shutil
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest

__all__ = ["FIT_ROWS", "OVERVIEW_KIND", "overview_layers", "overview_name", "pca_rgb", "write_overview"]

FIT_ROWS = 200_000
OVERVIEW_KIND = "embedding-overview"
_CHUNK = 64


def overview_name(name: str) -> str:
    """The overview layer of set ``name``."""
    return f"{name}-pca"


def pca_rgb(vectors: npt.NDArray[Any], *, seed: int = 0) -> tuple[npt.NDArray[np.uint8], dict[str, Any]]:
    """``[n, 3]`` uint8 colours of ``[n, D]`` vectors (their first three principal components) and the fit.

    Each axis's sign is chosen so that its largest loading is positive (the
    same colours for the same set). Fewer than three dimensions leave the
    missing channels at 0.

    Returns
    -------
    rgb, fit
        ``fit`` holds ``mean``, ``scale``, ``axes`` ``[3, D]``, ``low`` and
        ``high`` (the 1st and 99th percentiles of each component) and
        ``explained_variance_ratio``.
    """
    data = np.asarray(vectors, dtype=np.float64)
    if data.ndim != 2 or len(data) == 0:
        raise InvalidRequest(f"an overview needs [n, D] vectors, got shape {list(data.shape)}")
    rng = np.random.default_rng(seed)
    sample = data if len(data) <= FIT_ROWS else data[rng.choice(len(data), FIT_ROWS, replace=False)]
    mean = sample.mean(axis=0)
    scale = sample.std(axis=0)
    scale[scale == 0] = 1.0
    centred = (sample - mean) / scale
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    count = min(3, vt.shape[0])
    axes = vt[:count] * np.sign(vt[:count][np.arange(count), np.abs(vt[:count]).argmax(axis=1)])[:, None]
    variance = singular**2
    scores = centred @ axes.T
    low, high = np.percentile(scores, 1, axis=0), np.percentile(scores, 99, axis=0)
    fit = {"mean": mean, "scale": scale, "axes": axes, "low": low, "high": high,
           "explained_variance_ratio": (variance[:count] / max(float(variance.sum()), 1e-300)).tolist()}  # fmt: skip
    return _colours(data, fit), fit


def _colours(data: npt.NDArray[np.float64], fit: dict[str, Any]) -> npt.NDArray[np.uint8]:
    scores = ((data - fit["mean"]) / fit["scale"]) @ fit["axes"].T
    span = np.where(fit["high"] > fit["low"], fit["high"] - fit["low"], 1.0)
    rgb = np.zeros((len(data), 3), dtype=np.uint8)
    rgb[:, : scores.shape[1]] = np.clip(np.rint((scores - fit["low"]) / span * 255.0), 0, 255).astype(np.uint8)
    return rgb


def write_overview(root: str | os.PathLike[str], dataset_id: str, name: str) -> dict[str, Any]:
    """Write (or rewrite) the PCA overview layer of cell set ``name``; returns its catalog layer entry.

    Raises
    ------
    InvalidRequest
        The set is per segment (an overview is a grid of cells).
    LayerNotFound
        No such set.
    """
    import zarr

    from blockio.embeddings.records import set_entry
    from blockio.store import open_store
    from precomputed.catalog import Catalog, new_version
    from precomputed.checksum_writes import update_checksums
    from precomputed.image_layer import create_image_layer, open_layer, write_box
    from precomputed.ingest import STAGING, local_root
    from precomputed.pyramid import Mip

    root_path = local_root(root)
    record = open_store(str(root_path)).info(dataset_id)
    entry = set_entry(record, name)
    if entry["granularity"] != "cell":
        raise InvalidRequest(f"set {name!r} of {dataset_id!r} is per segment; an overview layer is made of a cell set")
    array = zarr.open_array(str(root_path / entry["array"]), mode="r")
    d, nz, ny, nx = array.shape
    vectors = np.asarray(array[...], dtype=np.float32).reshape(d, -1).T  # key order: x fastest
    rgb, fit = pca_rgb(vectors)
    block = np.ascontiguousarray(rgb.T.reshape(3, nz, ny, nx))
    layer = overview_name(name)
    cnx, cny, cnz = (float(v) for v in entry["cell"]["nm"])
    staging = root_path / STAGING / dataset_id / f"{layer}-overview"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    chunk = (min(_CHUNK, nx), min(_CHUNK, ny), min(_CHUNK, nz))
    create_image_layer(str(staging), mips=[Mip(0, (nx, ny, nz), (cnx, cny, cnz), (1, 1, 1))], channels=3, dtype=np.dtype(np.uint8), chunk_size=chunk)
    vol = open_layer(str(staging), 0)
    update_checksums(str(staging), vol.key, write_box(vol, (0, 0, 0), block))
    relative = f"precomputed/{dataset_id}/{layer}"
    final = root_path / relative
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    meta = {
        "type": "image",
        "path": relative,
        "version": new_version(),
        "provenance": {
            "kind": OVERVIEW_KIND,
            "embedding": name,
            "set_plan": entry.get("provenance", {}).get("plan"),
            "method": "pca of standardised vectors, components 1-3 as red, green, blue between their 1st and 99th percentiles",
            "explained_variance_ratio": [round(float(v), 6) for v in fit["explained_variance_ratio"]],
            "cell": entry["cell"],
            "grid": [nx, ny, nz],
        },
    }

    def change(old_record: dict[str, Any] | None) -> dict[str, Any]:
        if old_record is None:
            raise InvalidRequest(f"dataset {dataset_id!r} was removed from the catalog")
        new = copy.deepcopy(old_record)
        new["layers"][layer] = copy.deepcopy(meta)
        return new

    Catalog(str(root_path)).update(dataset_id, change)
    return meta


def overview_layers(record: dict[str, Any]) -> dict[str, str]:
    """``{layer: set name}`` of the record's overview layers that match their set as it is now."""
    sets = record.get("embeddings") or {}
    out = {}
    for layer, meta in sorted(record["layers"].items()):
        prov = meta.get("provenance") or {}
        if prov.get("kind") != OVERVIEW_KIND:
            continue
        entry = sets.get(prov.get("embedding"))
        if entry is not None and (entry.get("provenance") or {}).get("plan") == prov.get("set_plan"):
            out[layer] = str(prov["embedding"])
    return out
