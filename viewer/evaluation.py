"""The metrics ``blockio evaluate`` stored for a layer, as the index page shows them.

``blockio evaluate --pred P --truth T`` stores its result in the catalog
under ``layers[P]["evaluation"][T]`` (:func:`blockio.inference.evaluate.evaluate`):
one object per truth layer, each with the adapted Rand error, its precision
and recall, VI split and merge (bits), the voxels and segment counts, and
when it was evaluated. Anything else found there (a flat number from an
older writer, a value of another type) is left out, never shown wrong.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SHOWN", "evaluation_lines"]

SHOWN = (
    ("adapted_rand_error", "adapted Rand error"),
    ("rand_precision", "precision"),
    ("rand_recall", "recall"),
    ("vi_split", "VI split"),
    ("vi_merge", "VI merge"),
    ("vi", "VI"),
    ("voxels", "voxels"),
    ("truth_segments", "true segments"),
    ("pred_segments", "predicted segments"),
)
"""The metrics shown, in order: (stored key, label)."""


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def evaluation_lines(layer: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per truth layer a layer was evaluated against: ``{"truth", "metrics": [(label, text)], "evaluated"}``."""
    evaluation = layer.get("evaluation")
    if not isinstance(evaluation, dict):
        return []
    lines = []
    for truth, result in sorted(evaluation.items()):
        if not isinstance(result, dict):
            continue
        metrics = [(label, text) for key, label in SHOWN if (text := _number(result.get(key))) is not None]
        if metrics:
            lines.append({"truth": str(truth), "metrics": metrics, "evaluated": str(result.get("evaluated", ""))})
    return lines
