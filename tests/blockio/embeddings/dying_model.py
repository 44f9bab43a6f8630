"""A model that ends its process after ``BLOCKIO_TEST_DIE_AFTER`` calls (a killed run), else the default model."""

from __future__ import annotations

import os
from typing import Any

from blockio.embeddings.models import multiscale_features

_calls = 0


class DyingFeatures:
    halo = multiscale_features.halo
    dimension = multiscale_features.dimension
    __version__ = multiscale_features.__version__

    def __call__(self, block: Any, **kwargs: Any) -> Any:
        global _calls
        _calls += 1
        limit = os.environ.get("BLOCKIO_TEST_DIE_AFTER")
        if limit is not None and _calls > int(limit):
            os._exit(9)  # no cleanup, no finally: as a SIGKILL leaves it
        return multiscale_features(block, **kwargs)


model = DyingFeatures()
