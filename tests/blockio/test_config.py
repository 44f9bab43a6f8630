"""Settings: read once from BLOCKIO_*, checked, documented in the README, used by the app and the store."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(("var", "value"), [("BLOCKIO_CACHE_BYTES", "lots"), ("BLOCKIO_MAX_INFLIGHT", "0"), ("BLOCKIO_QUEUE_TIMEOUT_S", "inf"), ("BLOCKIO_NEUROGLANCER_PORT", "70000"), ("BLOCKIO_CORS_ORIGINS", " , ")])
def test_a_bad_value_names_its_variable(var: str, value: str) -> None:
    with pytest.raises(InvalidSettings, match=var.removeprefix("BLOCKIO_").lower() + "|" + var):
        Settings.from_env({var: value})


def test_the_token_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(Settings(write_token="s3cret"))


def test_no_other_module_reads_blockio_variables() -> None:
    readers = []
    for package in ("blockio", "viewer"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "config.py" and path.parent.name == "blockio":
                continue
            if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
                readers.append(str(path.relative_to(REPO)))
    assert not readers, f"read the environment through blockio.config.Settings: {readers}"


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
