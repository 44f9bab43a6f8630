"""Neuroglancer viewer states for a catalogued dataset, carried whole in the URL fragment.

Two layouts, each a ``row`` of :class:`neuroglancer.LayerGroupViewer` panels
whose navigation (position, zoom, orientation) is linked, Neuroglancer's
default:

``overlay``
    raw | raw + prediction | 3-D meshes of the prediction's selected segments.
``compare``
    raw + prediction A | raw + prediction B | 3-D meshes of both.

Layer sources are ``precomputed://<base>/precomputed/<id>/<layer>``, built
only from the catalog record's own dataset id and layer names (and the live
model layers the service serves, ``live/<NAME>``), so nothing a client sends
can point the viewer elsewhere. A live layer is a prediction like any other:
a segmentation layer for a model's labels, an image layer for its scores.

A state is built from the catalog alone (``neuroglancer`` package's state
classes) and handed to Neuroglancer's browser client as ``#!{json}``
(:func:`state_url`): no process keeps it, so any worker on any host serves any
view, and the browser holds the live state.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import neuroglancer

from blockio.errors import InvalidRequest, LayerNotFound

__all__ = ["KEY_BINDINGS", "LAYOUTS", "ViewSpec", "build_state", "key_label", "layer_source", "parse_view", "state_url", "voxel_index"]

LAYOUTS = ("overlay", "compare")
IMAGE = "image"
SEGMENTATION_OPACITY = 0.5
# segments outside the selected set stay drawn in the 2-D panels (Neuroglancer draws only
# the selected ones once there are any), a little fainter than the selected ones
UNSELECTED_OPACITY = 0.35
COLOR_SEED = 1
# 2-D panels are about this many pixels wide; the first view fits the volume's width
_PANEL_PIXELS = 400
# keys that mark what is under the mouse in a prediction layer: action name -> (Neuroglancer key, verdict)
KEY_BINDINGS = {
    "blockio-correct": ("alt+keyc", "correct"),
    "blockio-false-merge": ("alt+keym", "false_merge"),
    "blockio-false-split": ("alt+keys", "false_split"),
    "blockio-missing": ("alt+keyx", "missing"),
}
_FRAGMENT_SAFE = "~@#$&()*!+=:;,.?/'"
_BASE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+/?$")


@dataclass(frozen=True)
class ViewSpec:
    """What a view shows: a dataset, a layout and its prediction layers (0, 1 or 2).

    ``images`` names the predictions that are image layers (a live model's
    scores); every other prediction is a segmentation layer.
    """

    dataset: str
    layout: str
    preds: tuple[str, ...]
    images: tuple[str, ...] = ()

    @property
    def segmentations(self) -> tuple[str, ...]:
        """The predictions that are segmentation layers (verdicts and meshes are theirs)."""
        return tuple(p for p in self.preds if p not in self.images)

    def query(self) -> dict[str, str]:
        """The query string of the stable page URL that recreates this view."""
        out = {"layout": self.layout}
        if self.preds:
            out["pred"] = ",".join(self.preds)
        return out


def parse_view(record: dict[str, Any], layout: str | None, pred: str | None, *, live: Mapping[str, str] | None = None) -> ViewSpec:
    """Validate ``?layout=`` and ``?pred=`` against the record and the live layers.

    ``pred`` names catalogued segmentation layers or live layers (``live``:
    ``{"live/<NAME>": "segmentation" | "image"}``), comma-separated for
    ``compare``; without it the first catalogued one (two for ``compare``) is taken.

    Raises
    ------
    InvalidRequest
        An unknown layout or the wrong number of layers (400).
    LayerNotFound
        A name that is not a segmentation layer of this dataset (404).
    """
    layout = layout or "overlay"
    if layout not in LAYOUTS:
        raise InvalidRequest(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    segs = sorted(name for name, meta in record["layers"].items() if meta.get("type") == "segmentation")
    live = dict(live or {})
    names = tuple(p for p in (pred or "").split(",") if p) if pred else ()
    for name in names:
        if name not in segs and name not in live:
            known = ", ".join([*segs, *sorted(live)]) or "none"
            raise LayerNotFound(f"dataset {record['id']!r} has no segmentation layer {name!r} (prediction layers: {known})")
    want = 1 if layout == "overlay" else 2
    if not names:
        names = tuple(segs[:want])
        if layout == "compare" and len(names) < 2:
            raise InvalidRequest(f"compare needs two segmentation layers; dataset {record['id']!r} has {len(segs)}")
        if not names:  # no prediction yet: the raw image alone
            return ViewSpec(record["id"], layout, ())
    if len(names) != want or len(set(names)) != len(names):
        raise InvalidRequest(f"layout {layout!r} takes {want} distinct prediction layer(s), got {list(names)}")
    return ViewSpec(record["id"], layout, names, tuple(n for n in names if n not in segs and live.get(n) == "image"))


def layer_source(base_url: str, dataset: str, layer: str) -> str:
    """``precomputed://<base>/precomputed/<dataset>/<layer>`` for our own file server."""
    if not _BASE.match(base_url):
        raise InvalidRequest(f"not a server base URL: {base_url!r}")
    return f"precomputed://{base_url.rstrip('/')}/precomputed/{dataset}/{layer}"


