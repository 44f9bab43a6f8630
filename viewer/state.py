"""Neuroglancer viewer states for a catalogued dataset, and the viewers that serve them.

Two layouts, each a ``row`` of :class:`neuroglancer.LayerGroupViewer` panels
whose navigation (position, zoom, orientation) is linked, Neuroglancer's
default:

``overlay``
    raw | raw + prediction | 3-D meshes of the prediction's selected segments.
``compare``
    raw + prediction A | raw + prediction B | 3-D meshes of both.

Layer sources are ``precomputed://<base>/precomputed/<id>/<layer>``, built
only from the catalog record's own dataset id and layer names, so nothing a
client sends can point the viewer elsewhere.

The states are served by the ``neuroglancer`` package's own server, started
in-process once (:class:`ViewerPool`); the bundled client needs it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import neuroglancer

from blockio.errors import InvalidRequest, LayerNotFound

__all__ = ["KEY_BINDINGS", "LAYOUTS", "ViewSpec", "ViewerPool", "build_state", "layer_source", "parse_view"]

log = logging.getLogger(__name__)

LAYOUTS = ("overlay", "compare")
IMAGE = "image"
SEGMENTATION_OPACITY = 0.5
COLOR_SEED = 1
# 2-D panels are about this many pixels wide; the first view fits the volume's width
_PANEL_PIXELS = 400
# keys that mark what is under the mouse in a prediction layer: action name -> (key, verdict)
KEY_BINDINGS = {
    "blockio-correct": ("alt+keyc", "correct"),
    "blockio-false-merge": ("alt+keym", "false_merge"),
    "blockio-false-split": ("alt+keys", "false_split"),
    "blockio-missing": ("alt+keyx", "missing"),
}
_BASE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+/?$")


@dataclass(frozen=True)
class ViewSpec:
    """What a view shows: a dataset, a layout and its prediction layers (0, 1 or 2)."""

    dataset: str
    layout: str
    preds: tuple[str, ...]

    def query(self) -> dict[str, str]:
        """The query string of the stable page URL that recreates this view."""
        out = {"layout": self.layout}
        if self.preds:
            out["pred"] = ",".join(self.preds)
        return out


def parse_view(record: dict[str, Any], layout: str | None, pred: str | None) -> ViewSpec:
    """Validate ``?layout=`` and ``?pred=`` against the record.

    ``pred`` names catalogued segmentation layers (comma-separated for
    ``compare``); without it the first one (two for ``compare``) is taken.

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
    names = tuple(p for p in (pred or "").split(",") if p) if pred else ()
    for name in names:
        if name not in segs:
            raise LayerNotFound(f"dataset {record['id']!r} has no segmentation layer {name!r} (segmentation layers: {', '.join(segs) or 'none'})")
    want = 1 if layout == "overlay" else 2
    if not names:
        names = tuple(segs[:want])
        if layout == "compare" and len(names) < 2:
            raise InvalidRequest(f"compare needs two segmentation layers; dataset {record['id']!r} has {len(segs)}")
        if not names:  # no prediction yet: the raw image alone
            return ViewSpec(record["id"], layout, ())
    if len(names) != want or len(set(names)) != len(names):
        raise InvalidRequest(f"layout {layout!r} takes {want} distinct prediction layer(s), got {list(names)}")
    return ViewSpec(record["id"], layout, names)


def layer_source(base_url: str, dataset: str, layer: str) -> str:
    """``precomputed://<base>/precomputed/<dataset>/<layer>`` for our own file server."""
    if not _BASE.match(base_url):
        raise InvalidRequest(f"not a server base URL: {base_url!r}")
    return f"precomputed://{base_url.rstrip('/')}/precomputed/{dataset}/{layer}"


def _image_layer(source: str, record: dict[str, Any]) -> neuroglancer.ImageLayer:
    percentiles = record["stats"].get("percentiles", {})
    lo = float(percentiles.get("1", record["stats"].get("min") or 0))
    hi = float(percentiles.get("99", record["stats"].get("max") or 1))
    if not hi > lo:
        hi = lo + 1
    shader = f"#uicontrol invlerp normalized(range=[{lo:g}, {hi:g}])\nvoid main() {{\n  emitGrayscale(normalized());\n}}\n"
    return neuroglancer.ImageLayer(source=source, shader=shader, shader_controls={"normalized": {"range": [lo, hi]}})


