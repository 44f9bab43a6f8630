// The review page's side of a stateless view. The server renders the opening state
// (#view-config) and points the frame at Neuroglancer's client (same origin, /neuroglancer/)
// with it in the URL fragment; this script moves the frame to the navigation of the page's
// own fragment when there is one, reads the selection and position from the viewer the
// client exposes (window.viewer), keeps the page's own fragment in step so that a
// copied link reopens where the reviewer was, and posts verdicts as JSON. On a review
// queue item (config.queue) a verdict closes the item and the next item opens in the
// same viewer, without reloading the page.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("view-config").textContent);
  const frame = document.getElementById("neuroglancer");
  const form = document.getElementById("review");
  const statusLine = document.getElementById("review-status");
  // what a page fragment may change: navigation and the selected segments; layers,
  // sources and the layout always come from the server (the catalog)
  const NAV_NUMBERS = {position: 3, crossSectionOrientation: 4, projectionOrientation: 4};
  const NAV_SCALES = ["crossSectionScale", "projectionScale"];
  const SEGMENT = /^!?[0-9]{1,20}$/;

  function parseFragment(hash) {
    if (!hash || !hash.startsWith("#!")) return null;
    try { return JSON.parse(decodeURIComponent(hash.slice(2))); } catch (e) { return null; }
  }

  function isNumbers(value, length) {
    return Array.isArray(value) && value.length === length && value.every(v => typeof v === "number" && Number.isFinite(v));
  }

  function merged(state, nav) {
    const out = JSON.parse(JSON.stringify(state));
    if (!nav || typeof nav !== "object") return out;
    for (const [key, length] of Object.entries(NAV_NUMBERS)) if (isNumbers(nav[key], length)) out[key] = nav[key];
    for (const key of NAV_SCALES) if (typeof nav[key] === "number" && nav[key] > 0 && Number.isFinite(nav[key])) out[key] = nav[key];
    const segments = nav.segments && typeof nav.segments === "object" ? nav.segments : {};
    for (const layer of out.layers) {
      const ids = segments[layer.name];
      if (config.preds.includes(layer.name) && Array.isArray(ids) && ids.length <= 1000) layer.segments = ids.map(String).filter(s => SEGMENT.test(s));
    }
    return out;
  }

  function navigation(state) {
    const nav = {};
    for (const key of [...Object.keys(NAV_NUMBERS), ...NAV_SCALES]) if (key in state) nav[key] = state[key];
    nav.segments = {};
    for (const layer of state.layers || []) if (config.preds.includes(layer.name)) nav.segments[layer.name] = layer.segments || [];
    return nav;
  }

  function viewerUrl(state) { return config.viewerPrefix + "#!" + encodeURIComponent(JSON.stringify(state)); }

  const pageNav = parseFragment(location.hash);
  if (pageNav) frame.src = viewerUrl(merged(config.state, pageNav));  // else the server's src is already loading

  let viewer = null;
  const ready = new Promise(resolve => {
    const timer = setInterval(() => {
      let v = null;
      try { v = frame.contentWindow && frame.contentWindow.viewer; } catch (e) { v = null; }
      if (v && v.state && v.layerManager) { clearInterval(timer); viewer = v; resolve(v); }
    }, 50);
  });

  // the voxel a position falls in, as Neuroglancer's own position widget shows it
  function voxel(position) { return Array.from(position, v => Math.floor(v)); }

  function selection() {
    const state = viewer.state.toJSON();
    const segments = {};
    for (const layer of state.layers || []) {
      if (config.preds.includes(layer.name)) segments[layer.name] = (layer.segments || []).map(String).filter(s => /^[0-9]+$/.test(s) && s !== "0");
    }
    return {position: voxel(state.position || viewer.navigationState.position.value), segments: segments, state: state};
  }

  function underMouse(layerName) {
    const position = viewer.mouseState.active ? viewer.mouseState.position : viewer.navigationState.position.value;
    const managed = viewer.layerManager.getLayerByName(layerName);
    const chosen = managed && managed.layer && managed.layer.displayState ? managed.layer.displayState.segmentSelectionState.value : undefined;
    const id = chosen === undefined || chosen === null ? "" : String(chosen);
    return {position: voxel(position), segments: /^[0-9]+$/.test(id) && id !== "0" ? [id] : []};
  }

  // POST a verdict as JSON, with the page's CSRF token when it has one; segment ids stay
  // decimal text in the body, so 64-bit ids are not rounded through JavaScript numbers
  async function postVerdict(url, fields, segments) {
    const ids = (segments || []).filter(s => /^[0-9]{1,20}$/.test(String(s)));
    let body = JSON.stringify(fields);
    if (ids.length) body = body.slice(0, -1) + (body.length > 2 ? "," : "") + '"segments":[' + ids.join(",") + "]}";
    return postJson(url, body);
  }

  async function postJson(url, body) {
    const headers = {"Content-Type": "application/json", "Accept": "application/json"};
    const token = document.querySelector('meta[name="csrf-token"]');
    if (token && token.content) {
      const header = document.querySelector('meta[name="csrf-header"]');
      headers[header && header.content ? header.content : "X-CSRF-Token"] = token.content;
    }
    const resp = await fetch(url, {method: "POST", body: body, headers: headers, credentials: "same-origin"});
    let answer = null;
    try { answer = await resp.json(); } catch (e) { answer = null; }
    return {ok: resp.ok, status: resp.status, body: answer};
  }

  function show(stored) {
    const list = document.getElementById("review-list");
    const none = document.getElementById("no-reviews");
    if (none) none.remove();
    for (const r of stored) {
      const li = document.createElement("li");
      li.className = "review";
      li.textContent = r.verdict.replace("_", " ") + " " + r.layer + " " + (r.segment ? "segment " + r.segment : "at " + r.position.join(", ")) + (r.note ? " — " + r.note : "");
      list.prepend(li);
    }
  }

  function failure(answer) {
    return "not stored: " + (answer.body && answer.body.error ? answer.body.error.message : "HTTP " + answer.status);
  }

  // -- the review queue: the item on the page, its verdict, the next item -------------------
  const queue = config.queue;
  const queueLine = document.getElementById("queue-item");
  let item = queue && queue.item ? {id: queue.item} : null;
  let moving = null;  // the next item's load in progress (one at a time)

  function showProgress(progress) {
    const line = document.getElementById("queue-progress");
    if (line && progress) line.textContent = progress.done + " of " + progress.total + " done, " + progress.open + " open";
  }

  // centre the viewer on a state's navigation and selection, in the same viewer: each part of
  // the state is set on its own, so the layers stay and keep the chunks and meshes they have
  // (restoring the whole state makes new layers that load everything again)
  function navigate(v, state) {
    const nav = navigation(state);
    try { if (navigateParts(v, nav)) return; } catch (e) { /* a client without these parts: the whole state */ }
    v.state.restoreState(merged(v.state.toJSON(), nav));
  }

  function navigateParts(v, nav) {
    let whole = false;
    for (const key of [...Object.keys(NAV_NUMBERS), ...NAV_SCALES]) {
      if (!(key in nav)) continue;
      const part = v.state.children && v.state.children.get(key);
      if (part && part.restoreState) part.restoreState(nav[key]); else whole = true;
    }
    for (const [name, ids] of Object.entries(nav.segments)) {
      const managed = v.layerManager.getLayerByName(name);
      const group = managed && managed.layer && managed.layer.displayState && managed.layer.displayState.segmentationGroupState;
      const shown = group && group.value && group.value.visibleSegments;
      if (!shown) { whole = true; continue; }
      shown.clear();
      for (const id of ids) shown.add(BigInt(id));
    }
    return !whole;
  }

  async function nextItem() {
    if (moving) return moving;
    moving = (async () => {
      const answer = await postJson(queue.nextUrl, "{}");
      if (!answer.ok) { queueLine.textContent = "no item: " + failure(answer).slice(12); return answer; }
      showProgress(answer.body.progress);
      if (!answer.body.item) { item = null; queueLine.textContent = "nothing left to review in this queue"; return answer; }
      const resp = await fetch(answer.body.state_url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (!resp.ok) { queueLine.textContent = "the next item's view did not load: HTTP " + resp.status; return answer; }
      const state = await resp.json();
      navigate(await ready, state);
      item = answer.body.item;
      queueLine.textContent = "item " + item.id + " (" + item.kind + "): " + item.reason;
      history.replaceState(null, "", answer.body.view_url);
      config.stableUrl = answer.body.view_url;
      onChange();
      return answer;
    })();
    try { return await moving; } finally { moving = null; }
  }

  async function closeItem(verdict) {
    const fields = {verdict: verdict, note: form.elements.note.value};
    const answer = await postJson(queue.itemsUrl + item.id + "/verdict", JSON.stringify(fields));
    if (!answer.ok) { statusLine.textContent = failure(answer); return answer; }
    statusLine.textContent = "stored 1 verdict(s) on item " + item.id;
    show([answer.body.review]);
    showProgress(answer.body.progress);
    form.elements.note.value = "";
    await nextItem();
    return answer;
  }

  async function record(verdict, picked) {
    if (item) return closeItem(verdict);  // on a queue item the verdict is the item's
    const layer = form.elements.layer.value;
    const fields = {layer: layer, verdict: verdict, note: form.elements.note.value};
    if (!picked.segments.length) fields.position = picked.position;
    const answer = await postVerdict(config.reviewUrl, fields, picked.segments);
    if (!answer.ok) {
      statusLine.textContent = failure(answer);
      return answer;
    }
    statusLine.textContent = "stored " + answer.body.stored.length + " verdict(s)";
    show(answer.body.stored);
    return answer;
  }

  function describe(sel) {
    if (!form) return;
    const segs = sel.segments[form.elements.layer.value] || [];
    document.getElementById("selection").textContent = segs.length ? "selected: " + segs.join(", ") : "no segment selected: marks position " + sel.position.join(", ");
  }

  let pending = null;
  function onChange() {
    if (pending !== null) return;
    pending = setTimeout(() => {
      pending = null;
      const sel = selection();
      describe(sel);
      const hash = "#!" + encodeURIComponent(JSON.stringify(navigation(sel.state)));
      history.replaceState(null, "", hash);
      document.getElementById("stable-url").href = config.stableUrl + hash;
      document.getElementById("viewer-alone").href = viewerUrl(sel.state);
    }, 150);
  }

  ready.then(v => {
    v.state.changed.add(onChange);
    onChange();
    if (!form) return;
    for (const [action, key, verdict] of config.keyBindings) {
      v.inputEventBindings.global.set(key, action);
      v.bindAction(action, () => { record(verdict, underMouse(form.elements.layer.value)); });
    }
    form.elements.layer.addEventListener("change", () => describe(selection()));
  });

  if (form) {
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const verdict = event.submitter && event.submitter.value;
      if (!viewer) { statusLine.textContent = "not stored: the viewer is still loading"; return; }
      const sel = selection();
      await record(verdict || "", {position: sel.position, segments: sel.segments[form.elements.layer.value] || []});
    });
  }

  if (queue) {
    document.getElementById("next-item").addEventListener("click", () => { nextItem(); });
    if (item) {
      fetch(queue.itemsUrl.slice(0, -"/items/".length), {credentials: "same-origin"}).then(r => r.ok ? r.json() : null).then(q => q && showProgress(q.progress));
    } else {
      ready.then(() => nextItem());  // opened on the queue itself: take the reviewer's item
    }
  }

  document.getElementById("copy-state").addEventListener("click", async function () {
    const v = await ready;
    const text = JSON.stringify(v.state.toJSON(), null, 1);
    const area = document.getElementById("state-json");
    area.value = text; area.hidden = false; area.select();
    try { await navigator.clipboard.writeText(text); this.textContent = "copied"; } catch (e) { this.textContent = "state below"; }
  });

  window.blockioReview = {
    ready: ready, selection: () => selection(), underMouse: underMouse, postVerdict: postVerdict, record: record,
    nextItem: nextItem, item: () => item, moving: () => moving !== null,
  };
})();
