"""``from blockio.torch import BlockDataset``: the PyTorch Dataset (imports torch).

The code lives in :mod:`blockio.data.dataset`.
"""

from __future__ import annotations

from blockio.data.dataset import BlockDataset

__all__ = ["BlockDataset"]
