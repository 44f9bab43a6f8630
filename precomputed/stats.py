"""Intensity statistics computed while streaming, merged across tasks.

Each ingest task summarises its block with :func:`block_summary`; summaries
merge exactly (counts, sums and Chan's parallel variance), so the result does
not depend on the order tasks finish in. 8- and 16-bit data keep an exact
histogram of every value, so their percentiles are exact. Wider types keep a
fine histogram per block (:data:`FINE_BINS` bins over that block's range)
which is re-binned onto the global range at the end: percentiles are then
accurate to one fine bin of the widest block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FINE_BINS", "HISTOGRAM_BINS", "PERCENTILES", "Summary", "block_summary", "finish", "merge"]

PERCENTILES = (0.5, 1.0, 99.0, 99.5)
HISTOGRAM_BINS = 256
FINE_BINS = 4096
_PIECE = 1 << 16


@dataclass
class Summary:
    """Mergeable statistics of one channel of some voxels."""

    count: int
    mean: float
    m2: float  # sum of squared deviations from the mean
    vmin: float
    vmax: float
    exact: npt.NDArray[np.int64] | None  # bincount over the dtype's full range (8/16-bit)
    offset: int  # value of exact[0]
    fine: list[tuple[float, float, npt.NDArray[np.int64]]]  # (lo, hi, counts) per block
    nonfinite: int = 0

    def to_arrays(self, prefix: str) -> dict[str, Any]:
        """Flatten for ``numpy.savez`` (resume markers)."""
        out: dict[str, Any] = {
            f"{prefix}scalars": np.array([self.count, self.mean, self.m2, self.vmin, self.vmax, self.offset, self.nonfinite], dtype=np.float64),
        }
        if self.exact is not None:
            out[f"{prefix}exact"] = self.exact
        for i, (lo, hi, counts) in enumerate(self.fine):
            out[f"{prefix}fine{i}"] = np.concatenate([[lo, hi], counts.astype(np.float64)])
        return out

    @classmethod
    def from_arrays(cls, data: Any, prefix: str) -> Summary:
        count, mean, m2, vmin, vmax, offset, nonfinite = data[f"{prefix}scalars"].tolist()
        exact = data[f"{prefix}exact"] if f"{prefix}exact" in data else None
        fine = []
        i = 0
        while f"{prefix}fine{i}" in data:
            arr = data[f"{prefix}fine{i}"]
            fine.append((float(arr[0]), float(arr[1]), arr[2:].astype(np.int64)))
            i += 1
        return cls(int(count), mean, m2, vmin, vmax, exact, int(offset), fine, int(nonfinite))


def _exact_range(dtype: np.dtype[Any]) -> tuple[int, int] | None:
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def block_summary(block: npt.NDArray[Any]) -> Summary:
    """Summarise one channel's voxels (any shape)."""
    flat = block.reshape(-1)
    rng = _exact_range(block.dtype)
    if rng is not None:
        lo, hi = rng
        exact = np.zeros(hi - lo + 1, dtype=np.int64)
        # bincount casts to intp: in cache-sized pieces that cast is ~10x faster than on the whole block
        for i in range(0, flat.size, _PIECE):
            piece = flat[i : i + _PIECE]
            exact += np.bincount(piece if lo == 0 else piece.astype(np.int32) - lo, minlength=hi - lo + 1)
        return _from_exact(exact, lo)
    nonfinite = 0
    if np.issubdtype(flat.dtype, np.floating):
        finite = np.isfinite(flat)
        if not finite.all():
            nonfinite = int(flat.size - finite.sum())
            flat = flat[finite]
    if flat.size == 0:
        return Summary(0, 0.0, 0.0, np.inf, -np.inf, None, 0, [], nonfinite)
    vmin, vmax = float(flat.min()), float(flat.max())
    mean = float(flat.mean(dtype=np.float64))
    m2 = float(np.square(flat - mean, dtype=np.float64).sum())
    counts, _ = np.histogram(flat, bins=FINE_BINS, range=(vmin, vmax if vmax > vmin else vmin + 1))
    return Summary(int(flat.size), mean, m2, vmin, vmax, None, 0, [(vmin, vmax, counts.astype(np.int64))], nonfinite)


