"""An ``s3://`` root: CloudFiles for plain transfers, boto3 for conditional PUTs.

:meth:`S3Storage.put_if` sends ``If-None-Match: *`` (create only) or
``If-Match: <ETag>`` (replace only that version), which AWS S3 has honoured
since 2024 (moto's server too). A 412 Precondition Failed, a 409
ConditionalRequestConflict (two conditional writes racing) or a 404 (the
object went away) mean another writer won. Each conditional PUT carries a
random ``x-amz-meta-blockio-write-id``: when boto3 retried a request whose
first attempt had in fact landed, the 412 of the retry is recognised as our
own write, so a success is never reported as a conflict.

The endpoint is ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (boto3 reads
them) or one written into the root URL (``s3://http://host:port/bucket/p``,
turned into a CloudFiles alias by :mod:`precomputed.storage.endpoints`).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from .base import check_key
from .cloud import WRITE_ID, CloudStorage
from .endpoints import endpoint_alias, guard_aws_credentials, split_endpoint

__all__ = ["S3Storage"]

_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}


class S3Storage(CloudStorage):
    """A bucket prefix on S3 or an S3-compatible server.

    Parameters
    ----------
    url
        ``s3://bucket[/prefix]`` or ``s3://http(s)://host:port/bucket[/prefix]``.
    """

    def __init__(self, url: str) -> None:
        guard_aws_credentials()
        endpoint, rest = split_endpoint(url.rstrip("/"))
        bucket, _, prefix = rest.partition("/")
        cloudpath = f"{endpoint_alias(endpoint)}://{rest}" if endpoint else f"s3://{rest}"
        super().__init__(url, cloudpath)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self._client: Any = None
        self._client_lock = threading.Lock()

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    @property
    def client(self) -> Any:
        """A boto3 S3 client with CloudFiles' credentials (secrets files, then boto3's own chain)."""
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config
                from cloudfiles.secrets import aws_credentials

                found = aws_credentials(self.bucket, "aws")
                extra: dict[str, Any] = {"endpoint_url": self.endpoint} if self.endpoint else {}
                self._client = boto3.client(
                    "s3",
                    aws_access_key_id=found.get("AWS_ACCESS_KEY_ID"),
                    aws_secret_access_key=found.get("AWS_SECRET_ACCESS_KEY"),
                    aws_session_token=found.get("AWS_SESSION_TOKEN"),
                    region_name=found.get("AWS_DEFAULT_REGION"),
                    config=Config(retries={"mode": "standard"}, max_pool_connections=32),
                    **extra,
                )
            return self._client

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            return bytes(response["Body"].read()), str(response["ETag"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise self._fail("read", key, exc) from exc
        except Exception as exc:
            raise self._fail("read", key, exc) from exc

    def put_if(self, key: str, data: bytes, *, token: str | None, content_type: str | None = None) -> bool:
        from botocore.exceptions import ClientError

        write_id = secrets.token_hex(16)
        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._object(key),
                Body=bytes(data),
                ContentType=content_type or "application/octet-stream",
                Metadata={WRITE_ID: write_id},
                **condition,
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _LOST_RACE:
                raise self._fail("written", key, exc) from exc
        except Exception as exc:
            raise self._fail("written", key, exc) from exc
        return self._written_by(key, write_id)

    def _written_by(self, key: str, write_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError:
            return False
        return bool(head.get("Metadata", {}).get(WRITE_ID) == write_id)
