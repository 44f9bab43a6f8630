"""Independent checks of ingest output: CloudVolume, TensorStore and zarr-python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorstore as ts
import zarr
from cloudvolume import CloudVolume

from precomputed.pyramid import downsample_average


def reference_pyramid(source_czyx: npt.NDArray[Any], record: dict[str, Any]) -> list[npt.NDArray[Any]]:
    """Every mip computed from the whole source array at once."""
    levels = [source_czyx]
    for mip in record["mips"][1:]:
        levels.append(downsample_average(levels[-1], tuple(mip["factor"])))
    return levels


def read_precomputed_cloudvolume(root: Path, record: dict[str, Any], mip: int) -> npt.NDArray[Any]:
    vol = CloudVolume(f"file://{root / record['stores']['precomputed']}", mip=mip, progress=False, fill_missing=False)
    return np.asarray(vol[:, :, :]).T  # (x, y, z, c) -> [c, z, y, x]


def read_precomputed_tensorstore(root: Path, record: dict[str, Any], mip: int) -> npt.NDArray[Any]:
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{root / record['stores']['precomputed']}", "scale_index": mip}).result()
    return np.asarray(store.read().result()).T


def read_zarr(root: Path, record: dict[str, Any], mip: int) -> npt.NDArray[Any]:
    data = np.asarray(zarr.open_array(str(root / record["stores"]["zarr"] / str(mip)), mode="r")[...])
    return data if data.ndim == 4 else data[None]


def read_zarr_tensorstore(root: Path, record: dict[str, Any], mip: int) -> npt.NDArray[Any]:
    store = ts.open({"driver": "zarr3", "kvstore": f"file://{root / record['stores']['zarr'] / str(mip)}"}).result()
    data = np.asarray(store.read().result())
    return data if data.ndim == 4 else data[None]


def assert_stores_equal_source(root: Path, record: dict[str, Any], source_czyx: npt.NDArray[Any]) -> None:
    """mip 0 equals the source and every mip equals the whole-volume pyramid, in every reader.

    TensorStore reads precomputed ``*.gz`` chunk files only over HTTP (the
    server's Content-Encoding), not from a local folder, so gzip layers are
    checked with CloudVolume alone here.
    """
    levels = reference_pyramid(source_czyx, record)
    assert len(levels) == len(record["mips"])
    readers = [read_precomputed_cloudvolume, read_zarr, read_zarr_tensorstore]
    if record["layers"]["image"].get("compression", "none") == "none":
        readers.append(read_precomputed_tensorstore)
    for mip, want in enumerate(levels):
        for reader in readers:
            got = reader(root, record, mip)
            assert got.dtype == want.dtype, (reader.__name__, mip)
            assert got.shape == want.shape, (reader.__name__, mip, got.shape, want.shape)
            np.testing.assert_array_equal(got, want, err_msg=f"{reader.__name__} mip {mip}")


def read_layer_levels(root: Path, record: dict[str, Any], layer: str) -> list[tuple[str, int, npt.NDArray[Any]]]:
    """``(reader, mip, [c, z, y, x])`` of a segmentation layer at every mip, in both of its stores.

    The precomputed layer through CloudVolume and TensorStore, the OME-Zarr
    ``labels/<name>`` copy through zarr-python and TensorStore.
    """
    meta = record["layers"][layer]
    out = []
    for mip in range(len(record["mips"])):
        vol = CloudVolume(f"file://{root / meta['path']}", mip=mip, progress=False, fill_missing=bool(meta.get("fill_missing")))
        out.append(("cloudvolume", mip, np.asarray(vol[:, :, :]).T))
        store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{root / meta['path']}", "scale_index": mip}).result()
        out.append(("tensorstore precomputed", mip, np.asarray(store.read().result()).T))
        data = np.asarray(zarr.open_array(str(root / meta["zarr"] / str(mip)), mode="r")[...])
        out.append(("zarr", mip, data if data.ndim == 4 else data[None]))
        store = ts.open({"driver": "zarr3", "kvstore": f"file://{root / meta['zarr'] / str(mip)}"}).result()
        data = np.asarray(store.read().result())
        out.append(("tensorstore zarr", mip, data if data.ndim == 4 else data[None]))
    return out


def assert_layer_stores_equal(root: Path, record: dict[str, Any], layer: str, labels_czyx: npt.NDArray[Any]) -> None:
    """A segmentation layer's precomputed and OME-Zarr copies both equal the labels' mode pyramid at every mip."""
    from precomputed.pyramid import downsample_mode

    levels = [labels_czyx]
    for mip in record["mips"][1:]:
        levels.append(downsample_mode(levels[-1], tuple(mip["factor"])))
    for reader, mip, got in read_layer_levels(root, record, layer):
        want = levels[mip]
        assert got.shape == want.shape, (reader, mip, got.shape, want.shape)
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=f"{reader} mip {mip}")
