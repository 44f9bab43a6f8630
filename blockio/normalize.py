"""Intensity normalisation from the catalog's statistics.

Every block of a dataset is normalised with the same numbers (those computed
over the whole volume at ingest), so blocks agree with each other and with
the training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import DatasetUnavailable, InvalidRequest

__all__ = ["NORMALIZATIONS", "normalize"]

NORMALIZATIONS = ("zscore", "minmax", "percentile")


def _channel_stats(stats: dict[str, Any], channels: int) -> list[dict[str, Any]]:
    per = stats.get("channels")
    if channels > 1 and isinstance(per, list) and len(per) == channels:
        return per
    return [stats] * channels


def normalize(data: npt.NDArray[Any], method: str, stats: dict[str, Any]) -> npt.NDArray[np.float32]:
    """Normalise a ``[c, z, y, x]`` block to float32.

    ``zscore``: (v - mean) / std. ``minmax``: (v - min) / (max - min).
    ``percentile``: (v - p1) / (p99 - p1) clipped to [0, 1].
    """
    if method not in NORMALIZATIONS:
        raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or empty, got {method!r}")
    out = np.empty(data.shape, dtype=np.float32)
    for c, s in enumerate(_channel_stats(stats, data.shape[0])):
        try:
            if method == "zscore":
                lo, scale = float(s["mean"]), float(s["std"])
            elif method == "minmax":
                lo, scale = float(s["min"]), float(s["max"]) - float(s["min"])
            else:
                lo = float(s["percentiles"]["1"])
                scale = float(s["percentiles"]["99"]) - lo
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetUnavailable(f"the catalog has no usable statistics for {method} normalisation: {exc}") from exc
        scale = scale if scale > 0 else 1.0
        np.subtract(data[c], lo, out=out[c], dtype=np.float32, casting="unsafe")
        out[c] *= np.float32(1.0 / scale)
        if method == "percentile":
            np.clip(out[c], 0.0, 1.0, out=out[c])
    return out
