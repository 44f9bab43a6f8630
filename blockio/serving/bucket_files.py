"""The precomputed file server on a bucket root: objects streamed from the bucket, not redirected.

Why stream rather than redirect to the bucket: the browser then talks to one
origin, so CORS (on errors too), authentication and ``Content-Encoding:
gzip`` for CloudVolume's ``*.gz`` twins stay under the service's control,
private buckets need no signed URLs, and Neuroglancer, TensorStore and
CloudVolume read the same URLs whatever the root is. The price is that the
bytes pass through the server once.

- A plain GET is one request to the bucket: the object (``key``, else its
  ``key.gz`` twin), with an ETag (MD5 of its bytes, as S3 computes for a
  single-part upload) that ``If-None-Match`` is answered from.
- A ``Range`` GET is two: a HEAD for the size and the encoding, then a ranged
  GET of exactly the bytes asked for (a shard file is never read whole for
  Neuroglancer's index reads); 206, or 416 naming the size.

An object whose own ``Content-Encoding`` is gzip (CloudFiles uploads
compressed chunks so) is sent with that header, like a ``.gz`` twin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, request

from blockio.errors import StorageError
from precomputed.storage import Storage

__all__ = ["serve_object"]


@dataclass(frozen=True)
class _Head:
    size: int
    etag: str | None
    modified: datetime | None
    encoding: str | None


def serve_object(storage: Storage, key: str, mimetype: str) -> Response:
    """The response for the object ``key`` of a bucket root (404 when neither it nor ``key.gz`` exists)."""
    if request.headers.get("Range") and request.range is not None and len(request.range.ranges) == 1:
        return _serve_range(storage, key, mimetype)
    for candidate, twin in ((key, False), (key + ".gz", True)):
        found = _get(storage, candidate)
        if found is None:
            continue
        data, encoding = found
        resp = Response(data, mimetype=mimetype)
        resp.set_etag(hashlib.md5(data, usedforsecurity=False).hexdigest())
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["Cache-Control"] = "no-cache"
        if twin or encoding == "gzip":
            resp.headers["Content-Encoding"] = "gzip"
        resp.make_conditional(request)  # 304 for a matching If-None-Match (changes resp in place)
        return resp
    abort(404)


def _serve_range(storage: Storage, key: str, mimetype: str) -> Response:
    for candidate, twin in ((key, False), (key + ".gz", True)):
        head = _head(storage, candidate)
        if head is None:
            continue
        assert request.range is not None  # noqa: S101 - checked by the caller
        bounds = request.range.range_for_length(head.size)
        if bounds is None:
            resp = Response(status=416)
            resp.headers["Content-Range"] = f"bytes */{head.size}"
            return resp
        start, stop = bounds
        data = _get(storage, candidate, start, stop)
        if data is None:  # deleted between the HEAD and the GET
            abort(404)
        resp = Response(data[0], status=206, mimetype=mimetype)
        resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{head.size}"
        resp.headers["Accept-Ranges"] = "bytes"
        if head.etag:
            resp.set_etag(head.etag)
        if head.modified is not None:
            resp.last_modified = head.modified
        if twin or head.encoding == "gzip":
            resp.headers["Content-Encoding"] = "gzip"
        return resp
    abort(404)


def _get(storage: Storage, key: str, start: int | None = None, stop: int | None = None) -> tuple[bytes, str | None] | None:
    """The stored bytes of ``key`` (or ``[start, stop)`` of them) and the object's Content-Encoding; None if missing."""
    cf: Any = getattr(storage, "cf")  # noqa: B009 - CloudStorage's CloudFiles (bucket roots only)
    # a list of one path runs in this thread (a longer list waits on CloudFiles' polled queue)
    path: dict[str, Any] = {"path": key} if start is None else {"path": key, "start": start, "end": stop}
    try:
        (res,) = cf.get([path], raw=True, raise_errors=False)
    except Exception as exc:  # connection setup
        raise StorageError(f"{storage.url_for(key)}: cannot be read: {type(exc).__name__}: {exc}") from exc
    if res.get("error") is not None:
        raise StorageError(f"{storage.url_for(key)}: cannot be read: {type(res['error']).__name__}: {res['error']}")
    content = res.get("content")
    return None if content is None else (bytes(content), res.get("compress") or None)


def _head(storage: Storage, key: str) -> _Head | None:
    """Size, ETag, modification time and Content-Encoding of ``key``; None if missing."""
    from precomputed.storage.gcs import GCSStorage
    from precomputed.storage.s3 import S3Storage

    try:
        if isinstance(storage, S3Storage):
            from botocore.exceptions import ClientError

            try:
                got = storage.client.head_object(Bucket=storage.bucket, Key=storage._object(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return _Head(int(got["ContentLength"]), str(got.get("ETag") or "").strip('"') or None, got.get("LastModified"), got.get("ContentEncoding") or None)
        if isinstance(storage, GCSStorage):
            blob = storage.bucket.get_blob(storage._object(key))
            if blob is None:
                return None
            return _Head(int(blob.size), str(blob.etag or "").strip('"') or None, blob.updated, blob.content_encoding or None)
    except Exception as exc:  # permissions, network, a server error
        raise StorageError(f"{storage.url_for(key)}: cannot be read: {type(exc).__name__}: {exc}") from exc
    raise StorageError(f"{storage.url}: the file server reads folders, s3:// and gs:// roots")
