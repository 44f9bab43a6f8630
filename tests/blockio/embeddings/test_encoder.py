"""The self-supervised encoder: training lowers its loss, its cells' neighbours share their organelle type, its vectors ignore the block.

The volume, its organelle masks and the measure are those of
:mod:`tests.blockio.embeddings.test_ground_truth` (rebuilt from the
synthetic generator's own stream): cells of 4 x 4 x 1 voxels that are at
least 90 % membrane, or mitochondrion, and their 10 nearest cells in other
synthetic cells. Training here is tiny (a few seconds on two cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockio.errors import InvalidRequest
from precomputed.ingest import IngestOptions, ingest
from precomputed.synthetic import make_em_volume
from tests.blockio.embeddings.test_ground_truth import CELL, CELL_NM, MEMBRANE, MITOCHONDRION, SEED, SHAPE, VOXEL, _classes

torch = pytest.importorskip("torch", reason="the encoder needs torch")

from blockio.embeddings.encoder import ENCODER_HALO, CellEncoder, train_encoder  # noqa: E402
from blockio.embeddings.run import run_embedding  # noqa: E402


@pytest.fixture(scope="module")
def em(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    tmp = tmp_path_factory.mktemp("encoder")
    volume = make_em_volume(SHAPE, voxel_size=VOXEL, cell_size_nm=CELL_NM, seed=SEED)
    classes, near = _classes(volume.labels)
    np.save(tmp / "em.npy", volume.image)
    root = tmp / "root"
    ingest(tmp / "em.npy", root, "em", IngestOptions(voxel_size=VOXEL, chunk_size=(32, 32, 8), progress=False, workers=2))
    return root, classes, near


@pytest.fixture(scope="module")
def encoder(em: tuple[Path, np.ndarray, np.ndarray]) -> CellEncoder:
    return train_encoder(em[0], "em", cell=CELL, steps=40, batch_size=24, seconds=None, seed=0)


def test_training_lowers_the_contrastive_loss(encoder: CellEncoder) -> None:
    losses = np.asarray(encoder.losses)
    assert len(losses) == encoder.steps == 40
    # InfoNCE over 2 x 24 views starts near log(47) = 3.85 (no view told from another)
    assert abs(losses[0] - np.log(47)) < 0.5
    assert losses[-5:].mean() < losses[:5].mean() - 0.8


@pytest.mark.slow
def test_neighbours_of_membrane_and_mitochondrion_cells_share_their_type(em: tuple[Path, np.ndarray, np.ndarray], encoder: CellEncoder) -> None:
    import zarr

    root, classes, near = em
    entry = run_embedding(root, "em", encoder, "encoder", cell=CELL, block=(80, 80, 24), progress=False, dtype="float32")
    assert entry["dimension"] == encoder.dimension and entry["halo"] == list(ENCODER_HALO)
    assert entry["model"]["weights_hash"]  # the network's weights, hashed
    vectors = np.asarray(zarr.open_array(str(root / entry["array"]))[...])
    flat = vectors.reshape(vectors.shape[0], -1).T  # key order: x fastest
    cx, cy, cz = CELL
    nx, ny, nz = (s // c for s, c in zip(SHAPE, CELL))
    blocks = classes.reshape(nz, cz, ny, cy, nx, cx)
    share = np.stack([(blocks == c).mean(axis=(1, 3, 5)) for c in range(3)])
    kind = np.where(share.max(axis=0) >= 0.9, share.argmax(axis=0), -1).reshape(-1)
    owner = near[cz // 2 :: cz, cy // 2 :: cy, cx // 2 :: cx].reshape(-1)
    rng = np.random.default_rng(0)
    for wanted, factor in ((MITOCHONDRION, 2.0), (MEMBRANE, 4.0)):
        members = np.flatnonzero(kind == wanted)
        chance = len(members) / np.count_nonzero(kind >= 0)
        same = []
        for key in rng.choice(members, size=min(60, len(members)), replace=False):
            order = np.argsort(((flat - flat[key]) ** 2).sum(axis=1))
            others = [o for o in order[1:400] if owner[o] != owner[key] and kind[o] >= 0][:10]
            same.append(np.mean([kind[o] == wanted for o in others]))
        print(f"encoder, class {wanted}: {np.mean(same):.2f} of the neighbours share it, chance {chance:.3f}")
        assert np.mean(same) > factor * chance


def test_a_cells_vector_does_not_depend_on_the_block(encoder: CellEncoder) -> None:
    rng = np.random.default_rng(1)
    hx, hy, hz = ENCODER_HALO
    image = rng.normal(size=(1, 6 + 2 * hz, 24 + 2 * hy, 24 + 2 * hx)).astype(np.float32)
    whole = encoder(image, cell=CELL)  # 6 x 6 x 6 cells (z, y, x)
    assert whole.shape == (encoder.dimension, 6, 6, 6)
    # the window of the cells (z 2..4, y 1..3, x 3..5) alone: the same vectors
    part = image[:, 2 : 2 + 2 + 2 * hz, 4 : 4 + 8 + 2 * hy, 12 : 12 + 8 + 2 * hx]
    np.testing.assert_allclose(encoder(part, cell=CELL), whole[:, 2:4, 1:3, 3:5], rtol=1e-4, atol=1e-5)


def test_cells_must_fit_the_pooling(encoder: CellEncoder, em: tuple[Path, np.ndarray, np.ndarray]) -> None:
    with pytest.raises(InvalidRequest, match="multiples of"):
        encoder(np.zeros((1, 9, 40, 40), np.float32), cell=(6, 4, 1))
    with pytest.raises(InvalidRequest, match="multiples of"):
        train_encoder(em[0], "em", cell=(3, 3, 1), steps=1)
