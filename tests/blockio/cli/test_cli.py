"""The blockio command: each subcommand, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from blockio.cli.main import main
from precomputed.catalog import Catalog
from precomputed.synthetic import make_em_volume, write_tiff_stack


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def fail(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, _, err = run(capsys, *args)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockio: error: "), err
    return lines[0]


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "v.npy", np.arange(8 * 16 * 24, dtype=np.uint16).reshape(8, 16, 24))
    return tmp_path / "v.npy"


def test_ingest_list_show_missing_validate(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    code, out, _ = run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")
    assert code == 0 and "ingested v" in out and "(default)" in out
    code, out, _ = run(capsys, "catalog", "list", "--root", str(root))
    assert code == 0 and out.startswith("v ") and "[24, 16, 8]" in out
    code, out, _ = run(capsys, "catalog", "show", "v", "--root", str(root))
    assert json.loads(out)["shape"] == [24, 16, 8]
    code, out, _ = run(capsys, "catalog", "missing", "--root", str(root), "--json")
    missing = json.loads(out)["v"]
    assert any(m.startswith("voxel_size:") for m in missing) and any(m.startswith("axes:") for m in missing)
    code, out, _ = run(capsys, "catalog", "validate", "--root", str(root))
    assert code == 0 and out.strip() == "v: ok"


def test_missing_lists_nothing_when_everything_is_known(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    write_tiff_stack(tmp_path / "s", make_em_volume((32, 32, 4)).image, (8, 8, 40))
    assert run(capsys, "ingest", str(tmp_path / "s"), "--id", "s", "--root", str(root), "--quiet")[0] == 0
    code, out, _ = run(capsys, "catalog", "missing", "--root", str(root))
    assert "nothing missing" in out


def test_validate_finds_a_deleted_store(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")
    (root / "precomputed" / "v" / "image" / "info").unlink()
    code, out, _ = run(capsys, "catalog", "validate", "--root", str(root))
    assert code == 1 and "info is missing" in out


def test_profiles_listed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalog", "profiles")
    assert code == 0 and "sbem" in out and "8,8,25 nm" in out


def test_missing_source(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    assert "nope.tif" in fail(capsys, "ingest", str(tmp_path / "nope.tif"), "--id", "x", "--root", str(root))


def test_unreadable_file(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    assert "bad.tif" in fail(capsys, "ingest", str(tmp_path / "bad.tif"), "--id", "x", "--root", str(root))


def test_unsupported_format(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert "notes.txt" in fail(capsys, "ingest", str(tmp_path / "notes.txt"), "--id", "x", "--root", str(root))


def test_stack_with_mixed_shapes(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    tifffile.imwrite(tmp_path / "s" / "z0.tif", np.zeros((10, 10), np.uint8))
    tifffile.imwrite(tmp_path / "s" / "z1.tif", np.zeros((10, 12), np.uint8))
    assert "z1.tif" in fail(capsys, "ingest", str(tmp_path / "s"), "--id", "x", "--root", str(root))


def test_stack_with_mixed_dtypes(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    tifffile.imwrite(tmp_path / "s" / "z0.tif", np.zeros((10, 10), np.uint8))
    tifffile.imwrite(tmp_path / "s" / "z1.tif", np.zeros((10, 10), np.uint16))
    assert "z1.tif" in fail(capsys, "ingest", str(tmp_path / "s"), "--id", "x", "--root", str(root))


@pytest.mark.parametrize("axes", ["qyx", "zzyx", "zy", "czyxq"])
def test_unknown_axes(capsys: pytest.CaptureFixture[str], root: Path, npy: Path, axes: str) -> None:
    assert "axes" in fail(capsys, "ingest", str(npy), "--id", "x", "--root", str(root), "--axes", axes).lower()


def test_existing_id_refused_unless_overwrite(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    assert run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")[0] == 0
    before = (root / "catalog.json").read_text()
    assert "--overwrite" in fail(capsys, "ingest", str(npy), "--id", "v", "--root", str(root))
    assert (root / "catalog.json").read_text() == before
    assert run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet", "--overwrite")[0] == 0


@pytest.mark.parametrize("bad_id", ["a/b", "x y", "..", "", "é", "a" * 129])
def test_bad_ids(capsys: pytest.CaptureFixture[str], root: Path, npy: Path, bad_id: str) -> None:
    assert "invalid dataset id" in fail(capsys, "ingest", str(npy), "--id", bad_id, "--root", str(root))


def test_root_not_writable(capsys: pytest.CaptureFixture[str], tmp_path: Path, npy: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    assert "cannot be created" in fail(capsys, "ingest", str(npy), "--id", "v", "--root", str(tmp_path / "file" / "root"))


def test_a_bucket_without_credentials_is_one_clear_line(capsys: pytest.CaptureFixture[str], npy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # bucket roots are taken (see the cloud tests); without credentials the user gets the root and the reason
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    line = fail(capsys, "ingest", str(npy), "--id", "v", "--root", "gs://bucket/root")
    assert "gs://bucket/root" in line and "credentials" in line.lower()


def test_malformed_catalog_is_never_overwritten(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    (root / "catalog.json").write_text('{"schema_version": 1,\n "datasets": {,}}\n')
    line = fail(capsys, "ingest", str(npy), "--id", "v", "--root", str(root))
    assert "line 2" in line and "never overwritten" in line
    assert (root / "catalog.json").read_text() == '{"schema_version": 1,\n "datasets": {,}}\n'
    assert not (root / "zarr").exists()


def test_malformed_record_leaves_others_served(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    run(capsys, "ingest", str(npy), "--id", "good", "--root", str(root), "--quiet")
    run(capsys, "ingest", str(npy), "--id", "bad", "--root", str(root), "--quiet")
    data = json.loads((root / "catalog.json").read_text())
    data["datasets"]["bad"]["voxel_size"] = [4, 4, -1]
    (root / "catalog.json").write_text(json.dumps(data))
    assert "voxel_size[2]" in fail(capsys, "catalog", "show", "bad", "--root", str(root))
    code, out, _ = run(capsys, "catalog", "show", "good", "--root", str(root))
    assert code == 0 and json.loads(out)["id"] == "good"
    code, out, _ = run(capsys, "catalog", "list", "--root", str(root))
    assert "bad" in out and "UNAVAILABLE" in out and "good " in out
    # a new dataset is still added, and the broken record is kept as it was for a curator
    assert run(capsys, "ingest", str(npy), "--id", "new", "--root", str(root), "--quiet")[0] == 0
    assert Catalog(root).ids() == ["bad", "good", "new"]
    assert json.loads((root / "catalog.json").read_text())["datasets"]["bad"]["voxel_size"] == [4, 4, -1]


def test_float64_refused(capsys: pytest.CaptureFixture[str], root: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((4, 4, 4)))
    assert "float64" in fail(capsys, "ingest", str(tmp_path / "f.npy"), "--id", "f", "--root", str(root))


def test_unknown_profile_lists_known(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    assert "sbem" in fail(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--profile", "nope")


def test_unknown_unit(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    assert "furlong" in fail(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--voxel-size", "1,1,1", "--unit", "furlong")


def test_unknown_dataset(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")
    assert "no dataset 'x'" in fail(capsys, "catalog", "show", "x", "--root", str(root))


@pytest.mark.parametrize("action", [["list"], ["list", "--json"], ["show", "v"], ["missing"], ["validate"]])
def test_catalog_refuses_a_root_that_does_not_exist(capsys: pytest.CaptureFixture[str], tmp_path: Path, action: list[str]) -> None:
    line = fail(capsys, "catalog", *action, "--root", str(tmp_path / "typo"))
    assert line == f"blockio: error: no blockio store at {tmp_path / 'typo'}: no catalog.json (the folder does not exist); create one with blockio ingest or blockio demo"
    assert not (tmp_path / "typo").exists()


def test_catalog_refuses_a_folder_without_a_catalog(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    line = fail(capsys, "catalog", "list", "--root", str(root))
    assert line == f"blockio: error: no blockio store at {root}: no catalog.json; create one with blockio ingest or blockio demo"
    assert list(root.iterdir()) == []


def test_catalog_reads_the_default_root_from_the_environment(capsys: pytest.CaptureFixture[str], root: Path, npy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")
    monkeypatch.setenv("BLOCKIO_ROOT", str(root))
    code, out, _ = run(capsys, "catalog", "list")
    assert code == 0 and out.startswith("v ")


def test_catalog_lists_a_store_whose_datasets_were_all_removed(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    run(capsys, "ingest", str(npy), "--id", "v", "--root", str(root), "--quiet")
    Catalog(root).remove("v")
    code, out, _ = run(capsys, "catalog", "list", "--root", str(root))
    assert code == 0 and out.strip() == f"no datasets in {root}"


@pytest.mark.parametrize("command", [["serve"], ["predict", "v", "--model", "m:f", "--name", "p"], ["evaluate", "v", "--pred", "p", "--truth", "t"]])
def test_read_commands_refuse_a_mistyped_root(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]) -> None:
    assert "no blockio store at" in fail(capsys, *command, "--root", str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


def test_ingest_still_creates_a_new_root(capsys: pytest.CaptureFixture[str], tmp_path: Path, npy: Path) -> None:
    code, out, _ = run(capsys, "ingest", str(npy), "--id", "v", "--root", str(tmp_path / "new" / "root"), "--quiet")
    assert code == 0 and (tmp_path / "new" / "root" / "catalog.json").is_file()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import blockio

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"blockio {blockio.__version__}"


def test_serve_options_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--host HOST interface to listen on" in text and "--port PORT port to listen on" in text
    assert "pip install -e '.[serve]'" in text and "'blockio.serving:create_app()'" in text


def test_demo_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "as they land" not in text
    for part in ("synthetic", "ingest", "'truth'", "'pred'", "meshes", "evaluate", "review page", "tiny 3-D CNN", "--port PORT"):
        assert part in text, part


def test_bad_voxel_size_is_a_usage_error(capsys: pytest.CaptureFixture[str], root: Path, npy: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest", str(npy), "--id", "v", "--root", str(root), "--voxel-size", "1,2"])
    assert exc.value.code == 2
    assert "three positive numbers" in capsys.readouterr().err


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "blockio.cli", "ingest", str(tmp_path / "missing.npy"), "--id", "x", "--root", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_every_subcommand_has_help() -> None:
    for args in (["--help"], ["ingest", "--help"], ["catalog", "--help"], ["catalog", "list", "--help"], ["catalog", "show", "--help"], ["catalog", "missing", "--help"], ["catalog", "validate", "--help"], ["catalog", "profiles", "--help"], ["serve", "--help"], ["demo", "--help"], ["predict", "--help"], ["evaluate", "--help"]):
        result = subprocess.run([sys.executable, "-m", "blockio.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: blockio" in result.stdout, args