def _from_exact(exact: npt.NDArray[np.int64], offset: int) -> Summary:
    nz = np.flatnonzero(exact)
    count = int(exact.sum())
    if count == 0:
        return Summary(0, 0.0, 0.0, np.inf, -np.inf, exact, offset, [])
    values = np.arange(exact.size, dtype=np.float64) + offset
    mean = float((exact * values).sum() / count)
    m2 = float((exact * np.square(values - mean)).sum())
    return Summary(count, mean, m2, float(nz[0] + offset), float(nz[-1] + offset), exact, offset, [])


def merge(a: Summary, b: Summary) -> Summary:
    """Combine two summaries (Chan et al.'s parallel mean/variance)."""
    if a.count == 0 and not a.fine and a.exact is None:
        return b
    n = a.count + b.count
    if n == 0:
        mean, m2 = 0.0, 0.0
    else:
        delta = b.mean - a.mean
        mean = a.mean + delta * b.count / n
        m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / n
    exact = None
    if a.exact is not None and b.exact is not None:
        exact = a.exact + b.exact
    return Summary(n, mean, m2, min(a.vmin, b.vmin), max(a.vmax, b.vmax), exact, a.offset, a.fine + b.fine, a.nonfinite + b.nonfinite)


def _global_hist(s: Summary, lo: float, hi: float, bins: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    if s.exact is not None:
        values = np.arange(s.exact.size, dtype=np.float64) + s.offset
        idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
        np.add.at(counts, idx, s.exact)
        return edges, counts
    for blo, bhi, fine in s.fine:
        width = (bhi - blo) / fine.size if bhi > blo else 0.0
        centers = blo + (np.arange(fine.size) + 0.5) * width
        idx = np.clip(np.searchsorted(edges, centers, side="right") - 1, 0, bins - 1)
        np.add.at(counts, idx, fine)
    return edges, counts


def _percentiles(s: Summary) -> dict[str, float]:
    out: dict[str, float] = {}
    if s.count == 0:
        return {str(p): float("nan") for p in PERCENTILES}
    if s.exact is not None:
        cdf = np.cumsum(s.exact)
        for p in PERCENTILES:
            rank = p / 100.0 * (s.count - 1)
            out[_key(p)] = float(np.searchsorted(cdf, rank, side="right") + s.offset)
        return out
    edges, counts = _global_hist(s, s.vmin, s.vmax, FINE_BINS * 4)
    cdf = np.cumsum(counts)
    for p in PERCENTILES:
        rank = p / 100.0 * (s.count - 1)
        i = int(np.searchsorted(cdf, rank, side="right"))
        out[_key(p)] = float(np.clip((edges[i] + edges[min(i + 1, edges.size - 1)]) / 2, s.vmin, s.vmax))
    return out


def _key(p: float) -> str:
    return f"{p:g}"


def finish(s: Summary) -> dict[str, Any]:
    """The catalog's ``stats`` object: min, max, mean, std, percentiles, histogram."""
    if s.count == 0:
        return {"count": 0, "min": None, "max": None, "mean": None, "std": None, "percentiles": {}, "histogram": {"edges": [], "counts": []}}
    edges, counts = _global_hist(s, s.vmin, s.vmax, HISTOGRAM_BINS)
    out: dict[str, Any] = {
        "count": s.count,
        "min": s.vmin,
        "max": s.vmax,
        "mean": s.mean,
        "std": float(np.sqrt(s.m2 / s.count)),
        "percentiles": _percentiles(s),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "exact_percentiles": s.exact is not None,
    }
    if s.nonfinite:
        out["nonfinite"] = s.nonfinite
    return out
