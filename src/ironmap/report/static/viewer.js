/* ironmap slice viewer: R2* map with region and lesion overlays (plain JavaScript, offline).
 *
 * Reads the JSON payload in <script id="iv-data"> (volumes: base64 of zlib-compressed uint8,
 * x fastest), draws one slice on a canvas and exposes window.ironmapViewer.ready (a Promise
 * resolved after the first draw). Views follow the report's figures: axial anterior up,
 * coronal and sagittal superior up, the subject's right on the image's right.
 */
(function () {
  "use strict";
  var root = document.getElementById("iv");
  var source = document.getElementById("iv-data");
  if (!root || !source) { return; }
  var data = JSON.parse(source.textContent);
  var nx = data.shape[0], ny = data.shape[1], nz = data.shape[2];
  var el = function (id) { return document.getElementById(id); };
  var state = { plane: 2, slice: [Math.floor(nx / 2), Math.floor(ny / 2), Math.floor(nz / 2)],
                labels: 0.5, lesion: 0.9, lo: data.window[0], hi: data.window[1] };
  var vol = { r2: null, lab: null, les: null };
  var colors = {};
  Object.keys(data.colors || {}).forEach(function (k) {
    var h = data.colors[k];
    colors[k] = [parseInt(h.substr(1, 2), 16), parseInt(h.substr(3, 2), 16),
                 parseInt(h.substr(5, 2), 16)];
  });

  function inflate(b64) {
    if (!b64) { return Promise.resolve(null); }
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (b) { return new Uint8Array(b); });
  }

  /* size of a view (w, h) in voxels and mm per pixel */
  function dims(plane) {
    var v = data.voxel_mm;
    if (plane === 2) { return [nx, ny, v[0], v[1]]; }
    if (plane === 1) { return [nx, nz, v[0], v[2]]; }
    return [ny, nz, v[1], v[2]];
  }
  /* voxel index of pixel (i, j) of the current view (j = 0 is the top row) */
  function voxel(i, j) {
    var d = dims(state.plane), k = state.slice[state.plane], r = d[1] - 1 - j;
    if (state.plane === 2) { return [i, r, k]; }
    if (state.plane === 1) { return [i, k, r]; }
    return [k, i, r];
  }
  function index(p) { return p[0] + nx * (p[1] + ny * p[2]); }

  var off = document.createElement("canvas");
  var canvas = el("iv-canvas");
  function draw() {
    var d = dims(state.plane), w = d[0], h = d[1];
    off.width = w; off.height = h;
    var octx = off.getContext("2d");
    var img = octx.createImageData(w, h);
    var px = img.data, lo = state.lo, span = Math.max(state.hi - state.lo, 1e-6);
    for (var j = 0; j < h; j++) {
      for (var i = 0; i < w; i++) {
        var n = index(voxel(i, j)), o = 4 * (j * w + i);
        var code = vol.r2[n], g = 0;
        if (code > 0) {
          g = Math.round(255 * Math.min(1, Math.max(0, ((code - 1) * data.scale - lo) / span)));
        }
        var rgb = [g, g, g];
        if (vol.lab && vol.lab[n] && colors[vol.lab[n]] && state.labels > 0) {
          var c = colors[vol.lab[n]], a = state.labels;
          rgb = [rgb[0] * (1 - a) + c[0] * a, rgb[1] * (1 - a) + c[1] * a,
                 rgb[2] * (1 - a) + c[2] * a];
        }
        if (vol.les && vol.les[n] && state.lesion > 0) {
          var b = state.lesion;
          rgb = [rgb[0] * (1 - b), rgb[1] * (1 - b) + 229 * b, rgb[2] * (1 - b) + 255 * b];
        }
        px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
    var wm = w * d[2], hm = h * d[3], zoom = Math.min(560 / wm, 560 / hm);
    canvas.width = Math.round(wm * zoom); canvas.height = Math.round(hm * zoom);
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
    el("iv-slice-n").textContent = (state.slice[state.plane] + 1) + " / " +
      [nx, ny, nz][state.plane];
  }

  function sync() {
    var s = el("iv-slice");
    s.max = [nx, ny, nz][state.plane] - 1;
    s.value = state.slice[state.plane];
  }
  function hover(ev) {
    var d = dims(state.plane), r = canvas.getBoundingClientRect();
    var i = Math.floor((ev.clientX - r.left) / r.width * d[0]);
    var j = Math.floor((ev.clientY - r.top) / r.height * d[1]);
    if (i < 0 || j < 0 || i >= d[0] || j >= d[1]) { return; }
    var p = voxel(i, j), n = index(p), code = vol.r2[n];
    var text = "voxel " + p.join(", ") + ": " +
      (code > 0 ? "R2* " + ((code - 1) * data.scale).toFixed(1) + " s⁻¹" : "no R2*");
    if (vol.lab && vol.lab[n]) { text += ", " + (data.names[vol.lab[n]] || "label " + vol.lab[n]); }
    if (vol.les && vol.les[n]) { text += ", lesion"; }
    el("iv-info").textContent = text;
  }
  function bind() {
    el("iv-plane").addEventListener("change", function (e) {
      state.plane = parseInt(e.target.value, 10); sync(); draw();
    });
    el("iv-slice").addEventListener("input", function (e) {
      state.slice[state.plane] = parseInt(e.target.value, 10); draw();
    });
    el("iv-lab").addEventListener("input", function (e) {
      state.labels = e.target.value / 100; draw();
    });
    el("iv-les").addEventListener("input", function (e) {
      state.lesion = e.target.value / 100; draw();
    });
    ["iv-lo", "iv-hi"].forEach(function (id) {
      el(id).addEventListener("change", function () {
        state.lo = parseFloat(el("iv-lo").value); state.hi = parseFloat(el("iv-hi").value);
        draw();
      });
    });
    canvas.addEventListener("mousemove", hover);
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var n = [nx, ny, nz][state.plane] - 1, k = state.slice[state.plane] + (e.deltaY > 0 ? -1 : 1);
      state.slice[state.plane] = Math.max(0, Math.min(n, k)); sync(); draw();
    }, { passive: false });
  }
  function startSlice() {
    /* the axial slice with most labelled voxels (else the middle one) */
    if (!vol.lab) { return; }
    var best = -1, bestK = state.slice[2];
    for (var k = 0; k < nz; k++) {
      var c = 0;
      for (var n = k * nx * ny; n < (k + 1) * nx * ny; n++) { if (vol.lab[n]) { c++; } }
      if (c > best) { best = c; bestK = k; }
    }
    state.slice[2] = bestK;
  }

  var ready = Promise.all([inflate(data.r2star), inflate(data.labels), inflate(data.lesion)])
    .then(function (v) {
      vol.r2 = v[0]; vol.lab = v[1]; vol.les = v[2];
      if (vol.r2.length !== nx * ny * nz) { throw new Error("viewer: R2* volume has the wrong size"); }
      el("iv-lo").value = state.lo.toFixed(1); el("iv-hi").value = state.hi.toFixed(1);
      startSlice(); bind(); sync(); draw();
      root.dataset.ready = "1";
      return state;
    });
  /* go to the axial slice with most lesion voxels (returns that slice, or -1) */
  function showLesion() {
    if (!vol.les) { return -1; }
    var best = 0, bestK = -1;
    for (var k = 0; k < nz; k++) {
      var c = 0;
      for (var n = k * nx * ny; n < (k + 1) * nx * ny; n++) { if (vol.les[n]) { c++; } }
      if (c > best) { best = c; bestK = k; }
    }
    if (bestK >= 0) { state.plane = 2; el("iv-plane").value = "2"; state.slice[2] = bestK; sync(); draw(); }
    return bestK;
  }
  window.ironmapViewer = { ready: ready, state: state, draw: draw, sync: sync,
                           showLesion: showLesion };
})();
