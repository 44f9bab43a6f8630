"""Models the live layer tests name by spec (``tests.blockio.inference.live_models:SMOOTH``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.inference.models import threshold_model

__all__ = ["LABELS", "SMOOTH", "SmoothLabels"]

#: scores [1, Z, Y, X] of a Gaussian-smoothed threshold: receptive radius 4 voxels, so block-size independent with overlap >= 4
SMOOTH = threshold_model(0.5, sigma=(1.0, 1.0, 1.0))


class SmoothLabels:
    """The same model returning integer semantic labels [Z, Y, X] (1 = foreground)."""

    __version__ = "1"

    def __call__(self, block: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return np.asarray(SMOOTH(block)[0] > 0.5, dtype=np.uint8)


LABELS = SmoothLabels()
