"""A damaged chunk is an error naming it on every read path, never a crash, never zeros.

Real layers written by ingest (raw image chunks, precomputed and OME-Zarr) and
by ``write_segmentation`` (compressed_segmentation), then damaged on disk the
ways a disk, a network copy or a killed writer damages them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from blockio.errors import ChunkError
from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

SHAPE_ZYX = (16, 64, 64)
RAW_CHUNK = "precomputed/v/image/4_4_40/0-32_0-32_0-16"
SEG_CHUNK = "precomputed/v/seg/4_4_40/0-32_0-32_0-16"
ZARR_CHUNK = "zarr/v.zarr/0/c/0/0/0"


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("integrity")
    rng = np.random.default_rng(3)
    np.save(tmp / "v.npy", rng.integers(1, 250, size=SHAPE_ZYX, dtype=np.uint8))
    ingest(tmp / "v.npy", tmp / "root", "v", IngestOptions(voxel_size=(4, 4, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    labels = (np.arange(np.prod(SHAPE_ZYX), dtype=np.uint32).reshape(SHAPE_ZYX) // 997 + 1).astype(np.uint32)
    write_segmentation(tmp / "root", "v", "seg", labels)
    return tmp / "root"


@pytest.fixture
def root(tmp_path: Path, clean_root: Path) -> Path:
    return Path(shutil.copytree(clean_root, tmp_path / "root"))


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "empty":
        data = bytearray()
    elif how == "flip":
        data[len(data) // 2] ^= 0x10
    elif how == "garbage":
        data = bytearray(np.random.default_rng(1).integers(0, 256, size=len(data), dtype=np.uint8).tobytes())
    elif how == "half":
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["empty", "flip", "garbage", "half"])
@pytest.mark.parametrize(("layer", "chunk", "source"), [("image", RAW_CHUNK, "precomputed"), ("image", ZARR_CHUNK, "zarr"), ("seg", SEG_CHUNK, "precomputed")])
def test_damaged_chunk_is_an_error_naming_it(root: Path, layer: str, chunk: str, source: str, how: str) -> None:
    before = Store(root).read_block("v", (0, 0, 0), (32, 32, 16), layer=layer, source=source)
    assert before.any()
    _damage(root / chunk, how)
    with pytest.raises(ChunkError, match=chunk.rsplit("/", 1)[-1].replace("-", "\\-")):
        Store(root).read_block("v", (0, 0, 0), (32, 32, 16), layer=layer, source=source)


def test_undamaged_neighbours_still_read(root: Path) -> None:
    reference = Store(root).read_block("v", (32, 0, 0), (32, 32, 16), layer="seg")
    _damage(root / SEG_CHUNK, "garbage")
    np.testing.assert_array_equal(Store(root).read_block("v", (32, 0, 0), (32, 32, 16), layer="seg"), reference)


@pytest.mark.parametrize("how", ["flip", "garbage", "half"])
def test_damaged_segmentation_chunk_does_not_crash_the_process(root: Path, how: str) -> None:
    # compressed_segmentation's C++ decoder reads past a damaged buffer (a segfault before):
    # read in a child process so a crash is a failure here, not the end of the test run
    _damage(root / SEG_CHUNK, how)
    code = textwrap.dedent(
        f"""
        from blockio.errors import ChunkError
        from blockio.store import Store
        try:
            Store({str(root)!r}).read_block("v", (0, 0, 0), (32, 32, 16), layer="seg")
        except ChunkError as exc:
            print("ChunkError", exc)
        else:
            print("read")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"the reader died ({result.returncode}): {result.stderr[-500:]}"
    assert result.stdout.startswith("ChunkError") and "0-32_0-32_0-16" in result.stdout


@pytest.mark.parametrize("layer", ["image", "seg"])
def test_zero_length_chunk_is_an_error_over_rest(root: Path, layer: str) -> None:
    from blockio.serving import create_app

    _damage(root / (RAW_CHUNK if layer == "image" else SEG_CHUNK), "empty")
    client = create_app({"BLOCKIO_ROOT": str(root), "TESTING": True}).test_client()
    resp = client.get(f"/api/datasets/v/block?offset=0,0,0&size=32,32,16&layer={layer}")
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "chunk_error"
    assert "0-32_0-32_0-16" in resp.get_json()["error"]["message"]


def test_zero_length_chunk_is_an_error_in_the_dataset(root: Path) -> None:
    pytest.importorskip("torch")
    from blockio.data.dataset import BlockDataset

    _damage(root / RAW_CHUNK, "empty")
    ds = BlockDataset(str(root), ["v"], patch_size=(64, 64, 16), samples_per_epoch=1, seed=0)
    with pytest.raises(ChunkError, match="0-32_0-32_0-16"):
        ds[0]
