"""The house rules that keep the layout honest.

Imports go one way, ``viewer -> blockio -> precomputed``: a module may import
its own package and the packages below it, never one above. The service finds
the review page through the ``blockio.apps`` entry point instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LEVELS = {"precomputed": 0, "blockio": 1, "viewer": 2}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for package in LEVELS for p in (REPO / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            # importlib.import_module("viewer") is an import too
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value.split(".")[0])
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_go_one_way(path: Path) -> None:
    package = path.relative_to(REPO).parts[0]
    upward = sorted(name for name in _imported_packages(path) if LEVELS.get(name, -1) > LEVELS[package])
    assert not upward, f"{path.relative_to(REPO)} imports {upward}: imports go viewer -> blockio -> precomputed"


def test_the_walker_sees_upward_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from viewer.pages import bp\n    import blockio.store\n    importlib.import_module('viewer')\n")
    assert _imported_packages(module) == {"os", "viewer", "blockio"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_short(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines (at most {MAX_LINES}): split it by concept"


def test_the_review_page_joins_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.name: e.value for e in entry_points(group="blockio.apps")}
    assert names.get("viewer") == "viewer:init_app"
