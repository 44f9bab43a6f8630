"""Live model layers: chunks computed on request equal what ``blockio predict`` writes, and are cached."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blockio.errors import InvalidRequest, LayerNotFound, TooLarge
from blockio.inference.live import LiveLayer, LiveModel, parse_live_model, parse_live_models
from blockio.inference.models import membrane_watershed
from blockio.inference.options import InferenceOptions
from blockio.inference.run import run_inference
from blockio.store import Store
from precomputed.catalog import Catalog
from tests.blockio.inference.conftest import make_small_root
from tests.blockio.inference.live_models import LABELS, SMOOTH
from tests.redis_server import redis_server, redis_server_factory  # noqa: F401

LIVE_PLAN = InferenceOptions(block=(32, 32, 16), overlap=(4, 4, 4), meshes=False, progress=False)


@pytest.fixture(scope="module")
def em(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_root(tmp_path_factory.mktemp("live"))


def decode(payload: bytes, info: dict[str, Any], start: tuple[int, ...], stop: tuple[int, ...]) -> np.ndarray:
    """A chunk's payload as C-order [c, z, y, x], decoded by CloudVolume."""
    from cloudvolume import chunks

    scale = info["scales"][0]
    shape = (*(b - a for a, b in zip(start, stop)), info["num_channels"])
    block = scale.get("compressed_segmentation_block_size", (8, 8, 8))
    return np.asarray(chunks.decode(payload, scale["encoding"], shape=shape, dtype=np.dtype(info["data_type"]), block_size=block)).T


def every_chunk(layer: LiveLayer, dataset: str) -> tuple[np.ndarray, list[bool]]:
    """The whole live layer [c, z, y, x], assembled chunk by chunk through :meth:`LiveLayer.chunk`."""
    info = layer.info(dataset)
    scale = info["scales"][0]
    size, chunk = scale["size"], scale["chunk_sizes"][0]
    out = np.zeros((info["num_channels"], *reversed(size)), dtype=info["data_type"])
    hits = []
    for z in range(0, size[2], chunk[2]):
        for y in range(0, size[1], chunk[1]):
            for x in range(0, size[0], chunk[0]):
                start = (x, y, z)
                stop = tuple(min(a + c, n) for a, c, n in zip(start, chunk, size))
                name = "_".join(f"{a}-{b}" for a, b in zip(start, stop))
                payload, hit = layer.chunk(dataset, scale["key"], name)
                hits.append(hit)
                out[:, z : stop[2], y : stop[1], x : stop[0]] = decode(payload, info, start, stop)
    return out, hits


class Counting:
    """A model that counts its calls."""

    def __init__(self, model: Any, version: str = "1") -> None:
        self.model = model
        self.calls = 0
        self.__version__ = version

    def __call__(self, block: np.ndarray) -> Any:
        self.calls += 1
        return self.model(block)


def test_segmentation_equals_the_layer_predict_writes_with_another_block(em: Path, tmp_path: Path) -> None:
    # the live plan's cores are 32x32x16, predict's 16x16x16: the face rule and raster numbering make them agree
    store = Store(em)
    layer = LiveLayer(store, LiveModel(name="cells", model=LABELS, options=LIVE_PLAN))
    assert layer.info("em")["type"] == "segmentation"  # the model returns labels: found by one call
    live, hits = every_chunk(layer, "em")
    assert hits[0] is False and all(hits[1:])  # the first chunk computed the whole layer
    run_inference(em, "em", LABELS, "pred-labels", block=(16, 16, 16), overlap=(4, 4, 4), meshes=False, progress=False, overwrite=True)
    written = Store(em).read_block("em", (0, 0, 0), (64, 64, 16), layer="pred-labels")
    assert live[0].max() > 1  # several segments, numbered 1, 2, ... in raster order
    np.testing.assert_array_equal(live[0], written)


