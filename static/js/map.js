// The collection map: every placed work drawn on a canvas, with pan, zoom, hover, thumbnails when zoomed in close,
// colour by type or label source, and a box selection that opens its works in the catalogue.
//
// The points come as one binary (catalogue/selectors/maps.py documents it): ids, x and y quantised to 0..65535,
// a type byte and a provenance byte. Points are written straight into an ImageData (a million squares in a few tens
// of milliseconds, where a million fillRect calls take seconds); a uniform grid over the unit square finds the point
// under the pointer and the points in view.
(function () {
  "use strict";
  const root = document.getElementById("map");
  if (!root) return;
  const config = JSON.parse(document.getElementById("map-config").textContent);
  const canvas = document.getElementById("map-canvas");
  const ctx = canvas.getContext("2d");
  const statusLine = document.getElementById("map-status");
  const hover = document.getElementById("map-hover");
  const boxEl = document.getElementById("map-box");
  const selectButton = document.getElementById("map-select");
  const selection = document.getElementById("map-selection");
  const openLink = document.getElementById("map-open");
  const GRID = 256; // cells per side of the lookup grid
  const HOVER_PX = 8; // how near (CSS pixels) the pointer must be to a work
  const THUMBS_BELOW = 120; // thumbnails are drawn once fewer works than this are in view
  const THUMB_PX = 56;

  let pts = null; // {n, ids, xs, ys, type, prov, header, cellStart, order}
  let colourBy = "type";
  let view = { scale: 1, tx: 0, ty: 0 }; // screen = t + unit * scale, in device pixels
  let dpr = window.devicePixelRatio || 1;
  let selecting = false;
  let drag = null;
  let hovered = -1;
  const works = new Map(); // artwork id -> {title, thumbnail, url}
  const images = new Map(); // artwork id -> HTMLImageElement
  const pending = new Set();
  let frame = 0;
  let image = null; // the ImageData, kept between frames of the same size
  let pixels = null;
  let fitted = false;

  function hexToAbgr(hex) {
    const v = parseInt(hex.slice(1), 16);
    return (0xff << 24) | ((v & 0xff) << 16) | (v & 0xff00) | ((v >> 16) & 0xff);
  }

  function parse(buffer) {
    const head = new DataView(buffer);
    const magic = String.fromCharCode(head.getUint8(0), head.getUint8(1), head.getUint8(2), head.getUint8(3));
    if (magic !== "AMP1") throw new Error("not a map");
    const n = head.getUint32(4, true);
    const h = head.getUint32(8, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 12, h)));
    let offset = 12 + h;
    const deltas = new Uint32Array(buffer, offset, n);
    offset += 4 * n;
    const qx = new Uint16Array(buffer, offset, n);
    offset += 2 * n;
    const qy = new Uint16Array(buffer, offset, n);
    offset += 2 * n;
    const type = new Uint8Array(buffer, offset, n);
    offset += n;
    const prov = new Uint8Array(buffer, offset, n);
    const ids = new Float64Array(n);
    const xs = new Float32Array(n);
    const ys = new Float32Array(n);
    let id = 0;
    for (let i = 0; i < n; i++) {
      id += deltas[i];
      ids[i] = id;
      xs[i] = qx[i] / 65535;
      ys[i] = qy[i] / 65535;
    }
    // Counting sort of the points by grid cell: cellStart[c]..cellStart[c+1] index into order.
    const cellStart = new Uint32Array(GRID * GRID + 1);
    const cellOf = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const c = cell(xs[i], ys[i]);
      cellOf[i] = c;
      cellStart[c + 1]++;
    }
    for (let c = 0; c < GRID * GRID; c++) cellStart[c + 1] += cellStart[c];
    const fill = cellStart.slice(0, GRID * GRID);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[fill[cellOf[i]]++] = i;
    return { n, ids, xs, ys, type, prov, header, cellStart, order };
  }

  function cell(x, y) {
    const cx = Math.min(GRID - 1, Math.max(0, Math.floor(x * GRID)));
    const cy = Math.min(GRID - 1, Math.max(0, Math.floor(y * GRID)));
    return cy * GRID + cx;
  }

  // Calls fn(i) for every point whose unit coordinates fall in [x0, x1] × [y0, y1] (cells overlapping it), until
  // fn returns false.
  function eachIn(x0, y0, x1, y1, fn) {
    const c0 = Math.max(0, Math.floor(x0 * GRID)), c1 = Math.min(GRID - 1, Math.floor(x1 * GRID));
    const r0 = Math.max(0, Math.floor(y0 * GRID)), r1 = Math.min(GRID - 1, Math.floor(y1 * GRID));
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const k = r * GRID + c;
        for (let j = pts.cellStart[k]; j < pts.cellStart[k + 1]; j++) {
          const i = pts.order[j];
          const x = pts.xs[i], y = pts.ys[i];
          if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && fn(i) === false) return;
        }
      }
    }
  }

  // Each point's colour (ABGR, as the ImageData's Uint32 view wants it), computed once per colouring so that a
  // redraw reads one array.
  let pointColours = null;
  function colourPoints() {
    const palette = colourBy === "provenance"
      ? config.provenances.map((p) => hexToAbgr(p.colour))
      : config.types.map((t) => hexToAbgr(t.colour));
    const grey = hexToAbgr(config.noType);
    pointColours = new Uint32Array(pts.n);
    for (let i = 0; i < pts.n; i++) {
      const k = colourIndex(i);
      pointColours[i] = k < 0 || k >= palette.length ? grey : palette[k];
    }
  }

  function colourIndex(i) {
    if (colourBy === "provenance") return pts.prov[i];
    const t = pts.type[i];
    return t === 255 ? -1 : t;
  }

  function resize() {
    dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    if (!fitted) fit();
    schedule();
  }

  function fit() {
    fitted = true;
    const size = Math.min(canvas.width, canvas.height);
    view.scale = size * 0.94;
    view.tx = (canvas.width - view.scale) / 2;
    view.ty = (canvas.height - view.scale) / 2;
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function visibleUnitBox() {
    return [-view.tx / view.scale, -view.ty / view.scale,
      (canvas.width - view.tx) / view.scale, (canvas.height - view.ty) / view.scale];
  }

  function draw() {
    frame = 0;
    if (!pts) return;
    const w = canvas.width, h = canvas.height;
    if (!image || image.width !== w || image.height !== h) {
      image = ctx.createImageData(w, h);
      pixels = new Uint32Array(image.data.buffer);
    }
    pixels.fill(0xffffffff);
    // Dots grow as one zooms in: one device pixel for the whole collection, up to 5 when works are far apart.
    const size = Math.max(1, Math.min(5, Math.round((view.scale / 1500) * dpr)));
    const half = size >> 1;
    const { n, xs, ys } = pts;
    const colours = pointColours;
    const { tx, ty, scale } = view;
    for (let i = 0; i < n; i++) {
      const sx = Math.round(tx + xs[i] * scale) - half;
      const sy = Math.round(ty + ys[i] * scale) - half;
      if (sx < -size || sy < -size || sx >= w || sy >= h) continue;
      const colour = colours[i];
      if (size === 1) {
        pixels[sy * w + sx] = colour;
        continue;
      }
      for (let dy = 0; dy < size; dy++) {
        const yy = sy + dy;
        if (yy < 0 || yy >= h) continue;
        const row = yy * w;
        for (let dx = 0; dx < size; dx++) {
          const xx = sx + dx;
          if (xx >= 0 && xx < w) pixels[row + xx] = colour;
        }
      }
    }
    ctx.putImageData(image, 0, 0);
    drawThumbnails();
    if (hovered >= 0) ring(hovered);
  }

  function ring(i) {
    ctx.beginPath();
    ctx.arc(view.tx + pts.xs[i] * view.scale, view.ty + pts.ys[i] * view.scale, 6 * dpr, 0, 2 * Math.PI);
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = "#111";
    ctx.stroke();
  }

  function drawThumbnails() {
    const [x0, y0, x1, y1] = visibleUnitBox();
    const inView = [];
    let tooMany = false;
    eachIn(x0, y0, x1, y1, (i) => {
      if (inView.length >= THUMBS_BELOW) {
        tooMany = true;
        return false;
      }
      inView.push(i);
      return true;
    });
    if (tooMany || !inView.length) return;
    const missing = inView.map((i) => pts.ids[i]).filter((id) => !works.has(id) && !pending.has(id));
    if (missing.length) describe(missing).then(schedule);
    const px = THUMB_PX * dpr;
    for (const i of inView) {
      const work = works.get(pts.ids[i]);
      if (!work || !work.thumbnail) continue;
      const img = thumbnail(pts.ids[i], work.thumbnail);
      if (!img.complete || !img.naturalWidth) continue;
      const ratio = Math.min(px / img.naturalWidth, px / img.naturalHeight);
      const tw = img.naturalWidth * ratio, th = img.naturalHeight * ratio;
      const cx = view.tx + pts.xs[i] * view.scale, cy = view.ty + pts.ys[i] * view.scale;
      ctx.drawImage(img, cx - tw / 2, cy - th / 2, tw, th);
    }
  }

  function thumbnail(id, url) {
    let img = images.get(id);
    if (!img) {
      img = new Image();
      img.onload = schedule;
      img.src = url;
      images.set(id, img);
    }
    return img;
  }

  function describe(ids) {
    ids.forEach((id) => pending.add(id));
    return fetch(config.works + "?ids=" + ids.join(","), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : { works: [] }))
      .then((data) => {
        for (const w of data.works) works.set(w.id, w);
        ids.forEach((id) => pending.delete(id));
      });
  }

  function nearest(px, py) {
    const ux = (px - view.tx) / view.scale, uy = (py - view.ty) / view.scale;
    const r = (HOVER_PX * dpr) / view.scale;
    let best = -1, bestD = r * r;
    eachIn(ux - r, uy - r, ux + r, uy + r, (i) => {
      const dx = pts.xs[i] - ux, dy = pts.ys[i] - uy;
      const d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    });
    return best;
  }

  function devicePoint(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr];
  }

  function showHover(i, event) {
    hovered = i;
    schedule();
    if (i < 0) { hover.hidden = true; canvas.style.cursor = selecting ? "crosshair" : "grab"; return; }
    canvas.style.cursor = "pointer";
    const id = pts.ids[i];
    const rect = canvas.getBoundingClientRect();
    hover.style.left = (event.clientX - rect.left + 14) + "px";
    hover.style.top = (event.clientY - rect.top + 14) + "px";
    hover.hidden = false;
    hover.dataset.artwork = String(id);
    const fill = () => {
      if (hovered !== i) return;
      const work = works.get(id);
      const img = hover.querySelector("img");
      const label = hover.querySelector("span");
      if (!work) { label.textContent = "…"; img.hidden = true; return; }
      label.textContent = work.title + (work.artist ? " — " + work.artist : "");
      img.hidden = !work.thumbnail;
      if (work.thumbnail && img.getAttribute("src") !== work.thumbnail) img.src = work.thumbnail;
    };
    fill();
    if (!works.has(id) && !pending.has(id)) describe([id]).then(fill);
  }

  function legend() {
    const counts = new Map();
    for (let i = 0; i < pts.n; i++) {
      const k = colourIndex(i);
      counts.set(k, (counts.get(k) || 0) + 1);
    }
    const items = colourBy === "provenance"
      ? config.provenances.map((p, k) => [p.name, p.colour, counts.get(k) || 0])
      : config.types.map((t, k) => [t.name, t.colour, counts.get(k) || 0]);
    if (colourBy === "type" && counts.get(-1)) items.push(["No type", config.noType, counts.get(-1)]);
    const list = document.getElementById("map-legend");
    list.replaceChildren(...items.map(([name, colour, count]) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      const n = document.createElement("span");
      n.className = "muted";
      n.textContent = " " + count.toLocaleString();
      li.append(swatch, " " + name, n);
      return li;
    }));
  }

  function finishBox(a, b) {
    const ux0 = (Math.min(a[0], b[0]) - view.tx) / view.scale, ux1 = (Math.max(a[0], b[0]) - view.tx) / view.scale;
    const uy0 = (Math.min(a[1], b[1]) - view.ty) / view.scale, uy1 = (Math.max(a[1], b[1]) - view.ty) / view.scale;
    let count = 0;
    eachIn(ux0, uy0, ux1, uy1, () => {
      count++;
    });
    const { origin, span } = pts.header;
    // Back to the layout's own units, which the catalogue's map_box filter reads; a hair wider than the box so
    // that quantisation never leaves out a work drawn on its edge.
    const pad = span / 65535;
    const box = [origin[0] + ux0 * span - pad, origin[1] + uy0 * span - pad,
      origin[0] + ux1 * span + pad, origin[1] + uy1 * span + pad];
    if (!config.catalogue) {
      statusLine.textContent = count.toLocaleString() + " works selected (open the active version's map to list them).";
      return;
    }
    openLink.href = config.catalogue + "?map_box=" + box.map((v) => v.toPrecision(9)).join(",");
    openLink.textContent = "Open " + count.toLocaleString() + " works in the catalogue";
    selection.hidden = false;
  }

  canvas.addEventListener("mousedown", (event) => {
    const p = devicePoint(event);
    const boxing = selecting || event.shiftKey;
    drag = { start: p, last: p, boxing, moved: false };
    if (!boxing) canvas.style.cursor = "grabbing";
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    if (!pts) return;
    const p = devicePoint(event);
    if (drag) {
      drag.moved = drag.moved || Math.abs(p[0] - drag.start[0]) + Math.abs(p[1] - drag.start[1]) > 3 * dpr;
      if (drag.boxing) {
        const rect = canvas.getBoundingClientRect();
        const sx = drag.start[0] / dpr, sy = drag.start[1] / dpr;
        const ex = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
        const ey = Math.min(Math.max(event.clientY - rect.top, 0), rect.height);
        Object.assign(boxEl.style, { left: Math.min(sx, ex) + "px", top: Math.min(sy, ey) + "px",
          width: Math.abs(ex - sx) + "px", height: Math.abs(ey - sy) + "px" });
        boxEl.hidden = false;
      } else {
        view.tx += p[0] - drag.last[0];
        view.ty += p[1] - drag.last[1];
        schedule();
      }
      drag.last = p;
      return;
    }
    if (event.target === canvas) showHover(nearest(p[0], p[1]), event);
    else if (hovered >= 0) showHover(-1, event);
  });
  window.addEventListener("mouseup", (event) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    canvas.style.cursor = selecting ? "crosshair" : "grab";
    if (d.boxing && d.moved) {
      boxEl.hidden = true;
      finishBox(d.start, devicePoint(event));
    } else if (!d.moved && hovered >= 0 && event.target === canvas) {
      const work = works.get(pts.ids[hovered]);
      window.location.href = work ? work.url : config.artwork.replace(/0\/$/, pts.ids[hovered] + "/");
    }
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = devicePoint(event);
    const factor = Math.exp(-event.deltaY * 0.0015);
    const scale = Math.min(Math.max(view.scale * factor, 50), 5e7);
    view.tx = px - ((px - view.tx) * scale) / view.scale;
    view.ty = py - ((py - view.ty) * scale) / view.scale;
    view.scale = scale;
    schedule();
  }, { passive: false });
  selectButton.addEventListener("click", () => {
    selecting = !selecting;
    selectButton.classList.toggle("pressed", selecting);
    canvas.style.cursor = selecting ? "crosshair" : "grab";
  });
  document.getElementById("map-reset").addEventListener("click", () => { fit(); schedule(); });
  root.querySelectorAll("input[name=colour]").forEach((input) => input.addEventListener("change", () => {
    colourBy = input.value;
    colourPoints();
    legend();
    schedule();
  }));
  window.addEventListener("resize", resize);

  // For the browser test and for anyone scripting the page: where a work is drawn, in CSS pixels of the canvas.
  window.artsiteMap = {
    screenOf(id) {
      if (!pts) return null;
      for (let i = 0; i < pts.n; i++) {
        if (pts.ids[i] === id) return [(view.tx + pts.xs[i] * view.scale) / dpr, (view.ty + pts.ys[i] * view.scale) / dpr];
      }
      return null;
    },
  };

  fetch(config.points, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.arrayBuffer(); })
    .then((buffer) => {
      pts = parse(buffer);
      statusLine.textContent = pts.n.toLocaleString() + " works";
      root.dataset.points = String(pts.n);
      colourPoints();
      legend();
      resize();
      draw();
      root.dataset.drawn = "true";
    })
    .catch((error) => { statusLine.textContent = "The map could not be loaded: " + error.message; });
})();
