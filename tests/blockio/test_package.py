"""The package's public surface: light to import, names resolve."""

from __future__ import annotations

import subprocess
import sys

import blockio


def test_import_is_light() -> None:
    code = "import sys, blockio; print(sorted(m for m in ('torch', 'cloudvolume', 'neuroglancer', 'redis', 'flask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_public_names_resolve() -> None:
    for name in blockio.__all__:
        assert getattr(blockio, name) is not None, name
    assert blockio.__all__ == sorted(blockio.__all__)
    assert issubclass(blockio.OutOfBounds, ValueError) and issubclass(blockio.DatasetNotFound, KeyError)
