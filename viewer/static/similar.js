// "Find similar" on the review page (viewer/similar.py): asks /view/<id>/similar.json for the k nearest
// cells or segments at the position the viewer shows, or of the selected segment, and adds its layers to
// the viewer the frame's client exposes (window.viewer, same origin): the "similar" annotation layer (a point
// per neighbour, with rank and distance) and the "similar segments" layer, to the panels that show the
// prediction. The dataset's PCA overview layers are added once, hidden, to the panels that show the image
// with the prediction. Nothing is kept on the server.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("similar-config").textContent);
  const frame = document.getElementById("neuroglancer");
  const status = document.getElementById("similar-status");
  const choice = document.getElementById("similar-set");
  const kInput = document.getElementById("similar-k");
  const sets = Object.fromEntries(config.sets.map(s => [s.name, s]));
  const OURS = [config.annotationLayer, config.segmentLayer];
  let last = null;

  // the review page's script (it runs after this one) finds the viewer once the frame has its final
  // document; without it, poll the frame
  const ready = new Promise(resolve => {
    function poll() {
      const timer = setInterval(() => {
        let v = null;
        try { v = frame.contentWindow && frame.contentWindow.viewer; } catch (e) { v = null; }
        if (v && v.state && v.layerManager) { clearInterval(timer); resolve(v); }
      }, 50);
    }
    const start = () => { if (window.blockioReview) window.blockioReview.ready.then(resolve); else poll(); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
  });

  // every panel (a layer group viewer of the layout) whose layers pass `wanted`
  function panels(layout, out) {
    if (!layout || typeof layout !== "object") return out;
    if (Array.isArray(layout.layers)) out.push(layout);
    for (const child of layout.children || []) panels(child, out);
    return out;
  }

  function addToPanels(state, name, wanted) {
    let found = panels(state.layout, []).filter(p => wanted(p.layers));
    if (!found.length) found = panels(state.layout, []);
    for (const panel of found) if (!panel.layers.includes(name)) panel.layers.push(name);
  }

  function showsPrediction(layers) {
    return config.colourLayer ? layers.includes(config.colourLayer) : true;
  }

  function withLayers(state, layers, wanted) {
    const names = layers.map(l => l.name);
    state.layers = (state.layers || []).filter(l => !names.includes(l.name)).concat(layers);
    for (const name of names) addToPanels(state, name, wanted);
    return state;
  }

  function selectedSegment(v, layerName) {
    const layer = (v.state.toJSON().layers || []).find(l => l.name === layerName);
    const ids = ((layer && layer.segments) || []).map(String).filter(s => /^[0-9]{1,20}$/.test(s) && s !== "0");
    return ids.length ? ids[0] : null;
  }

  function describe(answer) {
    const n = answer.results.length;
    if (!n) return "no neighbours";
    const what = answer.granularity === "segment" ? "segment" : "cell";
    const coloured = answer.segments ? ", " + answer.segments.ids.length + " segment(s) coloured" : "";
    return n + " similar " + what + (n > 1 ? "s" : "") + " (nearest at distance " + answer.results[0].distance.toPrecision(3) + ")" + coloured + (answer.stale.length ? "; stale: " + answer.stale.join("; ") : "");
  }

  async function find(mode) {
    const v = await ready;
    const set = sets[choice.value];
    const params = new URLSearchParams({name: set.name, k: String(kInput.value || 10)});
    if (mode === "segment") {
      const layerName = set.granularity === "segment" ? set.segments : config.colourLayer;
      const id = layerName ? selectedSegment(v, layerName) : null;
      if (!id) { status.textContent = "select a segment of " + (layerName || "a segmentation layer") + " first"; return null; }
      params.set("segment", id);
    } else {
      params.set("position", Array.from(v.navigationState.position.value, x => Math.floor(x)).join(","));
      if (config.colourLayer) params.set("layer", config.colourLayer);
    }
    status.textContent = "searching…";
    const resp = await fetch(config.url + "?" + params, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    let answer = null;
    try { answer = await resp.json(); } catch (e) { answer = null; }
    if (!resp.ok) {
      status.textContent = "not found: " + (answer && answer.error ? answer.error.message : "HTTP " + resp.status);
      return answer;
    }
    const state = v.state.toJSON();
    state.layers = (state.layers || []).filter(l => !OURS.includes(l.name));
    const added = [answer.annotations].concat(answer.segments ? [answer.segments.state] : []);
    v.state.restoreState(withLayers(state, added, showsPrediction));
    last = answer;
    status.textContent = describe(answer);
    return answer;
  }

  function updateButtons() {
    const set = sets[choice.value];
    document.getElementById("similar-to-segment").disabled = !set || set.granularity !== "segment";
  }

  ready.then(v => {
    if (!config.overviews.length) return;
    const state = v.state.toJSON();
    const missing = config.overviews.filter(o => !(state.layers || []).some(l => l.name === o.name));
    if (!missing.length) return;
    const withImage = layers => layers.includes("image") && showsPrediction(layers);
    v.state.restoreState(withLayers(state, missing.map(o => JSON.parse(JSON.stringify(o))), withImage));
  });

  choice.addEventListener("change", updateButtons);
  updateButtons();
  document.getElementById("similar-at-cursor").addEventListener("click", () => { find("position"); });
  document.getElementById("similar-to-segment").addEventListener("click", () => { find("segment"); });

  window.blockioSimilar = {ready: ready, find: find, last: () => last};
})();
