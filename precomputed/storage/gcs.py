"""A ``gs://`` root: CloudFiles for plain transfers, google-cloud-storage for conditional uploads.

:meth:`GCSStorage.put_if` uploads with ``ifGenerationMatch`` (``0``: only if
the object does not exist); a 412 means another writer won. Like the S3
backend it tags each conditional upload with a random
``blockio-write-id`` in the object's metadata, so a retried upload whose
first attempt had landed is not mistaken for a lost race.

Credentials: CloudVolume's ``google-secret.json`` (or ``<bucket>-google-secret.json``)
when present, else application default credentials; with
``STORAGE_EMULATOR_HOST`` set, the emulator (anonymously).
"""

from __future__ import annotations

import os
import secrets
import threading
from typing import Any

from .base import check_key
from .cloud import WRITE_ID, CloudStorage
from .endpoints import guard_google_credentials

__all__ = ["GCSStorage"]


class GCSStorage(CloudStorage):
    """A bucket prefix on Google Cloud Storage (or its emulator).

    Parameters
    ----------
    url
        ``gs://bucket[/prefix]``.
    """

    def __init__(self, url: str) -> None:
        guard_google_credentials()
        super().__init__(url, url)
        bucket, _, prefix = url.rstrip("/").removeprefix("gs://").partition("/")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._bucket: Any = None
        self._bucket_lock = threading.Lock()

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    @property
    def bucket(self) -> Any:
        """The google-cloud-storage ``Bucket`` of this root."""
        with self._bucket_lock:
            if self._bucket is None:
                from google.cloud import storage

                self._bucket = self._client(storage).bucket(self.bucket_name)
            return self._bucket

    def _client(self, storage: Any) -> Any:
        from cloudfiles.secrets import secretpath

        if not os.environ.get("STORAGE_EMULATOR_HOST"):
            for name in (f"{self.bucket_name}-google-secret.json", "google-secret.json"):
                path = secretpath(name)
                if os.path.exists(path):
                    return storage.Client.from_service_account_json(path)
        try:
            return storage.Client()
        except Exception as exc:
            raise self._fail("opened", "", exc) from exc

    def exists(self, key: str) -> bool:
        # CloudFiles checks existence with the JSON API's batch endpoint; one GET of the metadata
        # works on every server (the emulator has no batch endpoint and answered "missing")
        try:
            return bool(self.bucket.blob(self._object(key)).exists())
        except Exception as exc:
            raise self._fail("checked", key, exc) from exc

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        from google.api_core import exceptions

        name = self._object(key)
        try:
            blob = self.bucket.blob(name)
            data = blob.download_as_bytes()
            if blob.generation is not None:  # GCS sends x-goog-generation with the bytes: one round trip
                return bytes(data), str(blob.generation)
            # a server that does not (the emulator): generation first, then bytes no older than it
            meta = self.bucket.get_blob(name)
            if meta is None:
                return None, None
            return bytes(self.bucket.blob(name).download_as_bytes()), str(meta.generation)
        except exceptions.NotFound:
            return None, None
        except Exception as exc:
            raise self._fail("read", key, exc) from exc

    def put_if(self, key: str, data: bytes, *, token: str | None, content_type: str | None = None) -> bool:
        from google.api_core import exceptions

        write_id = secrets.token_hex(16)
        blob = self.bucket.blob(self._object(key))
        blob.metadata = {WRITE_ID: write_id}
        try:
            blob.upload_from_string(bytes(data), content_type=content_type or "application/octet-stream", if_generation_match=int(token) if token is not None else 0)
            return True
        except exceptions.PreconditionFailed:
            pass
        except Exception as exc:
            raise self._fail("written", key, exc) from exc
        try:
            current = self.bucket.get_blob(self._object(key))
        except exceptions.GoogleAPIError:
            return False
        return bool(current is not None and (current.metadata or {}).get(WRITE_ID) == write_id)