def test_a_score_model_shown_as_segmentation_equals_predict(em: Path) -> None:
    live_model = parse_live_model("cells=tests.blockio.inference.live_models:SMOOTH?output=segmentation&block=32,32,16&overlap=4,4,4&workers=1")
    layer = LiveLayer(Store(em), live_model)
    live, _ = every_chunk(layer, "em")
    run_inference(em, "em", SMOOTH, "pred-smooth", block=(64, 64, 16), overlap=(4, 4, 4), meshes=False, progress=False, overwrite=True)
    np.testing.assert_array_equal(live[0], Store(em).read_block("em", (0, 0, 0), (64, 64, 16), layer="pred-smooth"))


def test_same_options_give_predicts_voxels_for_any_model(em: Path) -> None:
    # membrane_watershed is not local, so only the same plan guarantees equality: the live layer uses predict's
    opts = InferenceOptions(block=(32, 32, 16), overlap=(8, 8, 4), meshes=False, progress=False)
    model = dataclasses.replace(membrane_watershed, min_seed=20, seed_distance=2.0)
    layer = LiveLayer(Store(em), LiveModel(name="ws", model=model, output="segmentation", options=opts))
    live, _ = every_chunk(layer, "em")
    run_inference(em, "em", model, "pred-ws", options=dataclasses.replace(opts, overwrite=True))
    written = Store(em).read_block("em", (0, 0, 0), (64, 64, 16), layer="pred-ws")
    assert written.max() > 1
    np.testing.assert_array_equal(live[0], written)


def test_scores_are_an_image_layer_independent_of_the_block(em: Path) -> None:
    store = Store(em)
    layer = LiveLayer(store, LiveModel(name="scores", model=SMOOTH, options=LIVE_PLAN))
    info = layer.info("em")
    assert (info["type"], info["data_type"], info["num_channels"], info["scales"][0]["encoding"]) == ("image", "float32", 1, "raw")
    live, hits = every_chunk(layer, "em")
    # the model on the whole volume, reflect-padded by its receptive radius, cropped: what any seam-free block gives
    whole = store.read_block("em", (-4, -4, -4), (72, 72, 24), boundary="reflect", normalize="percentile", dtype=np.float32)
    expected = SMOOTH(whole[np.newaxis])[:, 4:-4, 4:-4, 4:-4]
    np.testing.assert_array_equal(live, expected)
    assert 0 < live.mean() < 1
    # a chunk computes its predict task's core: 4 chunks per 32x32x16 core, so 3 of every 4 are hits
    assert hits.count(False) == 4 and hits.count(True) == 12


def test_a_second_view_is_served_from_the_cache(em: Path) -> None:
    model = Counting(SMOOTH)
    layer = LiveLayer(Store(em), LiveModel(name="scores", model=model, options=LIVE_PLAN))
    first, _ = every_chunk(layer, "em")
    calls = model.calls
    second, hits = every_chunk(layer, "em")
    assert all(hits) and model.calls == calls
    np.testing.assert_array_equal(first, second)


def test_keys_carry_the_model_and_image_versions(tmp_path: Path) -> None:
    root = make_small_root(tmp_path)
    store = Store(root)
    model = Counting(SMOOTH, version="1")
    layer = LiveLayer(store, LiveModel(name="scores", model=model, options=LIVE_PLAN))
    key = layer.info("em")["scales"][0]["key"]
    assert layer.chunk("em", key, "0-16_0-16_0-16")[1] is False
    assert layer.chunk("em", key, "0-16_0-16_0-16")[1] is True
    # another model version, same cache: a miss
    other = LiveLayer(store, LiveModel(name="scores", model=Counting(SMOOTH, version="2"), options=LIVE_PLAN))
    assert other.chunk("em", key, "0-16_0-16_0-16")[1] is False
    # the image rewritten (a new layer version): a miss
    catalog = Catalog(root)
    record = catalog.get("em")
    record["layers"]["image"]["version"] = "rewritten"
    catalog.put(record)
    assert layer.chunk("em", key, "0-16_0-16_0-16")[1] is False
    assert layer.chunk("em", key, "0-16_0-16_0-16")[1] is True


