"""The README tour on an s3:// root (moto's server): every command that makes sense on a bucket, through the real CLI.

Run, each as its own ``python -m blockio.cli`` process with the bucket as
``--root`` (the S3 endpoint and test keys reach it through the environment):
``ingest`` (a NumPy file and the tour's ``.npy`` form with axes and voxel
size), ``catalog list / show / missing / validate / profiles``, ``predict``,
``evaluate``, ``serve`` (then one block over HTTP and one precomputed object
from its file server).

Skipped, with the reason:

- ``catalog validate --chunks``: it scans the files of local layers; on a
  bucket it is refused in one line saying so (tested), and plain
  ``validate`` checks the records against the schema only;

- ``blockio demo``: it makes a local root (its TIFF stack and review page are
  the point); the tour here ingests its own volume and writes the truth with
  ``write_segmentation``, which the demo would do;
- the ``ingest`` forms that need a user's TIFF / HDF5 / Zarr files, and the
  ``--scheduler tcp://`` one (a cluster: tests/precomputed/test_cluster.py
  runs it against S3); they differ from the one run here only in the reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume
from tests.cloud_servers import s3_root, s3_server  # noqa: F401
from tests.redis_server import free_port

pytestmark = [pytest.mark.cloud, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SHAPE = (64, 64, 16)  # (x, y, z)


def test_readme_tour_on_s3(s3_root: str, tmp_path: Path) -> None:  # noqa: F811
    def blockio(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "blockio.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"blockio {' '.join(args)}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stdout

    volume = make_em_volume(SHAPE, seed=0)
    np.save(tmp_path / "em.npy", volume.image)
    np.save(tmp_path / "vol.npy", volume.image[None])
    root = ["--root", s3_root]
    blockio("ingest", "em.npy", "--id", "demo", "--voxel-size", "8,8,40", "--chunk-size", "16,16,16", "--quiet", *root)
    blockio("ingest", "vol.npy", "--axes", "czyx", "--voxel-size", "4,4,40", "--unit", "nm", "--id", "vol", "--quiet", *root)
    write_segmentation(s3_root, "demo", "truth", volume.labels, meshes=False, provenance={"source": "synthetic"})

    assert {line.split()[0] for line in blockio("catalog", "list", *root).splitlines() if line.strip()} >= {"demo", "vol"}
    shown = json.loads(blockio("catalog", "show", "demo", *root))
    assert shown["id"] == "demo" and shown["stores"]["precomputed"].startswith("precomputed/demo/image~")
    blockio("catalog", "missing", *root)
    blockio("catalog", "validate", *root)
    blockio("catalog", "profiles", *root)
    blockio("predict", "demo", "--model", "blockio.inference.models:membrane_watershed", "--name", "mine", "--block", "32,32,16", "--overlap", "8,8,4", "--quiet", *root)
    assert blockio("evaluate", "demo", "--pred", "mine", "--truth", "truth", *root).startswith("demo: mine vs truth: adapted Rand error ")
    assert "ok (record only)" in blockio("catalog", "validate", *root)
    refused = subprocess.run([sys.executable, "-m", "blockio.cli", "catalog", "validate", "--chunks", *root], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "local folder" in refused.stderr and refused.stderr.count("\n") == 1

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "blockio.cli", "serve", "--port", str(port), *root], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start: {server.communicate()[1].decode()[-2000:]}") from None
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/api/datasets/demo/block?offset=0,0,0&size=32,32,16&format=npy", timeout=30) as r:
            import io

            block = np.load(io.BytesIO(r.read()))
        np.testing.assert_array_equal(block, volume.image[:16, :32, :32])
        with urllib.request.urlopen(f"{base}/api/datasets/demo/block?offset=0,0,0&size=32,32,16&layer=mine&format=npy", timeout=30) as r:
            assert np.load(io.BytesIO(r.read())).any()
        with urllib.request.urlopen(f"{base}/precomputed/demo/mine/info", timeout=30) as r:
            assert json.loads(r.read())["type"] == "segmentation"
    finally:
        server.terminate()
        server.wait(timeout=30)
