"""What S3 and GCS roots share: CloudFiles for plain reads, writes, listings and deletes.

CloudFiles (which CloudVolume uses) brings the connection pools, the
concurrent batch transfers and the credential lookup. The conditional
requests :meth:`~precomputed.storage.base.Storage.put_if` needs are not in
CloudFiles; each backend makes them with its own client (boto3,
google-cloud-storage).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .base import Storage, check_key

if TYPE_CHECKING:
    from cloudfiles import CloudFiles

__all__ = ["CloudStorage", "WRITE_ID"]

log = logging.getLogger(__name__)

WRITE_ID = "blockio-write-id"
"""Object metadata naming the put_if that wrote it: a retried request that already landed is recognised."""

THREADS = 32  # concurrent requests of one get_many / put_many: remote latency, not bandwidth, is the limit


class CloudStorage(Storage):
    """A bucket prefix read and written through CloudFiles.

    Parameters
    ----------
    url
        The root as the user wrote it (``s3://bucket/prefix``).
    cloudpath
        The root as CloudFiles opens it (an endpoint alias where needed).
    """

    is_local = False

    def __init__(self, url: str, cloudpath: str) -> None:
        self.url = url.rstrip("/")
        self._cloudpath = cloudpath.rstrip("/")
        self._cf: CloudFiles | None = None

    @property
    def cf(self) -> CloudFiles:
        if self._cf is None:
            from cloudfiles import CloudFiles

            self._cf = CloudFiles(self._cloudpath + "/", progress=False, green=False, num_threads=THREADS)
        return self._cf

    def url_for(self, key: str = "") -> str:
        return self._cloudpath if not key else f"{self._cloudpath}/{check_key(key)}"

    def _fail(self, action: str, key: str, exc: BaseException) -> StoreError:
        where = self.url_for(key) if key else self.url
        return StoreError(f"{where}: cannot be {action}: {type(exc).__name__}: {exc}")

    # reading ------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        check_key(key)
        try:
            data = self.cf.get(key, raw=True)
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        return None if data is None else bytes(data)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        wanted = [check_key(k) for k in keys]
        if not wanted:
            return {}
        try:
            results: list[dict[str, Any]] = self.cf.get(wanted, raw=True, raise_errors=False)
        except Exception as exc:
            raise self._fail("read", wanted[0], exc) from exc
        out: dict[str, bytes | None] = {}
        for res in results:
            if res.get("error") is not None:
                raise self._fail("read", res["path"], res["error"])
            content = res.get("content")
            out[res["path"]] = None if content is None else bytes(content)
        return {k: out.get(k) for k in wanted}

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            return bool(self.cf.exists(key))
        except Exception as exc:
            raise self._fail("checked", key, exc) from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        try:
            found = sorted(self.cf.list(prefix=prefix, flat=False))
        except Exception as exc:
            raise self._fail("listed", prefix, exc) from exc
        yield from found

    # writing ------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str | None = None, durable: bool = True) -> None:
        check_key(key)
        try:
            self.cf.put(key, bytes(data), content_type=content_type or "application/octet-stream", compress=None, raw=True)
        except Exception as exc:
            raise self._fail("written", key, exc) from exc

    def put_many(self, items: Mapping[str, bytes], *, content_type: str | None = None, durable: bool = True) -> None:
        files: list[dict[str, Any]] = [{"path": check_key(k), "content": bytes(v)} for k, v in items.items()]
        if not files:
            return
        try:
            self.cf.puts(files, content_type=content_type or "application/octet-stream", compress=None, raw=True)
        except Exception as exc:
            raise self._fail("written", files[0]["path"], exc) from exc

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self.cf.delete(key)
        except Exception as exc:
            raise self._fail("deleted", key, exc) from exc
