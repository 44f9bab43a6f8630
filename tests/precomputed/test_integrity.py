"""Chunk integrity: validation before decoding, checksum manifests, atomic writes, and a mutation fuzz.

The fuzz damages real chunks of every encoding our writers produce (raw,
gzip raw, compressed_segmentation) and decodes them in this process: a
segmentation fault fails the run. ``BLOCKIO_FUZZ_CHUNKS`` sets the damaged
chunks per encoding (default 2000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tensorstore as ts
from cloudvolume import CloudVolume
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precomputed.checksum_writes import update_checksums, updating_checksums
from precomputed.checksums import LayerChecksums, digest, load_manifest, manifest_path
from precomputed.chunk_checks import check_compressed_segmentation, gunzip_capped
from precomputed.errors import ChecksumMismatch, CorruptChunk, UnlistedChunk
from precomputed.ingest import IngestOptions, ingest
from precomputed.integrity import ChunkVerifier
from precomputed.segmentation import write_segmentation

FUZZ_CHUNKS = int(os.environ.get("BLOCKIO_FUZZ_CHUNKS", "2000"))
SHAPE_ZYX = (20, 40, 50)  # not chunk multiples: edge chunks are clipped


@dataclass(frozen=True)
class Chunk:
    name: str  # <scale key>/<grid name>
    data: bytes  # the file's bytes
    gzipped: bool
    truth: npt.NDArray[Any]  # [c, z, y, x]


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("integrity")
    root = base / "root"
    image = np.random.default_rng(0).integers(0, 60000, SHAPE_ZYX).astype(np.uint16)
    np.save(base / "v.npy", image)
    options = IngestOptions(voxel_size=(8, 8, 40), chunk_size=(16, 16, 16), progress=False, workers=2)
    ingest(base / "v.npy", root, "raw", options)
    ingest(base / "v.npy", root, "gz", IngestOptions(**{**options.__dict__, "compress": "gzip"}))
    labels = (np.random.default_rng(1).integers(0, 5, SHAPE_ZYX) + np.arange(SHAPE_ZYX[2]) // 10 * 100).astype(np.uint32)
    labels[:, :20, :] = 7  # uniform blocks (0 encoded bits) next to speckled ones
    write_segmentation(root, "raw", "seg", labels, meshes=False, workers=2)
    return {"raw": root / "precomputed/raw/image", "gz": root / "precomputed/gz/image", "seg": root / "precomputed/raw/seg"}


def _chunks(layer: Path) -> list[Chunk]:
    verifier = ChunkVerifier(str(layer))
    out = []
    for path in sorted(layer.glob("*_*_*/*")):
        gzipped = path.name.endswith(".gz")
        name = f"{path.parent.name}/{path.name.removesuffix('.gz')}"
        data = path.read_bytes()
        out.append(Chunk(name, data, gzipped, np.array(verifier.decode(name, data, gzipped=gzipped))))
    return out


def test_writers_leave_one_manifest_per_scale_listing_every_chunk(layers: dict[str, Path]) -> None:
    for layer in layers.values():
        info = json.loads((layer / "info").read_text())
        assert not (layer / "checksums" / "parts").exists()
        for scale in info["scales"]:
            manifest = load_manifest(layer, scale["key"])
            assert manifest is not None
            files = {p.name.removesuffix(".gz") for p in (layer / scale["key"]).iterdir()}
            assert files and set(manifest.chunks) == files
        assert not list(layer.rglob("*.tmp"))


def test_mip0_chunks_decode_to_the_source(layers: dict[str, Path]) -> None:
    image = np.load(layers["raw"].parents[2].parent / "v.npy")
    for chunk in _chunks(layers["gz"]):
        if chunk.name.startswith("8_8_40/"):
            (x0, x1), (y0, y1), (z0, z1) = (tuple(map(int, r.split("-"))) for r in chunk.name.split("/")[1].split("_"))
            np.testing.assert_array_equal(chunk.truth[0], image[z0:z1, y0:y1, x0:x1])


def test_other_readers_still_read_the_layers(layers: dict[str, Path]) -> None:
    for key in ("raw", "seg"):
        vol = CloudVolume(f"file://{layers[key]}", mip=0, progress=False)
        store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layers[key]}", "scale_index": 0}).result()
        np.testing.assert_array_equal(np.asarray(vol[:, :, :]), np.asarray(store.read().result()))


def test_zero_length_chunks_are_errors_never_zeros(layers: dict[str, Path]) -> None:
    for layer in layers.values():
        chunk = _chunks(layer)[0]
        # an empty file, and for gzip layers also a whole gzip stream of nothing
        for data in (b"", _gzip(b"")) if chunk.gzipped else (b"",):
            for verifier in (ChunkVerifier(str(layer)), _without_manifest(layer)):
                with pytest.raises(CorruptChunk, match=chunk.name):
                    verifier.decode(chunk.name, data, gzipped=chunk.gzipped)


def _gzip(payload: bytes) -> bytes:
    import gzip

    return gzip.compress(payload)


def _without_manifest(layer: Path) -> ChunkVerifier:
    verifier = ChunkVerifier(str(layer))
    verifier.checksums = LayerChecksums(str(layer), read=lambda name: None)
    return verifier


def test_gzip_bombs_are_capped() -> None:
    bomb = _gzip(bytes(10 << 20))
    with pytest.raises(CorruptChunk, match="inflates to more than"):
        gunzip_capped(bomb, limit=1 << 20, chunk="k/0-64_0-64_0-64")


_SEGFAULT = """
import struct, sys
import numpy as np
from cloudvolume import chunks
data = bytearray(open(sys.argv[1], "rb").read())
struct.pack_into("<I", data, 4, 0x00FFFFFF)   # block 0: lookup table offset 2^24 - 1
struct.pack_into("<I", data, 8, 0x7FFFFFFF)   # block 0: encoded values 8 GiB past the buffer
shape = tuple(int(b) - int(a) for a, b in (r.split("-") for r in sys.argv[2].split("_")))
if sys.argv[3] == "validated":
    from precomputed.integrity import ChunkVerifier
    from precomputed.errors import CorruptChunk
    try:
        ChunkVerifier(sys.argv[4]).decode(sys.argv[5], bytes(data))
    except CorruptChunk as exc:
        print("refused:", exc)
