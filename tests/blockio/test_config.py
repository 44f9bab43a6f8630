"""Settings: read once from BLOCKIO_*, checked, documented in the README, used by the app and the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from blockio.config import ENV_VARS, Settings
from blockio.errors import InvalidSettings, TooLarge
from blockio.serving.app import create_app

REPO = Path(__file__).resolve().parents[2]


def test_defaults_then_environment() -> None:
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env({"BLOCKIO_ROOT": "data", "BLOCKIO_CACHE_BYTES": "0", "BLOCKIO_CORS_ORIGINS": "http://a.example, http://b.example", "BLOCKIO_QUEUE_TIMEOUT_S": "0.5", "BLOCKIO_REDIS_URL": ""})
    assert (s.root, s.cache_bytes, s.cors_origins, s.queue_timeout_s, s.redis_url) == ("data", 0, ("http://a.example", "http://b.example"), 0.5, None)


@pytest.mark.parametrize(("var", "value"), [("BLOCKIO_CACHE_BYTES", "lots"), ("BLOCKIO_MAX_INFLIGHT", "0"), ("BLOCKIO_QUEUE_TIMEOUT_S", "inf"), ("BLOCKIO_MAX_BLOCK_VOXELS", "-1"), ("BLOCKIO_CORS_ORIGINS", " , ")])
def test_a_bad_value_names_its_variable(var: str, value: str) -> None:
    with pytest.raises(InvalidSettings, match=var.removeprefix("BLOCKIO_").lower() + "|" + var):
        Settings.from_env({var: value})


def test_the_token_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(Settings(write_token="s3cret"))


def _blockio_variables_read(path: Path) -> list[str]:
    """``BLOCKIO_*`` names a module reads from the environment (literals or module constants)."""
    tree = ast.parse(path.read_text())
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for t in n.targets
        if isinstance(t, ast.Name)
    }

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    found = []
    for node in ast.walk(tree):
        key: ast.AST | None = None
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop", "setdefault") and is_environ(node.func.value))
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "getenv")
        ):
            key = node.args[0]
        elif isinstance(node, ast.Call) and any(is_environ(a) for a in node.args):
            found.append("the whole environment")  # handed on wholesale: whatever reads it is a second reader
        name = name_of(key) if key is not None else None
        if name is not None and name.startswith("BLOCKIO_"):
            found.append(name)
    return found


def test_no_other_module_reads_blockio_variables() -> None:
    # other libraries' own variables (prometheus_client's PROMETHEUS_MULTIPROC_DIR) are theirs to read
    readers = {}
    for package in ("blockio", "viewer"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "blockio":
                continue
            names = _blockio_variables_read(path)
            if names:
                readers[str(path.relative_to(REPO))] = names
    assert not readers, f"read BLOCKIO_* through blockio.config.Settings: {readers}"


def test_the_variable_check_sees_reads(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('import os\nNAME = "BLOCKIO_X"\na = os.environ.get(NAME)\nb = os.environ["BLOCKIO_Y"]\nc = os.getenv("BLOCKIO_Z")\nd = os.environ.get("HOME")\n')
    assert sorted(_blockio_variables_read(module)) == ["BLOCKIO_X", "BLOCKIO_Y", "BLOCKIO_Z"]


def test_the_readme_table_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    for var in ENV_VARS:
        assert f"`{var}`" in section, var


def test_a_mapping_overrides_and_the_store_gets_the_apps_limits(served_root: Path) -> None:
    app = create_app({"BLOCKIO_ROOT": str(served_root), "BLOCKIO_MAX_BLOCK_VOXELS": 1000, "TESTING": True})
    settings = app.extensions["blockio.settings"]
    assert settings.max_block_voxels == 1000 and app.config["TESTING"] is True
    with pytest.raises(TooLarge, match="1000 voxels"):  # a Python read through the app's store keeps the app's limit
        app.extensions["blockio.store"].read_block("v", (0, 0, 0), (20, 20, 20))
    assert app.test_client().get("/api/datasets/v/block?offset=0,0,0&size=20,20,20").status_code == 413


def test_create_app_takes_settings(served_root: Path) -> None:
    app = create_app(Settings(root=str(served_root), max_content_length=1234))
    assert app.config["MAX_CONTENT_LENGTH"] == 1234
    assert app.test_client().get("/api/datasets").get_json()["total"] == 2


def test_an_unknown_setting_in_the_mapping_is_refused(served_root: Path) -> None:
    with pytest.raises(InvalidSettings, match="BLOCKIO_MAX_BLOCKS"):
        Settings().with_variables({"BLOCKIO_MAX_BLOCKS": 3})
