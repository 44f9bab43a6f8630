"""``blockio users add|list|remove``: the token is printed once, as the last line, and works; only its hash is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blockio.cli.main import main
from blockio.database import open_database
from blockio.users import Users
from tests.blockio.cli.test_imports import heavy_among, imported_modules


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_a_working_token_once_as_its_last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "users", "add", "ann", "--role", "reviewer", "--root", str(tmp_path))
    token = out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("blk_")
    user = Users(open_database(root=tmp_path)).verify(token)
    assert user is not None and (user.name, user.role) == ("ann", "reviewer")
    data = b"".join(p.read_bytes() for p in (tmp_path / "review").iterdir())
    assert token.rsplit("_", 1)[1].encode() not in data
    code, out, _ = run(capsys, "users", "list", "--root", str(tmp_path))
    assert code == 0 and out.startswith("ann\treviewer\t") and "blk_" not in out


def test_list_remove_and_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path)
    for name, role in (("bob", "writer"), ("ann", "admin")):
        assert run(capsys, "users", "add", name, "--role", role, "--root", root)[0] == 0
    code, _, err = run(capsys, "users", "add", "ann", "--role", "reader", "--root", root)
    assert code == 1 and "exists already" in err
    code, _, err = run(capsys, "users", "add", "a b", "--role", "reader", "--root", root)
    assert code == 1 and "invalid user name" in err
    with pytest.raises(SystemExit):  # a role argparse does not know
        main(["users", "add", "carl", "--role", "boss", "--root", root])
    capsys.readouterr()
    code, out, _ = run(capsys, "users", "list", "--json", "--root", root)
    assert [(u["name"], u["role"]) for u in json.loads(out)] == [("ann", "admin"), ("bob", "writer")]
    assert run(capsys, "users", "remove", "bob", "--root", root)[0] == 0
    code, _, err = run(capsys, "users", "remove", "bob", "--root", root)
    assert code == 1 and "no user named 'bob'" in err


def test_the_database_url_setting_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOCKIO_DATABASE_URL", f"sqlite:///{tmp_path}/elsewhere.sqlite")
    assert run(capsys, "users", "add", "ann", "--role", "reader", "--root", str(tmp_path / "root"))[0] == 0
    assert (tmp_path / "elsewhere.sqlite").exists() and not (tmp_path / "root").exists()


def test_users_starts_light(tmp_path: Path) -> None:
    names = imported_modules("users", "list", "--root", str(tmp_path))
    assert heavy_among(names) == [] and not any(n.startswith("blockio.serving") for n in names)