def build_state(record: dict[str, Any], spec: ViewSpec, base_url: str) -> neuroglancer.ViewerState:
    """The viewer state of ``spec``: layers, linked panels, contrast, centre and zoom.

    Position is the volume's centre in voxels; dimensions are x, y, z with the
    catalog's voxel size in nm; contrast is the 1st-99th percentile window;
    segmentations are drawn at 50 % opacity with a fixed colour seed.
    """
    state = neuroglancer.ViewerState()
    state.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[float(v) for v in record["voxel_size"]])
    # the centre voxel's centre: Neuroglancer puts voxel i at [i, i + 1)
    state.position = [s // 2 + 0.5 for s in record["shape"]]
    state.cross_section_scale = max(record["shape"][0], record["shape"][1]) / _PANEL_PIXELS
    state.layers[IMAGE] = _image_layer(layer_source(base_url, spec.dataset, IMAGE), record)
    for name in spec.preds:
        state.layers[name] = neuroglancer.SegmentationLayer(
            source=layer_source(base_url, spec.dataset, name), selected_alpha=SEGMENTATION_OPACITY, color_seed=COLOR_SEED
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


def selected_segments(viewer: neuroglancer.Viewer, layer: str) -> list[int]:
    """Segment ids selected (visible set) in ``layer`` of the live viewer."""
    layer_state = viewer.state.layers[layer]
    return sorted(int(s) for s in layer_state.segments)


def current_position(viewer: neuroglancer.Viewer) -> list[float]:
    """The live viewer's position, (x, y, z) voxels."""
    return [float(v) for v in viewer.state.position]


VerdictCallback = Callable[[ViewSpec, str, str, "int | None", "Sequence[float] | None"], None]


class ViewerPool:
    """Neuroglancer viewers served by the package's in-process server, one per page load.

    The server binds ``bind_address:port`` (0: a free port) when the first
    viewer is made. The newest ``capacity`` viewers are kept; the server
    forgets a viewer once nothing refers to it.
    """

    def __init__(self, *, bind_address: str = "127.0.0.1", port: int = 0, capacity: int = 64) -> None:
        self.bind_address = bind_address
        self.port = int(port)
        self.capacity = capacity
        self._viewers: OrderedDict[str, tuple[ViewSpec, neuroglancer.Viewer]] = OrderedDict()
        self._lock = threading.Lock()

    def _start(self) -> None:
        if not neuroglancer.server.is_server_running():
            neuroglancer.set_server_bind_address(self.bind_address, bind_port=self.port)
            neuroglancer.server.start()

    def create(self, spec: ViewSpec, state: neuroglancer.ViewerState, on_verdict: VerdictCallback | None = None) -> tuple[str, neuroglancer.Viewer]:
        """A new viewer showing ``state``; returns its token and the viewer."""
        with self._lock:
            self._start()
            viewer = neuroglancer.Viewer()
            viewer.set_state(state)
            if on_verdict is not None and spec.preds:
                _bind_review_keys(viewer, spec, on_verdict)
            self._viewers[viewer.token] = (spec, viewer)
            while len(self._viewers) > self.capacity:
                self._viewers.popitem(last=False)
        return viewer.token, viewer

    def get(self, token: str) -> tuple[ViewSpec, neuroglancer.Viewer] | None:
        """The spec and viewer of a token this pool made, or None."""
        with self._lock:
            return self._viewers.get(token)


def _bind_review_keys(viewer: neuroglancer.Viewer, spec: ViewSpec, on_verdict: VerdictCallback) -> None:
    def handler(verdict: str) -> Callable[[Any], None]:
        def act(action_state: Any) -> None:
            selected = viewer.state.selected_layer.layer
            layer = selected if selected in spec.preds else spec.preds[0]
            segment = None
            value = action_state.selected_values.get(layer) if action_state.selected_values else None
            if value is not None and value.value is not None:
                raw = value.value
                raw = getattr(raw, "value", None) or getattr(raw, "key", raw)
                segment = int(raw) or None
            position = action_state.mouse_voxel_coordinates
            pos = [float(v) for v in position] if position is not None else current_position(viewer)
            try:
                on_verdict(spec, layer, verdict, segment, None if segment else pos)
                message = f"marked {verdict.replace('_', ' ')}: {layer} " + (f"segment {segment}" if segment else f"position {[round(v) for v in pos]}")
            except Exception as exc:  # shown to the reviewer in the viewer, and logged
                log.exception("storing a verdict failed")
                message = f"verdict not stored: {exc}"
            with viewer.config_state.txn() as cs:
                cs.status_messages["blockio"] = message

        return act

    for action, (_key, verdict) in KEY_BINDINGS.items():
        viewer.actions.add(action, handler(verdict))
    with viewer.config_state.txn() as cs:
        for action, (key, _verdict) in KEY_BINDINGS.items():
            cs.input_event_bindings.viewer[key] = action
