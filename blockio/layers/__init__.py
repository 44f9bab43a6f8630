"""One layer's reader: chunk names, fetches, validation and decoding, per format."""

from __future__ import annotations

from blockio.layers.reader import SOURCES, LayerReader

__all__ = ["SOURCES", "LayerReader"]
