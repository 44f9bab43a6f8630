"""Queries from Python, REST and the CLI give the same neighbours, with positions in voxels and nm and review links."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from blockio.embeddings.run import run_embedding
from blockio.errors import InvalidRequest, OutOfBounds
from blockio.serving.app import create_app
from blockio.store import open_store
from tests.blockio.embeddings.conformance import exact
from tests.blockio.inference.conftest import make_small_root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_small_root(tmp_path_factory.mktemp("queries"))  # 'em': 64 x 64 x 16 voxels of 8 x 8 x 40 nm
    run_embedding(root, "em", name="cells", cell=(8, 8, 4), block=(32, 32, 16), progress=False)
    return root


def test_python_knn_by_position_is_numpys_exact_answer(root: Path) -> None:
    sims = open_store(root).embeddings("em", "cells")
    everything = sims.index.get(np.arange(8 * 8 * 4))
    q = sims.vector_at((20, 33, 9))  # cell (2, 4, 2): key 2 + 8 * (4 + 8 * 2)
    np.testing.assert_array_equal(q, everything.vectors[2 + 8 * (4 + 8 * 2)])
    answer = sims.knn(position=(20, 33, 9), k=5)
    order, dist = exact(everything.vectors, q, 6)
    assert [r["key"] for r in answer["results"]] == [str(k) for k in everything.keys[order[1:]]]  # itself left out
    np.testing.assert_allclose([r["distance"] for r in answer["results"]], dist[1:], rtol=1e-4)
    first = answer["results"][0]
    key = int(first["key"])
    i, j, k = key % 8, (key // 8) % 8, key // 64
    assert first["cell"] == [i, j, k]
    assert first["position"]["voxels"] == [i * 8 + 4.0, j * 8 + 4.0, k * 4 + 2.0]
    assert first["position"]["nm"] == [(i * 8 + 4.0) * 8, (j * 8 + 4.0) * 8, (k * 4 + 2.0) * 40]
    assert first["box"]["voxels"] == [i * 8, j * 8, k * 4, i * 8 + 8, j * 8 + 8, k * 4 + 4]
    path, _, fragment = first["link"].partition("#!")
    assert path == "/view/em?layout=overlay"
    assert json.loads(urllib.parse.unquote(fragment)) == {"position": [v + 0.5 for v in first["position"]["voxels"]]}
    assert answer["stale"] == []


def test_filters_by_region_and_model(root: Path) -> None:
    sims = open_store(root).embeddings("em", "cells")
    region = ((0, 0, 0), (32, 32, 16))
    answer = sims.knn(position=(5, 5, 5), k=100, where={"region": region})
    assert len(answer["results"]) == 4 * 4 * 4 - 1
    assert all(all(0 <= c < 32 for c in r["position"]["voxels"][:2]) for r in answer["results"])
    assert sims.knn(position=(5, 5, 5), k=5, where={"model": "another:model"})["results"] == []
    with pytest.raises(InvalidRequest, match="exactly one"):
        sims.knn(position=(1, 1, 1), segment=3)
    with pytest.raises(OutOfBounds):
        sims.vector_at((64, 0, 0))


def test_rest_answers_as_python_does(root: Path) -> None:
    client = create_app({"BLOCKIO_ROOT": str(root), "TESTING": True}).test_client()
    got = client.get("/api/datasets/em/embeddings/cells/knn?position=20,33,9&k=4&region=0,0,0,64,64,16")
    assert got.status_code == 200, got.get_json()
    body = got.get_json()
    python = open_store(root).embeddings("em", "cells").knn(position=(20, 33, 9), k=4, link_base="http://localhost/")
    assert [r["key"] for r in body["results"]] == [r["key"] for r in python["results"]]
    assert body["results"][0]["link"].startswith("http://localhost/view/em?layout=overlay#!")
    assert got.headers.get("Access-Control-Allow-Origin") == "*"
    vector = client.get("/api/datasets/em/embeddings/cells/vector?position=20,33,9").get_json()["vector"]
    by_vector = client.get("/api/datasets/em/embeddings/cells/knn?k=1&vector=" + ",".join(map(str, vector))).get_json()
    assert by_vector["results"][0]["key"] == str(2 + 8 * (4 + 8 * 2))
    assert set(client.get("/api/datasets/em/embeddings").get_json()["embeddings"]) == {"cells"}
    assert client.get("/api/datasets/em/embeddings/nope/knn?position=1,1,1").status_code == 404
    assert client.get("/api/datasets/em/embeddings/cells/knn?position=1,1").status_code == 400
    assert client.get("/api/datasets/em/embeddings/cells/knn?position=999,1,1").get_json()["error"]["code"] == "out_of_bounds"
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "/api/datasets/{dataset}/embeddings/{name}/knn" in paths


def test_cli_similar_prints_the_same_neighbours(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["similar", "--root", str(root), "em", "cells", "--position", "20,33,9", "-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    python = open_store(root).embeddings("em", "cells").knn(position=(20, 33, 9), k=3)
    assert printed["results"] == python["results"]
    assert main(["similar", "--root", str(root), "em", "cells", "--position", "20,33,9", "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[1].split()[1] == python["results"][0]["key"] and "/view/em?" in table[1]
    assert main(["similar", "--root", str(root), "em", "missing", "--position", "1,1,1"]) == 1
