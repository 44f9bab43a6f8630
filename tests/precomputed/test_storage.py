"""The storage interface: one conformance suite (``StorageTests``) run on local, S3 and GCS roots."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from precomputed.errors import InvalidKey, InvalidOption
from precomputed.storage import LocalStorage, Storage, open_root
from tests.cloud_servers import GcsServer, S3Server, gcs_root, gcs_server, s3_root, s3_server  # noqa: F401

ODD_KEYS = [
    "with space/and more spaces.json",
    "hash#and?question",
    "percent%20not-escaped",
    "plus+equals=amp&semi;colon:",
    "unicode/zellkern-ü-核.bin",
    "tilde~and'quote\"",
    "precomputed/em/image/4_4_40/0-64_0-64_0-64",
]


class StorageTests:
    """Every backend keeps these promises; subclasses provide the ``storage`` fixture."""

    enforces_preconditions = True

    @pytest.fixture
    def storage(self) -> Storage:
        raise NotImplementedError

    def test_put_then_get_returns_the_same_bytes(self, storage: Storage) -> None:
        data = bytes(range(256)) * 5
        storage.put("a/b/c.bin", data)
        assert storage.get("a/b/c.bin") == data
        storage.put("a/b/c.bin", b"replaced", content_type="text/plain")
        assert storage.get("a/b/c.bin") == b"replaced"

    def test_empty_object(self, storage: Storage) -> None:
        storage.put("empty", b"")
        assert storage.get("empty") == b""
        assert storage.exists("empty")

    def test_missing_key_reads_as_none(self, storage: Storage) -> None:
        assert storage.get("never/written") is None
        assert storage.get_versioned("never/written") == (None, None)
        assert not storage.exists("never/written")

    def test_a_prefix_is_not_an_object(self, storage: Storage) -> None:
        storage.put("folder/file", b"x")
        assert not storage.exists("folder")
        assert storage.get("folder") is None

    def test_get_many_and_put_many(self, storage: Storage) -> None:
        items = {f"chunks/{i:03d}": f"chunk {i}".encode() for i in range(40)}
        storage.put_many(items)
        wanted = [*items, "chunks/missing"]
        got = storage.get_many(wanted)
        assert list(got) == wanted
        assert got == {**items, "chunks/missing": None}
        assert storage.get_many([]) == {}

    def test_list_is_a_string_prefix(self, storage: Storage) -> None:
        for key in ("precomputed/em/info", "precomputed/em/image/1", "precomputed/em2/info", "catalog.json"):
            storage.put(key, b"x")
        assert list(storage.list("precomputed/em/")) == ["precomputed/em/image/1", "precomputed/em/info"]
        assert list(storage.list("precomputed/em")) == ["precomputed/em/image/1", "precomputed/em/info", "precomputed/em2/info"]
        assert list(storage.list("")) == ["catalog.json", "precomputed/em/image/1", "precomputed/em/info", "precomputed/em2/info"]
        assert list(storage.list("nothing/")) == []

    def test_delete(self, storage: Storage) -> None:
        storage.put("gone", b"x")
        storage.delete("gone")
        assert storage.get("gone") is None
        assert list(storage.list("")) == []
        storage.delete("gone")  # missing: not an error

    @pytest.mark.parametrize("key", ODD_KEYS)
    def test_keys_with_odd_characters(self, storage: Storage, key: str) -> None:
        storage.put(key, key.encode())
        assert storage.get(key) == key.encode()
        assert storage.exists(key)
        assert list(storage.list("")) == [key]
        assert storage.get_many([key]) == {key: key.encode()}
        data, token = storage.get_versioned(key)
        assert data == key.encode()
        assert storage.put_if(key, b"next", token=token)
        assert storage.get(key) == b"next"
        storage.delete(key)
        assert storage.get(key) is None

    @pytest.mark.parametrize("key", ["", "/lead", "trail/", "a//b", "a/../b", "./a", "a\\b", "nul\x00"])
    def test_invalid_keys_are_refused(self, storage: Storage, key: str) -> None:
        with pytest.raises(InvalidKey):
            storage.put(key, b"x")
        with pytest.raises(InvalidKey):
            storage.get(key)

    def test_join_builds_keys(self, storage: Storage) -> None:
        assert storage.join("precomputed", "em/", "image") == "precomputed/em/image"
        with pytest.raises(InvalidKey):
            storage.join("a", "..", "b")

    def test_versioned_round_trip(self, storage: Storage) -> None:
        assert storage.put_if("cat.json", b"v1", token=None)
        data, token = storage.get_versioned("cat.json")
        assert data == b"v1" and token is not None
        assert storage.put_if("cat.json", b"v2", token=token)
        assert storage.get("cat.json") == b"v2"

    def _require_preconditions(self) -> None:
        if not self.enforces_preconditions:
            pytest.skip("this test server accepts the precondition and ignores it (see README, Object storage)")

    def test_put_if_refuses_a_stale_token(self, storage: Storage) -> None:
        self._require_preconditions()
        storage.put("cat.json", b"v1")
        _, token = storage.get_versioned("cat.json")
        storage.put("cat.json", b"someone else")
        assert not storage.put_if("cat.json", b"mine", token=token)
        assert storage.get("cat.json") == b"someone else"

    def test_put_if_none_refuses_an_existing_key(self, storage: Storage) -> None:
        self._require_preconditions()
        storage.put("cat.json", b"v1")
        assert not storage.put_if("cat.json", b"mine", token=None)
        assert storage.get("cat.json") == b"v1"

    def test_put_if_with_a_token_refuses_a_deleted_key(self, storage: Storage) -> None:
        self._require_preconditions()
        storage.put("cat.json", b"v1")
        _, token = storage.get_versioned("cat.json")
        storage.delete("cat.json")
        assert not storage.put_if("cat.json", b"mine", token=token)
        assert storage.get("cat.json") is None

    def test_put_if_race_has_exactly_one_winner(self, storage: Storage) -> None:
        self._require_preconditions()
        storage.put("cat.json", b"start")
        _, token = storage.get_versioned("cat.json")
        barrier = threading.Barrier(8)
        wins: list[int] = []

        def writer(i: int) -> None:
            barrier.wait()
            if storage.put_if("cat.json", f"writer {i}".encode(), token=token):
                wins.append(i)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert storage.get("cat.json") == f"writer {wins[0]}".encode()

    def test_put_if_create_race_has_exactly_one_winner(self, storage: Storage) -> None:
        self._require_preconditions()
        barrier = threading.Barrier(6)
        wins: list[int] = []

        def writer(i: int) -> None:
            barrier.wait()
            if storage.put_if("new.json", f"{i}".encode(), token=None):
                wins.append(i)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert storage.get("new.json") == f"{wins[0]}".encode()

    def test_cloudfiles_reads_what_was_written_at_url_for(self, storage: Storage) -> None:
        from cloudfiles import CloudFiles

        storage.put("layer/info", b'{"type": "image"}')
        assert CloudFiles(storage.url_for("layer")).get("info", raw=True) == b'{"type": "image"}'


class TestLocalStorage(StorageTests):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return open_root(str(tmp_path / "root"))

    def test_local_path_and_url(self, storage: Storage, tmp_path: Path) -> None:
        assert storage.is_local
        assert storage.local_path("a/b") == tmp_path / "root" / "a" / "b"
        assert storage.url == f"file://{tmp_path}/root"

    def test_no_lock_or_temp_file_is_listed(self, storage: Storage, tmp_path: Path) -> None:
        assert storage.put_if("catalog.json", b"1", token=None)
        storage.put("catalog.json", b"2")
        assert list(storage.list("")) == ["catalog.json"]
        assert sorted(p.name for p in (tmp_path / "root").iterdir()) == [".catalog.json.storage-lock", "catalog.json"]

    def test_an_unreadable_file_is_an_error_not_missing(self, storage: Storage) -> None:
        storage.put("secret", b"x")
        path = storage.local_path("secret")
        assert path is not None
        path.chmod(0)
        try:
            if path.stat().st_mode and _readable(path):
                pytest.skip("running as root: permissions are not enforced")
            from precomputed.errors import StoreError

            with pytest.raises(StoreError, match="cannot be read"):
                storage.get("secret")
        finally:
            path.chmod(0o644)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except PermissionError:
        return False
    return True


class TestFileUrlStorage(StorageTests):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return open_root(f"file://{tmp_path}/root with space")

    def test_the_folder_is_the_one_named(self, storage: Storage, tmp_path: Path) -> None:
        storage.put("x", b"1")
        assert (tmp_path / "root with space" / "x").read_bytes() == b"1"


@pytest.mark.cloud
class TestS3Storage(StorageTests):
    @pytest.fixture
    def storage(self, s3_root: str) -> Storage:
        return open_root(s3_root)

    def test_objects_are_where_boto3_finds_them(self, storage: Storage, s3_root: str, s3_server: S3Server) -> None:
        import boto3

        storage.put("review/verdicts.json", b"[]", content_type="application/json")
        bucket = s3_root.removeprefix("s3://").split("/")[0]
        obj = boto3.client("s3", endpoint_url=s3_server.endpoint).get_object(Bucket=bucket, Key="root/review/verdicts.json")
        assert obj["Body"].read() == b"[]"
        assert obj["ContentType"] == "application/json"

    def test_keys_without_a_session_token_reach_cloudfiles_and_cloudvolume(self, storage: Storage) -> None:
        # the fixture sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY only: CloudFiles alone raises KeyError
        import numpy as np
        from cloudvolume import CloudVolume

        storage.put("probe", b"x")
        info = CloudVolume.create_new_info(1, "image", "uint8", "raw", [4, 4, 40], [0, 0, 0], [16, 16, 8], chunk_size=[8, 8, 8])
        vol = CloudVolume(storage.url_for("layer"), info=info, progress=False)
        vol.commit_info()
        block = np.arange(16 * 16 * 8, dtype=np.uint8).reshape(16, 16, 8)
        vol[:, :, :] = block
        assert np.array_equal(CloudVolume(storage.url_for("layer"), progress=False)[:, :, :][..., 0], block)
        assert storage.exists("layer/info")


@pytest.mark.cloud
def test_an_endpoint_in_the_url_becomes_an_alias_cloudvolume_opens(s3_root: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from cloudvolume import CloudVolume

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the URL names the server
    bucket_and_prefix = s3_root.removeprefix("s3://")
    storage = open_root(f"s3://{s3_server.endpoint}/{bucket_and_prefix}")
    storage.put("x", b"1")
    assert storage.get("x") == b"1"
    url = storage.url_for("layer")
    assert url.startswith("blockio_") and "127.0.0.1" not in url
    info = CloudVolume.create_new_info(1, "segmentation", "uint32", "raw", [8, 8, 8], [0, 0, 0], [8, 8, 8], chunk_size=[8, 8, 8])
    vol = CloudVolume(url, info=info, progress=False)
    vol.commit_info()
    vol[:, :, :] = np.full((8, 8, 8), 7, dtype=np.uint32)
    assert storage.exists("layer/info")
    # the same root opened again (another process does the same) finds the same alias
    assert open_root(f"s3://{s3_server.endpoint}/{bucket_and_prefix}").url_for("layer") == url


@pytest.mark.cloud
class TestGCSStorage(StorageTests):
    @pytest.fixture
    def storage(self, gcs_root: str, gcs_server: GcsServer) -> Storage:
        self.enforces_preconditions = gcs_server.enforces_generation_match
        return open_root(gcs_root)

    def test_opening_and_reading_prints_nothing(self, storage: Storage, capsys: pytest.CaptureFixture[str]) -> None:
        storage.put("x", b"1")
        assert storage.get_many(["x"]) == {"x": b"1"}
        assert capsys.readouterr().out == ""

    def test_the_token_is_the_generation(self, storage: Storage, gcs_root: str, gcs_server: GcsServer) -> None:
        from tests.cloud_servers import _gcs_client

        storage.put("x", b"1")
        _, token = storage.get_versioned("x")
        bucket = gcs_root.removeprefix("gs://").split("/")[0]
        assert token == str(_gcs_client(gcs_server.host).bucket(bucket).get_blob("root/x").generation)


@pytest.mark.parametrize("url", ["http://example.org/root", "mem://x", "s3://", "gs:///prefix"])
def test_open_root_refuses_what_it_cannot_open(url: str) -> None:
    with pytest.raises(InvalidOption):
        open_root(url)


@pytest.mark.parametrize("form", ["relative", "file-url"])
def test_open_root_picks_the_backend(form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "./data" if form == "relative" else (tmp_path / "x").as_uri()
    assert isinstance(open_root(url), LocalStorage)


def test_keys_without_a_session_token_do_not_raise_in_cloudfiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudfiles import connectionpools, secrets

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(secrets, "CLOUD_VOLUME_SECRETS_DIR", "/nonexistent-secrets")
    monkeypatch.setattr(secrets, "CLOUD_FILES_SECRETS_DIR", "/nonexistent-secrets")
    open_root("s3://bucket/prefix")
    for lookup in (secrets.aws_credentials, connectionpools.aws_credentials):
        found = lookup(f"bucket-{id(lookup)}", "aws")
        assert found["AWS_ACCESS_KEY_ID"] == "key" and "AWS_SESSION_TOKEN" not in found


def test_an_endpoint_alias_reads_cloudvolumes_aws_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from cloudfiles import connectionpools, secrets

    (tmp_path / "aws-secret.json").write_text(json.dumps({"AWS_ACCESS_KEY_ID": "from-file", "AWS_SECRET_ACCESS_KEY": "s"}))
    monkeypatch.setattr(secrets, "CLOUD_VOLUME_SECRETS_DIR", str(tmp_path))
    storage = open_root("s3://http://127.0.0.1:9/bucket-with-alias/prefix")
    alias = storage.url_for().split("://")[0]
    assert alias.startswith("blockio_")
    assert connectionpools.aws_credentials("bucket-with-alias", alias)["AWS_ACCESS_KEY_ID"] == "from-file"