else:
    chunks.decode(bytes(data), "compressed_segmentation", shape=(*shape, 1), dtype=np.uint32, block_size=(8, 8, 8))
    print("decoded")
"""


def test_damaged_compressed_segmentation_crashes_the_decoder_but_not_the_verifier(layers: dict[str, Path]) -> None:
    layer = layers["seg"]
    chunk = max(_chunks(layer), key=lambda c: len(c.data))
    path = layer / chunk.name
    grid = chunk.name.split("/")[1]
    bare = subprocess.run([sys.executable, "-c", _SEGFAULT, str(path), grid, "bare"], capture_output=True, text=True, timeout=120)
    # CloudVolume's decoder follows the offsets past its buffer: a segmentation fault (-11) today
    assert bare.returncode != 0, bare.stdout
    checked = subprocess.run([sys.executable, "-c", _SEGFAULT, str(path), grid, "validated", str(layer), chunk.name], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "refused:" in checked.stdout and chunk.name in checked.stdout


def test_structural_check_finds_each_kind_of_damage(layers: dict[str, Path]) -> None:
    chunk = max(_chunks(layers["seg"]), key=lambda c: len(c.data))
    shape = tuple(int(b) - int(a) for a, b in (r.split("-") for r in chunk.name.split("/")[1].split("_")))
    words = np.frombuffer(chunk.data, "<u4").copy()

    def check(w: npt.NDArray[Any]) -> None:
        check_compressed_segmentation(w.tobytes(), shape=shape, dtype=np.uint32, channels=1, block_size=(8, 8, 8), chunk=chunk.name)  # type: ignore[arg-type]

    check(words)
    cases = {"channel 0 starts": lambda w: w.__setitem__(0, 1 << 30), "encodes 3 bits": lambda w: w.__setitem__(1, (w[1] & 0xFFFFFF) | (3 << 24)), "end past the buffer": lambda w: w.__setitem__(2, w.size)}
    for message, damage in cases.items():
        bad = words.copy()
        damage(bad)
        with pytest.raises(CorruptChunk, match=message):
            check(bad)
    with pytest.raises(CorruptChunk, match="whole uint32 words"):
        check_compressed_segmentation(chunk.data[:-1], shape=shape, dtype=np.uint32, channels=1, block_size=(8, 8, 8), chunk=chunk.name)  # type: ignore[arg-type]


def test_checksums_tell_old_layers_unlisted_and_damaged_chunks(layers: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    layer = tmp_path / "layer"
    shutil.copytree(layers["raw"], layer)
    chunk = _chunks(layer)[0]
    key, name = chunk.name.split("/")
    checks = LayerChecksums(f"file://{layer}")
    assert checks.verify(chunk.name, chunk.data) is True
    with pytest.raises(ChecksumMismatch, match=name):
        checks.verify(chunk.name, chunk.data[:-1] + bytes([chunk.data[-1] ^ 1]))
    with pytest.raises(UnlistedChunk):
        checks.verify(f"{key}/0-1_0-1_0-1", b"\0\0")
    assert LayerChecksums(str(layer), unlisted="warn").verify(f"{key}/0-1_0-1_0-1", b"\0\0") is False
    # another process rewrites the chunk through the two-phase update: the cached reader follows
    new = bytes(len(chunk.data))
    with updating_checksums(layer, key, {name: digest(new)}):
        assert checks.verify(chunk.name, chunk.data) and LayerChecksums(str(layer)).verify(chunk.name, new)
        (layer / chunk.name).write_bytes(new)
    assert checks.verify(chunk.name, new)
    with pytest.raises(ChecksumMismatch):
        LayerChecksums(str(layer)).verify(chunk.name, chunk.data)
    # a failed update settles on what is on disk
    with pytest.raises(RuntimeError), updating_checksums(layer, key, {name: digest(b"never written")}):
        raise RuntimeError("write failed")
    assert load_manifest(layer, key).chunks[name] == (digest(new),)  # type: ignore[union-attr]
    update_checksums(layer, key, {name: digest(chunk.data)})
    assert LayerChecksums(str(layer)).verify(chunk.name, chunk.data)
    manifest_path(layer, key).unlink()
    assert LayerChecksums(str(layer)).verify(chunk.name, b"anything") is False  # an old layer: skipped


# -- the mutation fuzz ---------------------------------------------------------------


def _mutations(size: int) -> st.SearchStrategy[tuple[str, Any]]:
    pos = st.integers(0, max(size - 1, 0))
    return st.one_of(
        st.tuples(st.just("flip"), st.tuples(pos, st.integers(0, 7))),
        st.tuples(st.just("byte"), st.tuples(pos, st.integers(1, 255))),
        st.tuples(st.just("bytes"), st.lists(st.tuples(pos, st.integers(1, 255)), min_size=2, max_size=8)),
        st.tuples(st.just("truncate"), st.integers(0, max(size - 1, 0))),
        st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("zero"), st.none()),
        st.tuples(st.just("garbage"), st.randoms(use_true_random=False)),
    )


def _damage(data: bytes, kind: str, arg: Any) -> bytes:
    out = bytearray(data)
    if kind == "flip":
        out[arg[0]] ^= 1 << arg[1]
    elif kind == "byte":
        out[arg[0]] ^= arg[1]  # xor with a non-zero value: always a different byte
    elif kind == "bytes":
        for p, v in arg:
            out[p] ^= v
    elif kind == "truncate":
        del out[arg:]
    elif kind == "extend":
        out += arg
    elif kind == "zero":
        out = bytearray()
    else:
        out = bytearray(arg.randbytes(len(data)))
    return bytes(out)


def _fuzz(layers: dict[str, Path], key: str, *, manifest: bool) -> None:
    layer = layers[key]
    chunks = _chunks(layer)
    verifier = ChunkVerifier(str(layer)) if manifest else _without_manifest(layer)
    seen = {"errors": 0, "right": 0}

    @settings(max_examples=FUZZ_CHUNKS, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        chunk = data.draw(st.sampled_from(chunks))
        kind, arg = data.draw(_mutations(len(chunk.data)))
        damaged = _damage(chunk.data, kind, arg)
        try:
            got = verifier.decode(chunk.name, damaged, gzipped=chunk.gzipped)
        except CorruptChunk as exc:
            assert chunk.name in str(exc)
            seen["errors"] += 1
            return
        if manifest:
            # a checksummed layer never gives a different wrong answer
            np.testing.assert_array_equal(got, chunk.truth, err_msg=f"{chunk.name} {kind}")
        else:
            assert got.shape == chunk.truth.shape and got.dtype == chunk.truth.dtype
        seen["right"] += 1

    run()
    assert seen["errors"] + seen["right"] >= FUZZ_CHUNKS
    # with checksums only damage gzip ignores (header fields, trailing bytes after a bit flip) reads back
    assert seen["errors"] > (FUZZ_CHUNKS // 2 if manifest else 0)


@pytest.mark.parametrize("key", ["raw", "gz", "seg"])
def test_damaged_chunks_are_errors_or_right_data(layers: dict[str, Path], key: str) -> None:
    _fuzz(layers, key, manifest=True)


def test_damaged_segmentation_without_a_manifest_never_crashes(layers: dict[str, Path]) -> None:
    # an old layer has no checksums: the structural check alone must keep the decoder in bounds
    _fuzz(layers, "seg", manifest=False)
