"""The README's commands work, top to bottom, after ``blockio demo``.

The commands are read from README.md's fenced ``bash`` blocks (every line that
runs ``blockio``), so the test breaks when the README drifts from the
command line.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"

# Commands the tour shows but this test cannot run; each must still be in the README.
SKIPPED = {
    # they need the user's own files, which the demo does not make
    "blockio ingest ./slices/ --id fly1",
    "blockio ingest 'scan/z*.tif' --id fly1 --overwrite",
    "blockio ingest brain.ome.tif --id brain",
    "blockio ingest cremi.h5 --dataset-key volumes/raw --id cremi",
    "blockio ingest vol.npy --axes czyx --voxel-size 4,4,40 --unit nm --id vol",
    "blockio ingest old.zarr --id old --profile sbem",
    "blockio ingest multi.ome.tif --series 1 --id s1",
    "blockio ingest movie.tif --timepoint 3 --id t3",
    "blockio ingest mask.npy --cast uint8 --id mask",
    "blockio ingest moved.ome.zarr --drop-origin --id moved",
    # it needs a dask.distributed cluster
    "blockio ingest big/ --id big --scheduler tcp://scheduler:8786",
    # they serve until interrupted (tests/blockio/serving and test_ports cover serve)
    "blockio serve --root blockio-data --port 8000",
    "blockio serve",
    "blockio serve --model 'cells=blockio.inference.models:membrane_watershed?output=segmentation' --model scores=blockio.inference.models:membrane_watershed",
}


def readme_commands(text: str) -> list[str]:
    """Every ``blockio ...`` line of the fenced bash blocks, comments and continuations removed."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "blockio":
                commands.append(shlex.join(words))
    return commands


def test_the_parser_reads_blocks_and_drops_comments() -> None:
    text = "```bash\nblockio catalog list   # one line\npip install x\n```\n```python\nblockio.open_store()\n```\n```bash\nblockio predict demo \\\n  --name x\n```\n"
    assert readme_commands(text) == ["blockio catalog list", "blockio predict demo --name x"]


@pytest.mark.slow
def test_readme_tour_after_the_demo(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text())
    assert SKIPPED <= set(commands), f"no longer in the README, drop from SKIPPED: {sorted(SKIPPED - set(commands))}"
    tour = [c for c in commands if c not in SKIPPED]
    for expected in ("blockio catalog list", "blockio catalog show demo", "blockio catalog validate"):
        assert expected in tour
    assert any(c.startswith("blockio predict demo ") for c in tour) and any(c.startswith("blockio evaluate demo ") for c in tour)

    def blockio(*args: str) -> subprocess.CompletedProcess[str]:
        # the default root, ./blockio-data, in the test's own folder
        return subprocess.run([sys.executable, "-m", "blockio.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)

    demo = blockio("demo", "--shape", "128,128,32", "--no-serve", "--quiet")
    assert demo.returncode == 0, demo.stderr
    for command in tour:
        result = blockio(*shlex.split(command)[1:])
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, command
