"""One interface for everything under a store root: a folder, ``file://``, ``s3://`` or ``gs://``.

>>> root = open_root("s3://lab-data/blockio")            # doctest: +SKIP
>>> root.put(root.join("review", "note.json"), b"{}", content_type="application/json")
>>> root.get("review/note.json")
b'{}'
>>> data, token = root.get_versioned("catalog.json")      # optimistic concurrency
>>> root.put_if("catalog.json", new_bytes, token=token)   # False: someone else won, read again

Which URL opens what:

=========================================  =========================================
``./blockio-data``, ``/abs``, ``file://``  :class:`LocalStorage` (atomic replace, file locks)
``s3://bucket/prefix``                     :class:`S3Storage`, endpoint from ``AWS_ENDPOINT_URL[_S3]``
``s3://http://host:port/bucket/prefix``    :class:`S3Storage` on that endpoint (CloudFiles alias)
``gs://bucket/prefix``                     :class:`GCSStorage` (``STORAGE_EMULATOR_HOST`` honoured)
=========================================  =========================================

Every writer and reader of a root goes through this package; see
:class:`Storage` for the promises each backend keeps. Optional heavy imports
(CloudFiles, boto3, google-cloud-storage) happen on first use of a bucket.
"""

from __future__ import annotations

import os

from ..errors import InvalidKey, InvalidOption
from .base import Storage, check_key
from .local import LocalStorage

__all__ = ["InvalidKey", "LocalStorage", "Storage", "check_key", "is_remote", "open_root"]

_REMOTE = ("s3://", "gs://")


def is_remote(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` names a bucket (``s3://``, ``gs://``) rather than a folder."""
    return isinstance(url, str) and url.startswith(_REMOTE)


def open_root(url: str | os.PathLike[str]) -> Storage:
    """The storage of a store root.

    Parameters
    ----------
    url
        A folder (``str`` or path-like, ``~`` expanded), ``file:///abs/folder``,
        ``s3://bucket[/prefix]``, ``s3://http(s)://host:port/bucket[/prefix]``
        or ``gs://bucket[/prefix]``. Nothing is created or contacted yet.

    Raises
    ------
    InvalidOption
        Another scheme (``http://``, ``mem://``, ...) or a bucket URL without a bucket.
    """
    if not isinstance(url, str):
        return LocalStorage(url)
    if url.startswith("s3://"):
        from .endpoints import split_endpoint
        from .s3 import S3Storage

        if not split_endpoint(url)[1].split("/")[0]:
            raise InvalidOption(f"store root {url!r} names no bucket (s3://BUCKET/prefix)")
        return S3Storage(url)
    if url.startswith("gs://"):
        from .gcs import GCSStorage

        if not url.removeprefix("gs://").split("/")[0]:
            raise InvalidOption(f"store root {url!r} names no bucket (gs://BUCKET/prefix)")
        return GCSStorage(url)
    scheme, sep, _ = url.partition("://")
    if sep and scheme != "file":
        raise InvalidOption(f"store root {url!r}: scheme {scheme}:// is not supported (a folder, file://, s3:// or gs://)")
    return LocalStorage(url)