@pytest.mark.redis
def test_chunks_are_shared_through_redis(em: Path, redis_server: Any) -> None:  # noqa: F811
    # two processes' layers of one model (same name, version and parameters: the same keys)
    a = LiveLayer(Store(em, cache_bytes=0, redis_url=redis_server.url), LiveModel(name="scores", model=Counting(SMOOTH), options=LIVE_PLAN))
    model = Counting(SMOOTH)
    b = LiveLayer(Store(em, cache_bytes=0, redis_url=redis_server.url), LiveModel(name="scores", model=model, options=LIVE_PLAN))
    key = a.info("em")["scales"][0]["key"]
    payload, hit = a.chunk("em", key, "16-32_0-16_0-16")
    assert hit is False
    b.info("em")  # its own probe call tells scores from labels
    calls = model.calls
    # another process's store, no memory tier: the chunk comes from Redis, the model is not called
    again, hit = b.chunk("em", key, "16-32_0-16_0-16")
    assert hit is True and again == payload and model.calls == calls


def test_chunk_names_outside_the_grid_are_not_found(em: Path) -> None:
    layer = LiveLayer(Store(em), LiveModel(name="scores", model=SMOOTH, options=LIVE_PLAN))
    key = layer.info("em")["scales"][0]["key"]
    for name in ("5-16_0-16_0-16", "0-17_0-16_0-16", "64-80_0-16_0-16", "0-16_0-16", "../info"):
        with pytest.raises(LayerNotFound):
            layer.chunk("em", key, name)
    with pytest.raises(LayerNotFound):
        layer.chunk("em", "1_1_1", "0-16_0-16_0-16")


def test_the_declared_output_decides_the_kind(em: Path) -> None:
    class Declared(Counting):
        output = "labels"

    model = Declared(LABELS)
    layer = LiveLayer(Store(em), LiveModel(name="x", model=model, options=LIVE_PLAN))
    assert layer.info("em")["type"] == "segmentation" and model.calls == 0  # no probe call
    with pytest.raises(InvalidRequest, match="returns labels"):
        LiveLayer(Store(em), LiveModel(name="x", model=LABELS, output="image", options=LIVE_PLAN)).info("em")


def test_parse_live_model() -> None:
    live = parse_live_model("cells=pkg.mod:fn?block=64,64,32&overlap=8,8,4&normalize=none&threshold=0.3&output=segmentation&workers=2")
    assert (live.name, live.model, live.output) == ("cells", "pkg.mod:fn", "segmentation")
    assert (live.options.block, live.options.overlap, live.options.normalize, live.options.threshold, live.options.workers) == ((64, 64, 32), (8, 8, 4), None, 0.3, 2)
    assert parse_live_model("a=pkg.mod:fn").options.block == InferenceOptions().block  # predict's defaults
    for bad, match in (
        ("pkg.mod:fn", "NAME="),
        ("a=pkg.mod:fn?colour=red", "unknown option"),
        ("a=pkg.mod:fn?block=0,1,1", "block"),
        ("a=pkg.mod:fn?output=mesh", "output"),
        ("a/b=pkg.mod:fn", "invalid live layer name"),
        ("a=pkg.mod:fn?threshold=x", "could not convert"),
    ):
        with pytest.raises(InvalidRequest, match=match):
            parse_live_model(bad)
    with pytest.raises(InvalidRequest, match="twice"):
        parse_live_models(["a=pkg.mod:fn", "a=pkg.mod:g"])
    with pytest.raises(InvalidRequest, match="cannot import"):
        LiveLayer(None, parse_live_model("a=no_such_package_here:fn"))


def test_a_segmentation_larger_than_a_block_read_is_refused(em: Path) -> None:
    model = Counting(LABELS)
    layer = LiveLayer(Store(em, max_block_voxels=64 * 64 * 16 - 1), LiveModel(name="cells", model=model, output="segmentation", options=LIVE_PLAN))
    with pytest.raises(TooLarge, match="blockio predict"):
        layer.chunk("em", "8_8_40", "0-16_0-16_0-16")
    assert model.calls == 0
    # the image layer computes one task at a time: not refused
    scores = LiveLayer(Store(em, max_block_voxels=64 * 64 * 16 - 1), LiveModel(name="scores", model=SMOOTH, options=LIVE_PLAN))
    assert scores.chunk("em", "8_8_40", "0-16_0-16_0-16")[1] is False
