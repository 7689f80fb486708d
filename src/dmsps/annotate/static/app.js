// dmsps annotate: the page. Plain JavaScript on a canvas, no library, no build step.
//
// The server sends 2D slices (the image as float32, maps as uint8) and the case's whole
// scribble volume (uint8, compressed on the wire); scribbles are edited here in that
// volume, so every plane shows the same strokes, and a save sends the changed voxels.
"use strict";

(() => {
  const TOKEN = document.querySelector('meta[name="dmsps-token"]').content;
  const PLANES = ["axial", "coronal", "sagittal"];
  const $ = (id) => document.getElementById(id);

  const S = {
    info: null,
    cases: [],
    caseName: null,
    c: null, // the open case: name, shape (Z, Y, X), spacing (mm), windows, status, has_label
    scribble: null, // Uint8Array (Z * Y * X)
    version: null, // the scribble file's version stamp when loaded or last saved
    changes: new Map(), // flat voxel index -> value, changed since the last save
    undo: [],
    redo: [],
    value: 1,
    eraser: false,
    brush: 3,
    channel: 0,
    windows: [],
    layers: {
      label: { on: false, opacity: 0.35, title: "Reference label", key: "L" },
      prediction: { on: false, opacity: 0.45, title: "Prediction", key: "P" },
      uncertainty: { on: false, opacity: 0.75, title: "Uncertainty", key: "U" },
      scribble: { on: true, opacity: 0.9, title: "Scribbles", key: "H" },
    },
    layout: "single",
    plane: "axial",
    cursor: [0, 0, 0],
    views: [],
    active: null,
    suggestions: [],
    saving: null,
    lastSave: null,
    modelVersion: 0,
    colours: [],
    ready: false,
    opening: false,
    space: false,
  };

  // --- talking to the server ----------------------------------------------------------
  async function api(path, options = {}) {
    const headers = Object.assign({ "X-Dmsps-Token": TOKEN }, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).error || message;
      } catch (e) {
        /* not JSON */
      }
      throw new Error(message);
    }
    return response;
  }
  const getJSON = async (path) => (await api(path)).json();
  const postJSON = async (path, body) =>
    (
      await api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      })
    ).json();

  function say(text, kind = "") {
    const el = $("message");
    el.textContent = text;
    el.title = text;
    el.className = kind;
  }

  // --- slices ---------------------------------------------------------------------------
  const sliceCache = new Map();
  const SLICE_CACHE_MAX = 300;

  function fetchSlice(layer, plane, index) {
    const channel = layer === "image" ? S.channel : 0;
    const model = layer === "prediction" || layer === "uncertainty" ? S.modelVersion : 0;
    const key = [S.caseName, layer, plane, index, channel, model].join("|");
    let promise = sliceCache.get(key);
    if (promise) {
      sliceCache.delete(key);
      sliceCache.set(key, promise);
      return promise;
    }
    const query = new URLSearchParams({ case: S.caseName, layer, plane, index, channel });
    promise = api("/api/slice?" + query).then(async (r) => {
      const [rows, cols] = r.headers.get("X-Shape").split(",").map(Number);
      const buffer = await r.arrayBuffer();
      const data = r.headers.get("X-Dtype") === "float32" ? new Float32Array(buffer) : new Uint8Array(buffer);
      return { rows, cols, data };
    });
    promise.catch(() => sliceCache.delete(key));
    sliceCache.set(key, promise);
    while (sliceCache.size > SLICE_CACHE_MAX) sliceCache.delete(sliceCache.keys().next().value);
    return promise;
  }

  // Plane geometry: rows and columns of a slice, their spacing (mm), and the slice count.
  // Side planes show the slice axis upwards (flip).
  function planeDims(plane) {
    const [Z, Y, X] = S.c.shape;
    const [sz, sy, sx] = S.c.spacing;
    if (plane === "axial") return { rows: Y, cols: X, depth: Z, rs: sy, cs: sx, flip: false };
    if (plane === "coronal") return { rows: Z, cols: X, depth: Y, rs: sz, cs: sx, flip: true };
    return { rows: Z, cols: Y, depth: X, rs: sz, cs: sy, flip: true };
  }

  function flatIndex(plane, index, row, col) {
    const [, Y, X] = S.c.shape;
    if (plane === "axial") return (index * Y + row) * X + col;
    if (plane === "coronal") return (row * Y + index) * X + col;
    return (row * Y + col) * X + index;
  }

  function voxelOf(plane, index, row, col) {
    if (plane === "axial") return [index, row, col];
    if (plane === "coronal") return [row, index, col];
    return [row, col, index];
  }

  function inPlane(plane, [z, y, x]) {
    if (plane === "axial") return { index: z, row: y, col: x };
    if (plane === "coronal") return { index: y, row: z, col: x };
    return { index: x, row: z, col: y };
  }

  function hexColour(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  // --- a view: one plane on one canvas ---------------------------------------------------
  class View {
    constructor(plane) {
      this.el = document.createElement("div");
      this.el.className = "view";
      this.canvas = document.createElement("canvas");
      this.tag = document.createElement("div");
      this.tag.className = "label";
      this.el.append(this.canvas, this.tag);
      this.ctx = this.canvas.getContext("2d");
      this.off = document.createElement("canvas");
      this.offCtx = this.off.getContext("2d");
      this.imageData = null;
      this.plane = plane;
      this.index = 0;
      this.zoom = 1;
      this.pan = [0, 0];
      this.parts = null;
      this.renderId = 0;
      this.hover = null;
      this.drag = null;
      this.bind();
      this.observer = new ResizeObserver(() => this.resize());
      this.observer.observe(this.el);
    }

    dims() {
      return planeDims(this.plane);
    }

    resize() {
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, Math.round(this.el.clientWidth * dpr));
      const h = Math.max(1, Math.round(this.el.clientHeight * dpr));
      if (w !== this.canvas.width || h !== this.canvas.height) {
        this.canvas.width = w;
        this.canvas.height = h;
        this.draw();
      }
    }

    // Slice coordinates (col, row; voxel (r, c) covers [r, r+1) x [c, c+1)) <-> canvas px.
    transform() {
      const d = this.dims();
      const W = this.canvas.width;
      const H = this.canvas.height;
      const fit = Math.min(W / (d.cols * d.cs), H / (d.rows * d.rs)) * 0.96;
      const s = fit * this.zoom; // canvas px per mm
      const a = s * d.cs;
      const e = s * d.rs;
      const ox = (W - d.cols * a) / 2 + this.pan[0];
      const oy = (H - d.rows * e) / 2 + this.pan[1];
      return { a, e, ox, oy, s, d };
    }

    toSlice(clientX, clientY) {
      const rect = this.canvas.getBoundingClientRect();
      const px = ((clientX - rect.left) * this.canvas.width) / rect.width;
      const py = ((clientY - rect.top) * this.canvas.height) / rect.height;
      const t = this.transform();
      const col = (px - t.ox) / t.a;
      const row = t.d.flip ? (t.oy + t.d.rows * t.e - py) / t.e : (py - t.oy) / t.e;
      return { row, col, px, py };
    }

    clientPoint(row, col) {
      const t = this.transform();
      const px = t.ox + col * t.a;
      const py = t.d.flip ? t.oy + (t.d.rows - row) * t.e : t.oy + row * t.e;
      const rect = this.canvas.getBoundingClientRect();
      return {
        x: rect.left + (px * rect.width) / this.canvas.width,
        y: rect.top + (py * rect.height) / this.canvas.height,
      };
    }

    setIndex(index) {
      if (!S.c) return;
      const d = this.dims();
      const i = Math.max(0, Math.min(d.depth - 1, Math.round(index)));
      if (i === this.index && this.parts) return;
      this.index = i;
      const axis = { axial: 0, coronal: 1, sagittal: 2 }[this.plane];
      S.cursor[axis] = i;
      this.render();
      for (const v of S.views) if (v !== this) v.draw();
    }

    async render() {
      if (!S.c) return;
      const id = ++this.renderId;
      const wanted = { image: fetchSlice("image", this.plane, this.index) };
      const L = S.layers;
      if (L.label.on && S.c.has_label) wanted.label = fetchSlice("label", this.plane, this.index);
      if (S.info.model) {
        if (L.prediction.on) wanted.prediction = fetchSlice("prediction", this.plane, this.index);
        if (L.uncertainty.on) wanted.uncertainty = fetchSlice("uncertainty", this.plane, this.index);
      }
      this.el.classList.add("busy");
      const keys = Object.keys(wanted);
      let results;
      try {
        results = await Promise.all(keys.map((k) => wanted[k]));
      } catch (err) {
        if (id === this.renderId) say(err.message, "error");
        return;
      } finally {
        if (id === this.renderId) this.el.classList.remove("busy");
      }
      if (id !== this.renderId) return;
      this.parts = Object.fromEntries(keys.map((k, i) => [k, results[i]]));
      this.compose();
    }

    // Image, label, prediction, uncertainty and scribbles into one RGBA slice.
    compose() {
      if (!this.parts || !S.c) return;
      const d = this.dims();
      const n = d.rows * d.cols;
      if (this.off.width !== d.cols || this.off.height !== d.rows || !this.imageData) {
        this.off.width = d.cols;
        this.off.height = d.rows;
        this.imageData = this.offCtx.createImageData(d.cols, d.rows);
      }
      const px = this.imageData.data;
      const img = this.parts.image.data;
      const w = S.windows[S.channel];
      const scale = 255 / Math.max(1e-12, w.high - w.low);
      for (let i = 0, j = 0; i < n; i++, j += 4) {
        let g = (img[i] - w.low) * scale;
        g = g < 0 ? 0 : g > 255 ? 255 : g;
        px[j] = px[j + 1] = px[j + 2] = g;
        px[j + 3] = 255;
      }
      const blendMap = (data, opacity) => {
        for (let i = 0, j = 0; i < n; i++, j += 4) {
          const v = data[i];
          if (v === 0 || v >= S.colours.length) continue;
          const c = S.colours[v];
          px[j] += (c[0] - px[j]) * opacity;
          px[j + 1] += (c[1] - px[j + 1]) * opacity;
          px[j + 2] += (c[2] - px[j + 2]) * opacity;
        }
      };
      const L = S.layers;
      if (this.parts.label) blendMap(this.parts.label.data, L.label.opacity);
      if (this.parts.prediction) blendMap(this.parts.prediction.data, L.prediction.opacity);
      if (this.parts.uncertainty) {
        const u8 = this.parts.uncertainty.data;
        const op = L.uncertainty.opacity;
        for (let i = 0, j = 0; i < n; i++, j += 4) {
          const u = u8[i] / 255;
          if (u <= 0.02) continue;
          const a = op * Math.min(1, 1.4 * u);
          const r = 255;
          const g = Math.min(255, Math.max(0, 255 * (2 * u - 0.6)));
          const b = Math.min(255, Math.max(0, 255 * (3 * u - 2.2)));
          px[j] += (r - px[j]) * a;
          px[j + 1] += (g - px[j + 1]) * a;
          px[j + 2] += (b - px[j + 2]) * a;
        }
      }
      if (L.scribble.on && S.scribble) {
        const op = L.scribble.opacity;
        const ignore = S.info.ignore;
        for (let r = 0; r < d.rows; r++) {
          for (let c = 0; c < d.cols; c++) {
            const v = S.scribble[flatIndex(this.plane, this.index, r, c)];
            if (v === ignore || v >= S.colours.length) continue;
            const j = (r * d.cols + c) * 4;
            const col = S.colours[v];
            px[j] += (col[0] - px[j]) * op;
            px[j + 1] += (col[1] - px[j + 1]) * op;
            px[j + 2] += (col[2] - px[j + 2]) * op;
          }
        }
      }
      this.offCtx.putImageData(this.imageData, 0, 0);
      this.draw();
    }

    draw() {
      const ctx = this.ctx;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      if (!S.c || !this.parts) return;
      const t = this.transform();
      const d = t.d;
      ctx.imageSmoothingEnabled = false;
      if (d.flip) ctx.setTransform(t.a, 0, 0, -t.e, t.ox, t.oy + d.rows * t.e);
      else ctx.setTransform(t.a, 0, 0, t.e, t.ox, t.oy);
      ctx.drawImage(this.off, 0, 0);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      if (S.layout === "three") {
        const p = inPlane(this.plane, S.cursor);
        const a = this.clientToCanvas(this.clientPoint(p.row + 0.5, p.col + 0.5));
        ctx.strokeStyle = "rgba(255, 230, 90, 0.45)";
        ctx.lineWidth = 1;
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        ctx.moveTo(0, a.y);
        ctx.lineTo(this.canvas.width, a.y);
        ctx.moveTo(a.x, 0);
        ctx.lineTo(a.x, this.canvas.height);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (this.hover) {
        const radius = Math.max(S.brush / 2, 0.5) * Math.min(d.rs, d.cs) * t.s;
        ctx.strokeStyle = S.eraser ? "#fff" : `rgb(${S.colours[S.value].join(",")})`;
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.arc(this.hover.px, this.hover.py, Math.max(radius, 1.5), 0, 2 * Math.PI);
        ctx.stroke();
      }
      this.tag.textContent = `${this.plane} ${this.index + 1}/${d.depth}`;
    }

    clientToCanvas(p) {
      const rect = this.canvas.getBoundingClientRect();
      return {
        x: ((p.x - rect.left) * this.canvas.width) / rect.width,
        y: ((p.y - rect.top) * this.canvas.height) / rect.height,
      };
    }

    // --- painting ---------------------------------------------------------------------
    stamp(rowf, colf, stroke) {
      const d = this.dims();
      const rmm = Math.max(S.brush / 2, 0.5) * Math.min(d.rs, d.cs);
      const ry = rmm / d.rs;
      const rx = rmm / d.cs;
      const r0 = Math.max(0, Math.floor(rowf - ry));
      const r1 = Math.min(d.rows - 1, Math.floor(rowf + ry));
      const c0 = Math.max(0, Math.floor(colf - rx));
      const c1 = Math.min(d.cols - 1, Math.floor(colf + rx));
      for (let r = r0; r <= r1; r++) {
        for (let c = c0; c <= c1; c++) {
          const dy = (r + 0.5 - rowf) * d.rs;
          const dx = (c + 0.5 - colf) * d.cs;
          if (dy * dy + dx * dx <= rmm * rmm) paint(flatIndex(this.plane, this.index, r, c), stroke);
        }
      }
      const r = Math.floor(rowf);
      const c = Math.floor(colf);
      if (r >= 0 && r < d.rows && c >= 0 && c < d.cols) paint(flatIndex(this.plane, this.index, r, c), stroke);
    }

    stampLine(p0, p1, stroke) {
      const steps = Math.max(1, Math.ceil(Math.max(Math.abs(p1.row - p0.row), Math.abs(p1.col - p0.col)) * 2));
      for (let k = 0; k <= steps; k++) {
        const f = k / steps;
        this.stamp(p0.row + (p1.row - p0.row) * f, p0.col + (p1.col - p0.col) * f, stroke);
      }
    }

    bind() {
      const c = this.canvas;
      c.addEventListener("contextmenu", (e) => e.preventDefault());
      c.addEventListener("pointerdown", (e) => this.onDown(e));
      c.addEventListener("pointermove", (e) => this.onMove(e));
      c.addEventListener("pointerup", (e) => this.onUp(e));
      c.addEventListener("pointercancel", (e) => this.onUp(e));
      c.addEventListener("pointerleave", () => {
        this.hover = null;
        this.draw();
      });
      c.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    }

    onDown(e) {
      if (!S.c || !this.parts) return;
      e.preventDefault();
      S.active = this;
      try {
        this.canvas.setPointerCapture(e.pointerId);
      } catch (err) {
        /* synthetic pointer */
      }
      const p = this.toSlice(e.clientX, e.clientY);
      if (e.button === 2) {
        const w = S.windows[S.channel];
        this.drag = { mode: "window", x: e.clientX, y: e.clientY, low: w.low, high: w.high };
      } else if (e.button === 1 || (e.button === 0 && (S.space || e.altKey))) {
        this.drag = { mode: "pan", x: e.clientX, y: e.clientY, pan: this.pan.slice() };
      } else if (e.button === 0 && e.shiftKey) {
        this.drag = { mode: "cursor" };
        this.moveCursor(p);
      } else if (e.button === 0) {
        const stroke = { value: S.eraser ? S.info.ignore : S.value, old: new Map() };
        this.drag = { mode: "paint", last: p, stroke };
        this.stampLine(p, p, stroke);
        this.compose();
      }
    }

    onMove(e) {
      if (!S.c) return;
      const p = this.toSlice(e.clientX, e.clientY);
      this.hover = p;
      showCursor(this, p);
      const drag = this.drag;
      if (!drag) {
        this.draw();
        return;
      }
      if (drag.mode === "paint") {
        this.stampLine(drag.last, p, drag.stroke);
        drag.last = p;
        this.compose();
      } else if (drag.mode === "pan") {
        const dpr = this.canvas.width / this.canvas.getBoundingClientRect().width;
        this.pan = [drag.pan[0] + (e.clientX - drag.x) * dpr, drag.pan[1] + (e.clientY - drag.y) * dpr];
        this.draw();
      } else if (drag.mode === "window") {
        const range = S.c.windows[S.channel];
        const unit = Math.max(1e-6, (range.max - range.min) / 400);
        const width = Math.max(unit, drag.high - drag.low + (e.clientX - drag.x) * unit);
        const level = (drag.high + drag.low) / 2 - (e.clientY - drag.y) * unit;
        setWindow(level - width / 2, level + width / 2);
      } else if (drag.mode === "cursor") {
        this.moveCursor(p);
      }
    }

    onUp(e) {
      const drag = this.drag;
      this.drag = null;
      if (drag && drag.mode === "paint") finishStroke(drag.stroke);
      try {
        this.canvas.releasePointerCapture(e.pointerId);
      } catch (err) {
        /* not captured */
      }
    }

    onWheel(e) {
      if (!S.c) return;
      e.preventDefault();
      S.active = this;
      if (e.ctrlKey || e.metaKey) {
        const before = this.toSlice(e.clientX, e.clientY);
        this.zoom = Math.max(0.2, Math.min(40, this.zoom * Math.exp(-e.deltaY * 0.0015)));
        const after = this.toSlice(e.clientX, e.clientY);
        const t = this.transform();
        this.pan[0] += (after.col - before.col) * t.a;
        this.pan[1] += (t.d.flip ? -1 : 1) * (after.row - before.row) * t.e;
        this.draw();
      } else {
        this.setIndex(this.index + (e.deltaY > 0 ? 1 : -1));
      }
    }

    moveCursor(p) {
      const d = this.dims();
      const row = Math.max(0, Math.min(d.rows - 1, Math.floor(p.row)));
      const col = Math.max(0, Math.min(d.cols - 1, Math.floor(p.col)));
      S.cursor = voxelOf(this.plane, this.index, row, col);
      for (const v of S.views) {
        if (v === this) continue;
        v.setIndex(inPlane(v.plane, S.cursor).index);
        v.draw();
      }
      this.draw();
    }

    resetView() {
      this.zoom = 1;
      this.pan = [0, 0];
      this.draw();
    }
  }

  // --- editing ----------------------------------------------------------------------------
  function paint(flat, stroke) {
    const old = S.scribble[flat];
    if (old === stroke.value) return;
    if (!stroke.old.has(flat)) stroke.old.set(flat, old);
    S.scribble[flat] = stroke.value;
    S.changes.set(flat, stroke.value);
  }

  function finishStroke(stroke) {
    if (!stroke.old.size) return;
    S.undo.push(stroke);
    if (S.undo.length > 500) S.undo.shift();
    S.redo = [];
    updateButtons();
    say(`${S.changes.size} voxel(s) changed, not saved yet (Ctrl+S saves)`);
  }

  function undo() {
    const stroke = S.undo.pop();
    if (!stroke) return;
    for (const [flat, old] of stroke.old) {
      S.scribble[flat] = old;
      S.changes.set(flat, old);
    }
    S.redo.push(stroke);
    recomposeAll();
    updateButtons();
  }

  function redo() {
    const stroke = S.redo.pop();
    if (!stroke) return;
    for (const flat of stroke.old.keys()) {
      S.scribble[flat] = stroke.value;
      S.changes.set(flat, stroke.value);
    }
    S.undo.push(stroke);
    recomposeAll();
    updateButtons();
  }

  async function save() {
    if (!S.c) return null;
    if (S.saving) await S.saving.catch(() => null);
    if (!S.changes.size) {
      say("nothing to save");
      return S.lastSave;
    }
    const [, Y, X] = S.c.shape;
    const groups = new Map();
    const sent = new Map(S.changes);
    for (const [flat, value] of sent) {
      let voxels = groups.get(value);
      if (!voxels) groups.set(value, (voxels = []));
      const z = Math.floor(flat / (Y * X));
      const rest = flat - z * Y * X;
      const y = Math.floor(rest / X);
      voxels.push(z, y, rest - y * X);
    }
    const strokes = [...groups].map(([value, voxels]) => ({ value, voxels }));
    const name = S.caseName;
    say(`saving ${sent.size} voxel(s)...`);
    S.saving = postJSON("/api/scribble?case=" + encodeURIComponent(name), {
      shape: S.c.shape,
      base: S.version,
      strokes,
    });
    try {
      const result = await S.saving;
      if (S.caseName === name) {
        for (const [flat, value] of sent) if (S.changes.get(flat) === value) S.changes.delete(flat);
        S.version = result.version;
        if (result.merged) {
          await loadScribble();
          S.undo = [];
          S.redo = [];
          recomposeAll();
        }
      }
      setStatus(result.case, result.status);
      S.lastSave = result;
      const merged = result.merged ? " (merged with strokes saved elsewhere)" : "";
      say(`saved ${result.voxels} voxel(s) of ${result.case}${merged}`, "ok");
      updateButtons();
      return result;
    } catch (err) {
      say(`not saved: ${err.message}`, "error");
      throw err;
    } finally {
      S.saving = null;
    }
  }

  async function loadScribble() {
    const r = await api("/api/scribble?case=" + encodeURIComponent(S.caseName));
    const volume = new Uint8Array(await r.arrayBuffer());
    const local = S.changes;
    for (const [flat, value] of local) volume[flat] = value; // unsaved strokes stay
    S.scribble = volume;
    S.version = r.headers.get("X-Version");
  }

  // --- cases ------------------------------------------------------------------------------
  // The annotation status of a case: scribbled slices, then slices per class as chips.
  // (Built as nodes: the page's Content-Security-Policy allows no inline style attribute.)
  function showStatus(el, c) {
    el.textContent = "";
    if (c.error) {
      el.textContent = "unreadable";
      el.title = c.error;
      return;
    }
    if (!c.status) {
      el.textContent = "…";
      return;
    }
    el.append(`${c.status.scribbled_slices}/${c.status.slices.length} slices `);
    c.status.slices_per_class.forEach((n, v) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.background = S.info.classes[v].colour;
      chip.title = `${S.info.classes[v].name}: ${n} slice(s)`;
      chip.textContent = n;
      el.append(chip);
    });
  }

  function renderCases() {
    const list = $("cases");
    const filter = $("split-filter").value;
    list.textContent = "";
    for (const c of S.cases) {
      if (filter && c.split !== filter) continue;
      const li = document.createElement("li");
      li.dataset.case = c.name;
      if (c.name === S.caseName) li.classList.add("current");
      li.innerHTML = `<span class="split"></span><div class="name"></div><div class="status"></div>`;
      li.querySelector(".name").textContent = c.name;
      li.querySelector(".split").textContent = c.split;
      showStatus(li.querySelector(".status"), c);
      li.addEventListener("click", () => openCase(c.name).catch((e) => say(e.message, "error")));
      list.append(li);
    }
  }

  function setStatus(name, status, error) {
    const c = S.cases.find((x) => x.name === name);
    if (!c) return;
    c.status = status || c.status;
    if (error) c.error = error;
    const li = document.querySelector(`#cases li[data-case="${CSS.escape(name)}"]`);
    if (li) showStatus(li.querySelector(".status"), c);
    if (S.c && S.c.name === name && status) S.c.status = status;
  }

  async function openCase(name) {
    if (S.changes.size && S.caseName && S.caseName !== name) await save();
    say(`opening ${name}...`);
    S.opening = true;
    try {
      const info = await getJSON("/api/case?case=" + encodeURIComponent(name));
      const r = await api("/api/scribble?case=" + encodeURIComponent(name));
      const scribble = new Uint8Array(await r.arrayBuffer());
      // Everything arrived: switch in one step, so no half-opened case is ever drawn on.
      S.caseName = name;
      S.c = info;
      S.scribble = scribble;
      S.version = r.headers.get("X-Version");
      S.changes = new Map();
      S.undo = [];
      S.redo = [];
      S.windows = info.windows.map((w) => ({ low: w.low, high: w.high }));
      S.cursor = info.shape.map((n) => Math.floor(n / 2));
      buildViews();
    } finally {
      S.opening = false;
    }
    for (const li of document.querySelectorAll("#cases li")) li.classList.toggle("current", li.dataset.case === name);
    updateLayers();
    updateWindowInputs();
    updateButtons();
    const shape = S.c.shape.join(" x ");
    say(`${name}: ${shape} voxels of ${S.c.spacing.map((s) => +s.toFixed(3)).join(" x ")} mm`);
  }

  // --- views ------------------------------------------------------------------------------
  function buildViews() {
    const box = $("views");
    for (const v of S.views) v.observer.disconnect();
    box.textContent = "";
    const flat = S.c && S.c.shape[0] === 1;
    const three = S.layout === "three" && !flat;
    box.className = three ? "three" : "single";
    const planes = three ? PLANES : [flat ? "axial" : S.plane];
    S.views = planes.map((p) => new View(p));
    for (const v of S.views) {
      box.append(v.el);
      v.index = inPlane(v.plane, S.cursor).index;
    }
    S.active = S.views[0];
    for (const b of document.querySelectorAll("#planes button[data-plane]")) {
      b.disabled = flat && b.dataset.plane !== "axial";
      b.classList.toggle("active", !three && b.dataset.plane === planes[0]);
    }
    $("layout").disabled = flat;
    $("layout").classList.toggle("active", three);
    for (const v of S.views) {
      v.resize();
      v.render();
    }
  }

  function setPlane(plane) {
    if (!S.c || !PLANES.includes(plane)) return;
    if (S.layout === "three") {
      S.layout = "single";
    }
    S.plane = plane;
    buildViews();
  }

  function renderAll() {
    for (const v of S.views) v.render();
  }

  function recomposeAll() {
    for (const v of S.views) v.compose();
  }

  function showCursor(view, p) {
    const d = view.dims();
    const row = Math.floor(p.row);
    const col = Math.floor(p.col);
    if (row < 0 || col < 0 || row >= d.rows || col >= d.cols || !view.parts) {
      $("cursor").textContent = "\u00a0";
      return;
    }
    const [z, y, x] = voxelOf(view.plane, view.index, row, col);
    const i = row * d.cols + col;
    const name = (v) => (v < S.info.classes.length ? S.info.classes[v].name : "-");
    const parts = [`z ${z}  y ${y}  x ${x}`, `value ${(+view.parts.image.data[i].toPrecision(5)).toString()}`];
    if (view.parts.label) parts.push(`label ${name(view.parts.label.data[i])}`);
    if (view.parts.prediction) parts.push(`prediction ${name(view.parts.prediction.data[i])}`);
    if (view.parts.uncertainty) parts.push(`uncertainty ${(view.parts.uncertainty.data[i] / 255).toFixed(2)}`);
    const s = S.scribble[flatIndex(view.plane, view.index, row, col)];
    parts.push(`scribble ${s === S.info.ignore ? "none" : name(s)}`);
    $("cursor").textContent = parts.join("   ·   ");
  }

  // --- window / level ---------------------------------------------------------------------
  function setWindow(low, high) {
    if (!S.c) return;
    S.windows[S.channel] = { low, high: Math.max(high, low + 1e-6) };
    updateWindowInputs();
    recomposeAll();
  }

  function updateWindowInputs() {
    if (!S.c) return;
    const w = S.windows[S.channel];
    $("win-width").value = +(w.high - w.low).toPrecision(5);
    $("win-level").value = +((w.high + w.low) / 2).toPrecision(5);
  }

  function applyPreset(value) {
    if (!S.c) return;
    const auto = S.c.windows[S.channel];
    if (value === "auto") setWindow(auto.low, auto.high);
    else if (value === "full") setWindow(auto.min, auto.max);
    else {
      const [width, level] = value.split(",").map(Number);
      setWindow(level - width / 2, level + width / 2);
    }
  }

  // --- panels -------------------------------------------------------------------------------
  function buildPalette() {
    const box = $("palette");
    box.textContent = "";
    for (const c of S.info.classes) {
      const b = document.createElement("button");
      b.dataset.value = c.value;
      b.title = `${c.name} (key ${c.value})`;
      b.innerHTML = `<span class="swatch"></span><span class="name"></span><span class="key"></span>`;
      b.querySelector(".swatch").style.background = c.colour;
      b.querySelector(".name").textContent = c.name;
      b.querySelector(".key").textContent = c.value <= 9 ? c.value : "";
      b.addEventListener("click", () => pickClass(c.value));
      box.append(b);
    }
    pickClass(Math.min(1, S.info.classes.length - 1));
  }

  function pickClass(value) {
    S.value = value;
    S.eraser = false;
    $("eraser").checked = false;
    for (const b of $("palette").children) b.classList.toggle("active", Number(b.dataset.value) === value);
  }

  function buildLayers() {
    const box = $("layers");
    box.textContent = "";
    for (const [key, layer] of Object.entries(S.layers)) {
      const row = document.createElement("label");
      row.className = "layer";
      row.title = `${layer.title} (key ${layer.key})`;
      row.innerHTML = `<input type="checkbox"><span></span><input type="range" min="0" max="1" step="0.05">`;
      const [check, range] = row.querySelectorAll("input");
      row.querySelector("span").textContent = layer.title;
      check.id = `layer-${key}`;
      check.checked = layer.on;
      range.value = layer.opacity;
      check.addEventListener("change", () => {
        layer.on = check.checked;
        renderAll();
      });
      range.addEventListener("input", () => {
        layer.opacity = Number(range.value);
        recomposeAll();
      });
      box.append(row);
    }
  }

  function updateLayers() {
    const model = !!(S.info && S.info.model);
    const enabled = {
      label: !!(S.c && S.c.has_label),
      prediction: model,
      uncertainty: model,
      scribble: true,
    };
    for (const key of Object.keys(S.layers)) $(`layer-${key}`).disabled = !enabled[key];
  }

  function toggleLayer(key) {
    const check = $(`layer-${key}`);
    if (check.disabled) return;
    check.checked = !check.checked;
    S.layers[key].on = check.checked;
    renderAll();
  }

  function updateButtons() {
    $("undo").disabled = !S.undo.length;
    $("redo").disabled = !S.redo.length;
    $("save").disabled = !S.changes.size;
    $("next").disabled = !(S.info && S.info.model);
  }

  function showModel(model) {
    S.info.model = model && model.path ? model : null;
    const el = $("model-info");
    el.textContent = S.info.model
      ? `model: ${S.info.model.path}`
      : "no model yet: scribble some slices, then Train (or start with --model)";
    if (S.info.model && S.info.model.version !== S.modelVersion) {
      S.modelVersion = S.info.model.version;
      S.suggestions = [];
      renderSuggestions();
      renderAll();
    }
    updateLayers();
    updateButtons();
  }

  // --- training -----------------------------------------------------------------------------
  function showJob(job) {
    const running = !!job && ["starting", "running", "cancelling"].includes(job.state);
    $("train").disabled = running;
    $("cancel").disabled = !running;
    $("job-state").textContent = job ? `${job.state}${job.message ? ": " + job.message : ""}` : "";
    if (job && job.lines && job.lines.length) {
      $("log").textContent = job.lines.map((l) => l.replace(/^\r/, "")).join("\n") + "\n";
      $("log").scrollTop = $("log").scrollHeight;
    }
    if (job && job.state === "failed") say(job.message, "error");
    if (job && job.state === "finished") say(`training finished${job.message ? ": " + job.message : ""}`, "ok");
  }

  let lastWasProgress = false;
  function appendLog({ line, progress }) {
    const log = $("log");
    let text = log.textContent;
    if (lastWasProgress) text = text.slice(0, text.lastIndexOf("\n", text.length - 2) + 1);
    text += line + "\n";
    const lines = text.split("\n");
    if (lines.length > 400) text = lines.slice(-400).join("\n");
    log.textContent = text;
    log.scrollTop = log.scrollHeight;
    lastWasProgress = progress;
  }

  async function train() {
    try {
      if (S.changes.size) await save();
      const job = await postJSON("/api/train", {
        preset: $("preset").value.trim(),
        settings: $("settings").value.trim(),
      });
      $("log").textContent = "";
      lastWasProgress = false;
      showJob(job.job);
      say(`training into ${job.job.run_dir}`);
    } catch (err) {
      say(`not started: ${err.message}`, "error");
    }
  }

  // --- suggestions --------------------------------------------------------------------------
  function renderSuggestions() {
    const list = $("suggestions");
    list.textContent = "";
    for (const s of S.suggestions) {
      const li = document.createElement("li");
      li.textContent = `${s.case}${s.slice === null ? "" : " slice " + s.slice}  (${s.score.toFixed(3)})`;
      li.title = `score ${s.score.toFixed(4)} = (entropy ${s.entropy.toFixed(4)} + disagreement ${s.disagreement.toFixed(4)}) / 2`;
      li.addEventListener("click", () => goTo(s).catch((e) => say(e.message, "error")));
      list.append(li);
    }
  }

  async function goTo(s) {
    if (s.case !== S.caseName) await openCase(s.case);
    if (s.slice !== null && s.slice !== undefined) {
      if (S.layout !== "single" || S.plane !== "axial") {
        S.layout = "single";
        S.plane = "axial";
        buildViews();
      }
      S.views[0].setIndex(s.slice);
    }
  }

  async function next() {
    if (!S.info.model) {
      say("suggestions need a model: train one, or start with --model", "error");
      return;
    }
    try {
      if (S.changes.size) await save();
      say("ranking the slices without scribbles...");
      const res = await getJSON(`/api/suggest?unit=${$("unit").value}&top=20`);
      S.suggestions = res.suggestions;
      renderSuggestions();
      if (!S.suggestions.length) {
        say("nothing left to suggest: every training slice holds a scribble", "ok");
        return;
      }
      await goTo(S.suggestions[0]);
      const s = S.suggestions[0];
      say(`next: ${s.case}${s.slice === null ? "" : " slice " + s.slice} (score ${s.score.toFixed(3)})`, "ok");
    } catch (err) {
      say(err.message, "error");
    }
  }

  // --- events from the server -----------------------------------------------------------
  function listen() {
    const events = new EventSource("/api/events");
    const on = (kind, fn) => events.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
    on("hello", (d) => {
      showJob(d.job);
      if (d.model) showModel(d.model);
      // Statuses computed before this stream (re)connected were not heard: fetch them.
      getJSON("/api/cases")
        .then((r) => r.cases.forEach((c) => c.status && setStatus(c.name, c.status)))
        .catch(() => null);
    });
    on("log", appendLog);
    on("job", showJob);
    on("model", showModel);
    on("case", (d) => setStatus(d.name, d.status, d.error));
    on("suggest", (d) => say(`ranking: ${d.done}/${d.total} case(s) predicted`));
  }

  // --- keys -------------------------------------------------------------------------------
  function onKey(e) {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) && e.target.type !== "checkbox" && e.target.type !== "range";
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (ctrl && key === "s") {
      e.preventDefault();
      save().catch(() => null);
      return;
    }
    if (typing) return;
    const view = S.active || S.views[0];
    if (ctrl && key === "z") {
      e.preventDefault();
      if (e.shiftKey) redo();
      else undo();
    } else if (ctrl && key === "y") {
      e.preventDefault();
      redo();
    } else if (ctrl) {
      return;
    } else if (e.key === " ") {
      S.space = true;
      e.preventDefault();
    } else if (/^[0-9]$/.test(e.key) && Number(e.key) < S.info.classes.length) {
      pickClass(Number(e.key));
    } else if (key === "e") {
      S.eraser = !S.eraser;
      $("eraser").checked = S.eraser;
    } else if (e.key === "[" || e.key === "]") {
      const size = Math.max(1, Math.min(25, S.brush + (e.key === "]" ? 1 : -1)));
      S.brush = size;
      $("brush").value = size;
      $("brush-value").textContent = size;
      if (view) view.draw();
    } else if (view && (e.key === "ArrowUp" || e.key === "PageUp")) {
      e.preventDefault();
      view.setIndex(view.index - (e.key === "PageUp" ? 5 : 1));
    } else if (view && (e.key === "ArrowDown" || e.key === "PageDown")) {
      e.preventDefault();
      view.setIndex(view.index + (e.key === "PageDown" ? 5 : 1));
    } else if (key === "a") setPlane("axial");
    else if (key === "c") setPlane("coronal");
    else if (key === "s") setPlane("sagittal");
    else if (key === "v") toggleLayout();
    else if (key === "f" && view) view.resetView();
    else if (key === "+" || key === "=") zoomBy(view, 1.25);
    else if (key === "-") zoomBy(view, 0.8);
    else if (key === "l") toggleLayer("label");
    else if (key === "p") toggleLayer("prediction");
    else if (key === "u") toggleLayer("uncertainty");
    else if (key === "h") toggleLayer("scribble");
    else if (key === "n") next();
  }

  function zoomBy(view, factor) {
    if (!view) return;
    view.zoom = Math.max(0.2, Math.min(40, view.zoom * factor));
    view.draw();
  }

  function toggleLayout() {
    if (!S.c || S.c.shape[0] === 1) return;
    S.layout = S.layout === "three" ? "single" : "three";
    buildViews();
  }

  // --- start ------------------------------------------------------------------------------
  async function init() {
    S.info = await getJSON("/api/info");
    S.colours = S.info.classes.map((c) => hexColour(c.colour));
    $("dataset-name").textContent = `${S.info.dataset} (${S.info.root})`;
    buildPalette();
    buildLayers();
    const channel = $("channel");
    S.info.channels.forEach((name, i) => channel.append(new Option(`${i}: ${name}`, i)));
    channel.disabled = S.info.channels.length < 2;
    const presets = $("preset-list");
    for (const [name, help] of Object.entries(S.info.presets)) {
      const option = document.createElement("option");
      option.value = name;
      option.label = help;
      presets.append(option);
    }
    $("preset").value = S.info.default_preset || "";
    $("preset").title = "dmsps run --preset: " + Object.keys(S.info.presets).join(", ");
    showModel(S.info.model);
    showJob(S.info.job);

    $("undo").addEventListener("click", undo);
    $("redo").addEventListener("click", redo);
    $("save").addEventListener("click", () => save().catch(() => null));
    $("next").addEventListener("click", next);
    $("train").addEventListener("click", train);
    $("cancel").addEventListener("click", () => postJSON("/api/train/cancel", {}).then((r) => showJob(r.job)).catch((e) => say(e.message, "error")));
    $("split-filter").addEventListener("change", renderCases);
    $("brush").addEventListener("input", () => {
      S.brush = Number($("brush").value);
      $("brush-value").textContent = S.brush;
    });
    $("eraser").addEventListener("change", () => (S.eraser = $("eraser").checked));
    $("channel").addEventListener("change", () => {
      S.channel = Number($("channel").value);
      updateWindowInputs();
      renderAll();
    });
    $("window-preset").addEventListener("change", () => applyPreset($("window-preset").value));
    const typed = () => {
      const width = Number($("win-width").value);
      const level = Number($("win-level").value);
      if (Number.isFinite(width) && Number.isFinite(level) && width > 0) setWindow(level - width / 2, level + width / 2);
    };
    $("win-width").addEventListener("change", typed);
    $("win-level").addEventListener("change", typed);
    $("reset-view").addEventListener("click", () => S.views.forEach((v) => v.resetView()));
    for (const b of document.querySelectorAll("#planes button[data-plane]")) b.addEventListener("click", () => setPlane(b.dataset.plane));
    $("layout").addEventListener("click", toggleLayout);
    document.addEventListener("keydown", onKey);
    document.addEventListener("keyup", (e) => {
      if (e.key === " ") S.space = false;
    });
    window.addEventListener("beforeunload", (e) => {
      if (S.changes.size) {
        e.preventDefault();
        e.returnValue = "";
      }
    });

    S.cases = (await getJSON("/api/cases")).cases;
    renderCases();
    listen();
    if (S.cases.length) {
      const first = S.cases.find((c) => c.split === "train") || S.cases[0];
      await openCase(first.name);
    }
    S.ready = true;
  }

  // Hooks for the end-to-end test and scripted screenshots (they use the page as a user
  // would: the test's mouse events go through the canvas, these only say where to aim).
  window.dmsps = {
    state: S,
    get ready() {
      return S.ready;
    },
    openCase,
    save,
    setPlane,
    toggleLayout,
    pickClass,
    toggleLayer,
    next,
    setIndex: (view, index) => S.views[view].setIndex(index),
    clientPoint: (view, row, col) => S.views[view].clientPoint(row, col),
    busy: () => S.opening || !!S.saving || S.views.some((v) => v.el.classList.contains("busy") || !v.parts),
  };

  init().catch((err) => say(`could not start: ${err.message}`, "error"));
})();
