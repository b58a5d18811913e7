/* The β explorer: minist's variable-rate student, both halves of the split, in the browser.
 *
 * device:  image → encoder.onnx (ONNX Runtime Web) → latent z → u = z · g(β) → symbols = round(u − m(β))
 *          → rANS (rans.js) → message (wire.js)
 * server:  message → checks → rANS decode → û = symbols + m(β) → ẑ = û · g'(β) → server.onnx (decoder + the
 *          teacher's tail) → logits
 * Every step is in float32, as minist's Python halves compute it. Open with `?selftest` to run the self-test that
 * tests/test_web.py reads (window.MINIST_SELFTEST).
 */
(function () {
  "use strict";
  const META = window.MINIST_META;
  const A = window.MINIST_ASSETS;
  const f32 = Math.fround;
  const $ = (id) => document.getElementById(id);
  const S = {};                                           // the page's state

  // ---- assets: gzip + base64 inside classic scripts (a page opened from disk may run scripts, not fetch) ----
  async function gunzip(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function asset(name) {
    const a = A[name];
    if (!a) throw new Error(`asset ${name} is missing: rebuild the page with \`make web\``);
    const bytes = await gunzip(a.b64);
    const kind = { int32: Int32Array, float32: Float32Array, uint8: Uint8Array }[a.meta.dtype];
    if (!kind) return bytes;
    return { data: new kind(bytes.buffer, 0, bytes.byteLength / kind.BYTES_PER_ELEMENT), shape: a.meta.shape };
  }

  // ---- the rate grid (minist.models.rates.BetaGrid) ----
  const G = META.grid;
  const betaOf = (i) => G.beta_min * Math.pow(2, i / G.steps);
  const indexOf = (beta) => Math.min(G.levels - 1, Math.max(0, Math.round(G.steps * Math.log2(beta / G.beta_min))));

  function roundHalfEven(v) {                            // torch.round / numpy.rint
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function rateTables(i) {
    const [, C, L] = S.cdfs.shape;
    return {
      cdfs: S.cdfs.data.subarray(i * C * L, (i + 1) * C * L), stride: L,
      lengths: S.lengths.data.subarray(i * C, (i + 1) * C), offsets: S.offsets.data.subarray(i * C, (i + 1) * C),
      medians: S.medians.data.subarray(i * C, (i + 1) * C), gains: S.gains.data.subarray(i * C, (i + 1) * C),
      inv: S.inv.data.subarray(i * C, (i + 1) * C),
    };
  }

  // ---- the device: image → latent (once per image), latent → message at grid rate i ----
  async function latentOf(pixels) {                      // pixels: Uint8ClampedArray/Uint8Array (H, W, 3|4)
    const s = META.input_size;
    const step = pixels.length / (s * s);
    const x = new Float32Array(3 * s * s);
    for (let p = 0; p < s * s; p++) for (let c = 0; c < 3; c++) x[c * s * s + p] = f32(pixels[p * step + c] / 255);
    const out = await S.encoder.run({ image: new ort.Tensor("float32", x, [1, 3, s, s]) });
    return out.latent.data;
  }

  function symbolsAt(z, i) {
    const t = rateTables(i);
    const hw = META.latent[1] * META.latent[2];
    const sym = new Int32Array(z.length);
    for (let k = 0; k < z.length; k++) {
      const c = (k / hw) | 0;
      sym[k] = roundHalfEven(f32(f32(z[k] * t.gains[c]) - t.medians[c]));
    }
    return sym;
  }

  function messageAt(z, i) {
    const t = rateTables(i);
    const sym = symbolsAt(z, i);
    const payload = MinistRans.encode(sym, S.channel, t.cdfs, t.stride, t.lengths, t.offsets);
    const fields = new Uint8Array(5);
    fields.set(MinistWire.fromHex(META.fingerprint));
    fields[4] = i;
    const [C, h, w] = META.latent;
    return { message: MinistWire.message(META.codec_id, C, h, w, fields, payload), symbols: sym };
  }

  // ---- the server: message → checks → ẑ → logits ----
  function decodeMessage(data) {
    const m = MinistWire.parse(data, 5);
    const [C, h, w] = META.latent;
    if (m.codecId !== META.codec_id || m.c !== C || m.h !== h || m.w !== w)
      throw new Error(`message for codec ${m.codecId}, latent ${m.c}×${m.h}×${m.w}: not this model's`);
    if (MinistWire.toHex(m.fields.subarray(0, 4)) !== META.fingerprint) throw new Error("another model's message");
    const i = m.fields[4];
    if (i >= G.levels) throw new Error(`rate index ${i} is outside the grid`);
    const t = rateTables(i);
    const sym = MinistRans.decode(m.payload, C * h * w, S.channel, t.cdfs, t.stride, t.lengths, t.offsets);
    const zhat = new Float32Array(sym.length);
    for (let k = 0; k < sym.length; k++) {
      const c = S.channel[k];
      zhat[k] = f32(f32(sym[k] + t.medians[c]) * t.inv[c]);
    }
    return { zhat, index: i };
  }

  async function logitsOf(zhat) {
    const out = await S.server.run({ z_hat: new ort.Tensor("float32", zhat, [1, ...META.latent]) });
    return out.logits.data;
  }

  const argmax = (v) => v.reduce((b, x, k) => (x > v[b] ? k : b), 0);

  // ---- one move of the slider: the whole split, timed ----
  async function split(i) {
    const t0 = performance.now();
    const { message, symbols } = messageAt(S.z, i);
    const t1 = performance.now();
    const { zhat } = decodeMessage(message);
    const t2 = performance.now();
    const logits = await logitsOf(zhat);
    const t3 = performance.now();
    return { i, message, symbols, logits, ms: { encode: t1 - t0, decode: t2 - t1, server: t3 - t2 } };
  }

  async function move(i) {
    const t0 = performance.now();
    const r = await split(i);
    draw(r);
    r.ms.total = performance.now() - t0;
    $("move-ms").textContent = `${r.ms.total.toFixed(1)} ms (rANS encode ${r.ms.encode.toFixed(1)}, ` +
      `decode ${r.ms.decode.toFixed(1)}, decoder + tail ${r.ms.server.toFixed(1)}, drawing the rest)`;
    return r;
  }

  // the slider may fire faster than a move: run the latest request when the current move ends
  let busy = false, wanted = null;
  async function request(i) {
    wanted = i;
    if (busy) return;
    busy = true;
    try {
      while (wanted !== null) { const j = wanted; wanted = null; await move(j); }
    } catch (e) { fail(e); } finally { busy = false; }
  }

  // ---- drawing ----
  function draw(r) {
    const [C, h, w] = META.latent;
    const bytes = r.message.length;
    const beta = betaOf(r.i);
    const s = META.input_size;
    const link = META.links[$("link").value];
    const up = (n) => 1000 * (link.rtt_s / 2 + (8 * n) / link.uplink_bps);
    const rows = [
      ["β, as coded (grid rate " + r.i + " of " + (G.levels - 1) + ")", beta.toPrecision(3)],
      ["message, header and CRC included", bytes.toLocaleString("en") + " B"],
      ["bits per pixel of the 128 × 128 input", ((8 * bytes) / (s * s)).toFixed(3)],
      ["the raw image would be", (3 * s * s).toLocaleString("en") + " B"],
      [`uplink on ${link.name}: RTT/2 + 8·bytes / rate`, up(bytes).toFixed(1) + " ms"],
      ["… for the raw image", up(3 * s * s).toFixed(1) + " ms"],
      ["this move", "<span id='move-ms'></span>"],
    ];
    $("numbers").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");

    const p = softmax(r.logits);
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 5);
    const truth = S.label == null ? "" : `<p class="note">true class: <b>${META.classes[S.label]}</b></p>`;
    $("probs").innerHTML = truth + order.map((k, n) =>
      `<div class="bar${n === 0 ? " top" : ""}"><span>${META.classes[k]}</span>` +
      `<span class="fill" style="width:${Math.max(1, 160 * p[k])}px"></span>` +
      `<span class="v">${(100 * p[k]).toFixed(1)} %</span></div>`).join("") +
      (S.label == null ? `<p class="note">Your photo has no label. The student learnt ten kinds of clothing on ` +
        `photographs (Fashion-on-Photos): on anything else its answer is one of those ten.</p>` : "");

    const t = rateTables(r.i);
    const b = MinistRans.bits(r.symbols, S.channel, t.cdfs, t.stride, t.lengths, t.offsets);
    const map = new Float32Array(h * w);
    for (let k = 0; k < b.length; k++) map[k % (h * w)] += b[k];
    drawMap(map, h, w);
    drawCurve(r.i, bytes);
  }

  function softmax(v) {
    const m = Math.max(...v);
    const e = Array.from(v, (x) => Math.exp(x - m));
    const sum = e.reduce((a, x) => a + x, 0);
    return e.map((x) => x / sum);
  }

  function colour(t) {                                     // 0 … 1 → dark blue … yellow (viridis-like)
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1);
    const k = Math.floor(x), f = x - k;
    return stops[k].map((c, j) => Math.round(c + f * (stops[k + 1][j] - c)));
  }

  function drawMap(map, h, w) {
    const cv = $("bitsmap");
    const ctx = cv.getContext("2d");
    const cell = cv.width / w;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const [r, g, b] = colour(map[y * w + x] / S.mapMax);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(x * cell, y * cell, Math.ceil(cell), Math.ceil(cell));
    }
    const total = map.reduce((a, v) => a + v, 0);
    $("bitsmap-scale").textContent = `colour: 0 … ${S.mapMax.toFixed(0)} bits per position (fixed per image); ` +
      `${total.toFixed(0)} bits in all, ${h} × ${w} positions × ${META.latent[0]} channels`;
  }

  function drawCurve(i, bytes) {
    const cv = $("curve");
    const dpr = window.devicePixelRatio || 1;
    const W = Math.max(280, cv.clientWidth || 640), narrow = W < 600, H = Math.round(W * (narrow ? 0.85 : 0.5));
    if (cv.width !== Math.round(W * dpr)) { cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr); }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const L = 52, R = 12, T = 14, B = 40;
    const cur = META.curves;
    ctx.clearRect(0, 0, W, H);
    const all = [...cur.variable, ...cur.per_beta, ...cur.jpeg, ...cur.webp];
    const x0 = Math.log10(Math.min(...all.map((p) => p[0])) * 0.85);
    const x1 = Math.log10(Math.max(...all.map((p) => p[0])) * 1.15);
    const y0 = cur.teacher - 15, y1 = cur.teacher + 2;
    const X = (kb) => L + ((Math.log10(kb) - x0) / (x1 - x0)) * (W - L - R);
    const Y = (acc) => T + (1 - (Math.max(y0, acc) - y0) / (y1 - y0)) * (H - T - B);
    ctx.strokeStyle = "#ddd"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
    ctx.font = `${narrow ? 10 : 12}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    for (const kb of [0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5]) {
      if (Math.log10(kb) < x0 || Math.log10(kb) > x1) continue;
      ctx.beginPath(); ctx.moveTo(X(kb), T); ctx.lineTo(X(kb), H - B); ctx.stroke();
      ctx.fillText(String(kb), X(kb), H - B + 15);
    }
    ctx.fillText(narrow ? `KB per image (below ${y0.toFixed(1)} %: on the axis)`
                        : `KB per image (log scale; accuracy below ${y0.toFixed(1)} % sits on the bottom axis)`,
                 L + (W - L - R) / 2, H - 8);
    ctx.textAlign = "right";
    for (let a = Math.ceil(y0 / 5) * 5; a <= y1; a += 5) {
      ctx.beginPath(); ctx.moveTo(L, Y(a)); ctx.lineTo(W - R, Y(a)); ctx.stroke();
      ctx.fillText(a + " %", L - 6, Y(a) + 4);
    }
    ctx.textAlign = "left";
    ctx.setLineDash([5, 4]); ctx.strokeStyle = "#333";
    ctx.beginPath(); ctx.moveTo(L, Y(cur.teacher)); ctx.lineTo(W - R, Y(cur.teacher)); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#333";
    ctx.fillText(`teacher on the whole image, ${cur.teacher} %`, L + 6, Y(cur.teacher) - 5);
    const series = [["JPEG + teacher", cur.jpeg, "#d95f02"], ["WebP + teacher", cur.webp, "#7570b3"],
                    ["per-β students", cur.per_beta, "#999"], ["variable-rate student (this page)", cur.variable, "#0b6e4f"]];
    series.forEach(([name, pts, col], k) => {
      const ps = [...pts].sort((a, b) => a[0] - b[0]);
      ctx.strokeStyle = col; ctx.fillStyle = col; ctx.lineWidth = 2;
      ctx.beginPath();
      ps.forEach((p, n) => (n ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
      ctx.stroke();
      for (const p of ps) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.5, 0, 7); ctx.fill(); }
      const ly = H - B - 16 * (4 - k);                      // the legend, bottom right (the curves live up top)
      const lx = W - R - (narrow ? 190 : 230);
      ctx.fillRect(lx, ly - 4, 16, 3);
      ctx.fillText(narrow ? name.replace(" (this page)", "") : name, lx + 22, ly);
    });
    // this rate's measured point (the nearest grid rate of the shipped fine grid) and this image's message
    const near = cur.variable.reduce((b, p) => (Math.abs(p[2] - i) < Math.abs(b[2] - i) ? p : b));
    ctx.strokeStyle = "#0b6e4f"; ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.arc(X(near[0]), Y(near[1]), 7, 0, 7); ctx.stroke();
    const kb = bytes / 1024;
    ctx.setLineDash([2, 3]); ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(kb), Y(y1) + 22); ctx.lineTo(X(kb), H - B); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#000";
    const right = X(kb) < W / 2;
    ctx.textAlign = right && !narrow ? "left" : "right";
    const tx = narrow ? W - R - 4 : X(kb) + (right ? 6 : -6);      // a phone: the empty middle right
    const ty = narrow ? Y(cur.teacher - 7) : H - B - 90;
    ctx.fillText(`this message: ${kb.toFixed(2)} KB`, tx, ty);
    ctx.fillText(`circle: β ${betaOf(near[2]).toPrecision(2)} on ${cur.n.toLocaleString("en")} val images,`, tx, ty + 14);
    ctx.fillText(`${near[1]} % at ${near[0].toFixed(2)} KB on average`, tx, ty + 28);
    ctx.textAlign = "left";
  }

  function drawImage(pixels, canvas) {
    const s = META.input_size;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(s, s);
    const step = pixels.length / (s * s);
    for (let p = 0; p < s * s; p++) {
      for (let c = 0; c < 3; c++) img.data[4 * p + c] = pixels[p * step + c];
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  // ---- choosing an image ----
  async function useImage(pixels, label) {
    S.pixels = pixels;
    S.label = label;
    drawImage(pixels, $("image"));
    S.z = await latentOf(pixels);
    const top = symbolsAt(S.z, 0);                          // the colour scale: this image at its highest rate
    const t = rateTables(0);
    const b = MinistRans.bits(top, S.channel, t.cdfs, t.stride, t.lengths, t.offsets);
    const hw = META.latent[1] * META.latent[2];
    const map = new Float32Array(hw);
    for (let k = 0; k < b.length; k++) map[k % hw] += b[k];
    S.mapMax = Math.max(1, ...map);
    await request(sliderIndex());
  }

  function example(n) {
    const s = META.input_size;
    return S.examples.data.subarray(n * s * s * 3, (n + 1) * s * s * 3);
  }

  async function usePhoto(file) {
    const s = META.input_size;
    const bmp = await createImageBitmap(file);
    const cv = document.createElement("canvas");
    cv.width = cv.height = s;
    const side = Math.min(bmp.width, bmp.height);          // a centred square, scaled to the input size
    cv.getContext("2d").drawImage(bmp, (bmp.width - side) / 2, (bmp.height - side) / 2, side, side, 0, 0, s, s);
    const rgba = cv.getContext("2d").getImageData(0, 0, s, s).data;
    document.querySelectorAll("#examples button").forEach((b) => b.classList.remove("on"));
    await useImage(rgba, null);
  }

  const sliderBeta = () => G.beta_min * Math.pow(2, (G.doublings * Number($("beta").value)) / 1000);
  const sliderIndex = () => indexOf(sliderBeta());

  function showBeta() {
    const b = sliderBeta(), i = indexOf(b);
    $("beta-value").textContent = `β = ${b.toPrecision(3)} → grid rate ${i}, β ${betaOf(i).toPrecision(3)}`;
  }

  function fail(e) {
    console.error(e);
    $("status").innerHTML = `<span class="error">${e.message || e}</span>`;
    window.MINIST_SELFTEST = window.MINIST_SELFTEST || { error: String(e && e.stack || e) };
  }

  // ---- start ----
  async function init() {
    const t0 = performance.now();
    if (typeof ort === "undefined") throw new Error("ONNX Runtime Web did not load (ort.wasm.min.js missing)");
    if (typeof DecompressionStream === "undefined") throw new Error("this browser lacks DecompressionStream: use a " +
      "browser from 2023 or later (Chrome 80, Firefox 113, Safari 16.4)");
    ort.env.wasm.numThreads = 1;                           // no cross-origin isolation on a static host or disk
    ort.env.wasm.wasmBinary = await asset("wasm");
    const glue = await asset("mjs");
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([glue], { type: "text/javascript" })) };
    const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    S.encoder = await ort.InferenceSession.create(await asset("encoder"), opts);
    S.server = await ort.InferenceSession.create(await asset("server"), opts);
    S.cdfs = await asset("rate_cdfs"); S.lengths = await asset("rate_lengths"); S.offsets = await asset("rate_offsets");
    S.medians = await asset("rate_medians"); S.gains = await asset("gains"); S.inv = await asset("inv_gains");
    S.examples = await asset("examples");
    const [C, h, w] = META.latent;
    S.channel = new Int32Array(C * h * w);
    for (let k = 0; k < S.channel.length; k++) S.channel[k] = (k / (h * w)) | 0;

    for (const [key, l] of Object.entries(META.links)) {
      const o = document.createElement("option");
      o.value = key; o.textContent = l.name; if (key === "4g") o.selected = true;
      $("link").appendChild(o);
    }
    const showSource = () => ($("link-source").textContent = META.links[$("link").value].source);
    showSource();
    META.examples.labels.forEach((y, n) => {
      const b = document.createElement("button");
      b.title = `val image ${META.examples.val_indices[n]}: ${META.classes[y]}`;
      const cv = document.createElement("canvas");
      cv.width = cv.height = META.input_size;
      drawImage(example(n), cv);
      b.appendChild(cv);
      b.onclick = () => {
        document.querySelectorAll("#examples button").forEach((x) => x.classList.remove("on"));
        b.classList.add("on");
        useImage(example(n), y).catch(fail);
      };
      $("examples").appendChild(b);
    });
    $("examples").firstChild.classList.add("on");
    $("beta").addEventListener("input", () => { showBeta(); request(sliderIndex()); });
    $("link").addEventListener("change", () => { showSource(); request(sliderIndex()); });
    $("file").addEventListener("change", (e) => e.target.files[0] && usePhoto(e.target.files[0]).catch(fail));
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault(); drop.classList.remove("over");
      if (e.dataTransfer.files[0]) usePhoto(e.dataTransfer.files[0]).catch(fail);
    });
    showBeta();
    await useImage(example(0), META.examples.labels[0]);
    S.loadMs = performance.now() - t0;
    $("status").textContent = `Ready in ${(S.loadMs / 1000).toFixed(1)} s: ONNX Runtime Web ${ort.env.versions.web}` +
      ` (WebAssembly, one thread). Move the slider.`;
  }

  // ---- the self-test (?selftest): what tests/test_web.py compares with minist's Python halves ----
  async function selftest(every) {
    const out = { images: [], loadMs: S.loadMs, moves: [] };
    for (let n = 0; n < META.examples.labels.length; n++) {
      const z = await latentOf(example(n));
      const messages = [], predictions = {}, logits = {};
      for (let i = 0; i < G.levels; i++) messages.push(MinistWire.toHex(messageAt(z, i).message));
      for (let i = 0; i < G.levels; i++) {
        if (i % every !== 0 && i !== G.levels - 1) continue;
        const { zhat } = decodeMessage(MinistWire.fromHex(messages[i]));
        const l = await logitsOf(zhat);
        predictions[i] = argmax(l);
        logits[i] = Array.from(l);
      }
      out.images.push({ messages, predictions, logits });
    }
    // slider moves through the page's own path (encode, decode, decoder + tail, drawing), on the first example
    await useImage(example(0), META.examples.labels[0]);
    for (let k = 0; k < 40; k++) {
      const i = Math.round((k * 37) % G.levels);
      const t0 = performance.now();
      const r = await move(i);
      out.moves.push({ i, ms: performance.now() - t0, parts: r.ms });
    }
    return out;
  }

  const params = new URLSearchParams(location.search);
  init().then(async () => {
    if (params.has("selftest")) window.MINIST_SELFTEST = await selftest(Number(params.get("every") || 8));
  }).catch(fail);
})();
