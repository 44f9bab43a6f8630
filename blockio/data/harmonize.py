"""One intensity scale for patches of several datasets.

``harmonize="percentile"`` (the default) relies on the catalog's statistics:
each dataset is normalised with its own numbers (``normalize``), and the
default ``normalize="percentile"`` maps every dataset's ``[p1, p99]`` window
onto ``[0, 1]``, so datasets of different dtypes, gains and offsets share one
range.

``harmonize="histogram:<id>"`` also matches the *shape* of each dataset's
intensity distribution to that of the reference dataset ``<id>`` (any
catalogued dataset), from the 256-bin histograms the catalog stores
(``stats.histogram``: ``edges`` and ``counts`` over ``[min, max]``, per
channel in ``stats.channels`` when there are several). Each raw value ``v``
becomes ``F_ref^-1(F(v))``, ``F`` the dataset's cumulative histogram and
``F_ref^-1`` the reference's inverse, both piecewise linear between bin
edges; the result is then normalised with the *reference's* statistics.
The reference's own patches are only normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import DatasetUnavailable, InvalidRequest

__all__ = ["HARMONIZE_PREFIX", "HistogramMatch", "parse_harmonize"]

HARMONIZE_PREFIX = "histogram:"


def parse_harmonize(value: object) -> str | None:
    """The reference id of ``"histogram:<id>"``, ``None`` for ``"percentile"``; anything else is an InvalidRequest."""
    if value == "percentile":
        return None
    if isinstance(value, str) and value.startswith(HARMONIZE_PREFIX) and value[len(HARMONIZE_PREFIX) :]:
        return value[len(HARMONIZE_PREFIX) :]
    raise InvalidRequest(f"harmonize must be 'percentile' or 'histogram:<reference id>', got {value!r}")


def _histograms(stats: dict[str, Any], channels: int, dataset: str) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    per = stats.get("channels")
    sources = per if channels > 1 and isinstance(per, list) and len(per) == channels else [stats] * channels
    out = []
    for s in sources:
        try:
            edges = np.asarray(s["histogram"]["edges"], dtype=np.float64)
            counts = np.asarray(s["histogram"]["counts"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetUnavailable(f"dataset {dataset!r}: the catalog has no usable histogram for histogram matching: {exc}") from exc
        if counts.size == 0 or edges.size != counts.size + 1 or counts.sum() <= 0:
            raise DatasetUnavailable(f"dataset {dataset!r}: the catalog's histogram is empty; histogram matching needs one")
        cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
        out.append((edges, cdf))
    return out


@dataclass(frozen=True)
class HistogramMatch:
    """The per-channel lookup ``raw value -> reference raw value`` of one dataset (``xp`` increasing)."""

    tables: tuple[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]], ...]

    @classmethod
    def of(cls, stats: dict[str, Any], reference_stats: dict[str, Any], channels: int, *, dataset: str, reference: str) -> HistogramMatch:
        """The match of ``dataset`` (its ``stats``) onto ``reference`` (``reference_stats``)."""
        tables = []
        for (edges, cdf), (ref_edges, ref_cdf) in zip(_histograms(stats, channels, dataset), _histograms(reference_stats, channels, reference)):
            # the inverse of a cumulative histogram with empty bins: keep the first edge of each flat run
            levels, first = np.unique(ref_cdf, return_index=True)
            mapped = np.interp(cdf, levels, ref_edges[first])
            xp, keep = np.unique(edges, return_index=True)  # a constant volume has repeated edges
            tables.append((xp, mapped[keep]))
        return cls(tuple(tables))

    def __call__(self, block: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """A raw ``[c, z, y, x]`` block in the reference's raw units (float32)."""
        out = np.empty(block.shape, dtype=np.float32)
        for c, (xp, fp) in enumerate(self.tables):
            out[c] = np.interp(block[c], xp, fp)
        return out