def key_label(key: str) -> str:
    """A Neuroglancer key identifier as a keyboard shows it: ``alt+keyc`` -> ``Alt+C``."""
    parts = key.split("+")
    *mods, last = parts
    name = last[3:].upper() if last.startswith("key") and len(last) == 4 else last[5:] if last.startswith("digit") else last.capitalize()
    return "+".join([m.capitalize() for m in mods] + [name])


def voxel_index(position: Sequence[float]) -> list[int]:
    """The voxel a Neuroglancer position falls in, as its status bar shows it: voxel i spans [i, i + 1)."""
    return [math.floor(float(v)) for v in position]


def state_url(state: neuroglancer.ViewerState | Mapping[str, Any], prefix: str) -> str:
    """``prefix#!{json}``: the whole state in the fragment, which Neuroglancer's client reads on load."""
    data = state.to_json() if isinstance(state, neuroglancer.ViewerState) else state
    # the characters Neuroglancer's own Python package leaves unquoted in its URLs
    return f"{prefix}#!{urllib.parse.quote(json.dumps(data, separators=(',', ':')), safe=_FRAGMENT_SAFE)}"


def _image_layer(source: str, record: dict[str, Any]) -> neuroglancer.ImageLayer:
    percentiles = record["stats"].get("percentiles", {})
    lo = float(percentiles.get("1", record["stats"].get("min") or 0))
    hi = float(percentiles.get("99", record["stats"].get("max") or 1))
    if not hi > lo:
        hi = lo + 1
    shader = f"#uicontrol invlerp normalized(range=[{lo:g}, {hi:g}])\nvoid main() {{\n  emitGrayscale(normalized());\n}}\n"
    return neuroglancer.ImageLayer(source=source, shader=shader, shader_controls={"normalized": {"range": [lo, hi]}})


def _score_layer(source: str) -> neuroglancer.ImageLayer:
    """A model's scores (float32, first channel) over the image: magenta, as opaque as the score is high."""
    shader = "#uicontrol invlerp normalized(range=[0, 1])\nvoid main() {\n  float v = normalized();\n  emitRGBA(vec4(1.0, 0.0, 1.0, v));\n}\n"
    return neuroglancer.ImageLayer(source=source, shader=shader, shader_controls={"normalized": {"range": [0, 1]}}, opacity=SEGMENTATION_OPACITY)


def build_state(
    record: dict[str, Any],
    spec: ViewSpec,
    base_url: str,
    *,
    segments: Mapping[str, Sequence[int]] | None = None,
    position: Sequence[int] | None = None,
) -> neuroglancer.ViewerState:
    """The viewer state of ``spec``: layers, linked panels, contrast, centre, zoom and the segments shown.

    Position is the centre of voxel ``position`` (x, y, z; default the
    volume's centre voxel); dimensions are x, y, z with the catalog's voxel
    size in nm; contrast is the 1st-99th percentile window; segmentations are
    drawn at 50 % opacity with a fixed colour seed. ``segments`` (layer ->
    ids) are selected, so the 3-D panel shows their meshes from the start.
    """
    state = neuroglancer.ViewerState()
    state.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[float(v) for v in record["voxel_size"]])
    # the voxel's centre: Neuroglancer puts voxel i at [i, i + 1) and shows floor(position)
    centre = position if position is not None else [s // 2 for s in record["shape"]]
    state.position = [int(v) + 0.5 for v in centre]
    state.cross_section_scale = max(record["shape"][0], record["shape"][1]) / _PANEL_PIXELS
    state.layers[IMAGE] = _image_layer(layer_source(base_url, spec.dataset, IMAGE), record)
    for name in spec.preds:
        if name in spec.images:
            state.layers[name] = _score_layer(layer_source(base_url, spec.dataset, name))
            continue
        state.layers[name] = neuroglancer.SegmentationLayer(
            source=layer_source(base_url, spec.dataset, name),
            selected_alpha=SEGMENTATION_OPACITY,
            not_selected_alpha=UNSELECTED_OPACITY,
            color_seed=COLOR_SEED,
            segments=sorted({int(s) for s in (segments or {}).get(name, ()) if int(s) > 0}),
        )
    if not spec.preds:
        panels = [neuroglancer.LayerGroupViewer(layers=[IMAGE], layout="xy")]
    elif spec.layout == "overlay":
        panels = [
            neuroglancer.LayerGroupViewer(layers=[IMAGE], layout="xy"),
            neuroglancer.LayerGroupViewer(layers=[IMAGE, spec.preds[0]], layout="xy"),
            neuroglancer.LayerGroupViewer(layers=[spec.preds[0]], layout="3d"),
        ]
    else:
        a, b = spec.preds
        panels = [
            neuroglancer.LayerGroupViewer(layers=[IMAGE, a], layout="xy"),
            neuroglancer.LayerGroupViewer(layers=[IMAGE, b], layout="xy"),
            neuroglancer.LayerGroupViewer(layers=[a, b], layout="3d"),
        ]
    state.layout = neuroglancer.row_layout(panels)
    state.selected_layer.layer = spec.preds[0] if spec.preds else IMAGE
    state.selected_layer.visible = False
    return state
