"""The inference package is cut by concept: no module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "blockio" / "inference"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_private_imports_between_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("blockio.inference", "precomputed", "blockio")) or (isinstance(node, ast.ImportFrom) and node.level)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private, f"{path.name} imports private names {private}: make what is shared public in its module"


def test_the_concepts_have_their_modules() -> None:
    from blockio.inference import options, plan, protocol, run, stitching, tasks

    assert run.run_inference and options.InferenceOptions and plan.RunPlan and protocol.load_model
    assert stitching.global_ids and tasks.segment_task and tasks.write_task
