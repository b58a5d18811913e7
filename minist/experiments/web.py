"""The β explorer as a static web page: the whole split of the variable-rate student runs in the browser.

``minist web --out build/web`` (``make web``) writes a folder that opens from disk (``file://``, a USB stick) or
any static host, with no server code and nothing fetched from the network:

    index.html, explorer.css         the page
    explorer.js, rans.js, wire.js    the UI; CompressAI's rANS coder (encoder and decoder) and minist's message
                                     format, ported to JavaScript (byte-identical: the page's self-test checks it)
    ort.wasm.min.js                  ONNX Runtime Web (npm ``onnxruntime-web``, pinned by web/package-lock.json)
    assets/*.js                      the binaries, gzip + base64 inside classic scripts (``file://`` pages may not
                                     fetch): the runtime's WebAssembly, encoder.onnx, server.onnx (decoder + the
                                     teacher's tail), the coding tables and gains of every grid rate, the example
                                     images (val images, raw pixels), the shipped curves and the links
    reference.json                   what minist's Python device and server make of the example images: every
                                     message (hex) at every grid rate, and the prediction at every 8th rate

``server.onnx`` keeps the weights the Python server runs: BatchNorm is exported as its per-channel scale and shift
(not folded into the convolutions), so the convolution weights stay the shipped fp16 values and are stored as fp16
with a Cast to float32 (exact), which halves the page. The page computes in float32 like the server.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data as mdata
from .. import pretrained
from ..export import onnx_bytes, require_onnx
from ..models.halves import TAIL
from ..split.channel import PRESETS

#: the page's sources and its npm project (``web/`` at the repository's top level)
WEB_SOURCE = Path(__file__).resolve().parents[2] / "web"
SOURCES = ("index.html", "explorer.css", "explorer.js", "rans.js", "wire.js")
RUNTIME = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
EXAMPLES = 6                  # the first val image of each of the first six classes
PREDICT_EVERY = 8             # reference predictions at every 8th grid rate (the bytes: at every rate)


class _Affine(nn.Module):
    """A BatchNorm2d in eval mode as its per-channel scale and shift (fp32), so the exporter keeps it apart."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        with torch.no_grad():
            scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
            shift = bn.bias.float() - bn.running_mean.float() * scale
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


class ServerNet(nn.Module):
    """ẑ (1, C, h, w) → logits: the student's decoder and the teacher's tail, as ``ServerPart`` runs them after
    decoding (BatchNorm as :class:`_Affine`)."""

    def __init__(self, student):
        super().__init__()
        self.decoder = copy.deepcopy(student.decoder)
        self.tail = nn.Sequential(*(copy.deepcopy(getattr(student, n)) for n in TAIL))
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.BatchNorm2d):
                    setattr(parent, name, _Affine(child))
        self.eval()

    def forward(self, z_hat):
        return self.tail(self.decoder(z_hat))


def _half_storage(model_bytes: bytes, min_size: int = 1024) -> bytes:
    """Store every large float32 initializer whose values are exactly fp16 as fp16 + a Cast node (lossless)."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load_from_string(model_bytes)
    g = m.graph
    casts = []
    for init in list(g.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.size < min_size or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        half = numpy_helper.from_array(a.astype(np.float16), init.name + "_fp16")
        g.initializer.remove(init)
        g.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
    for node in reversed(casts):
        g.node.insert(0, node)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def server_onnx_bytes(student, latent: tuple[int, int, int]) -> bytes:
    """The server's network (ẑ → logits) as ONNX, opset 17, fp16 storage where exact."""
    require_onnx()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(ServerNet(student), (torch.zeros(1, *latent),), buf, dynamo=False, opset_version=17,
                          input_names=["z_hat"], output_names=["logits"])
    return _half_storage(buf.getvalue())


def example_images(n: int = EXAMPLES):
    """The first val image of each of the first ``n`` classes (a fixed rule, no choosing): uint8 (n, H, W, 3),
    labels, val indices."""
    val = mdata.load("fashion-on-photos", split="val")
    picked, seen = [], set()
    for i in range(len(val)):
        x, y = val[i]
        y = int(y)
        if y < n and y not in seen:
            seen.add(y)
            picked.append((y, i, x))
        if len(seen) == n:
            break
    picked.sort()
    pixels = np.stack([(x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for _, _, x in picked])
    for (_, _, x), p in zip(picked, pixels):           # the page computes p / 255 in float32: the same tensor
        if not torch.equal(torch.from_numpy(p).permute(2, 0, 1).float() / 255.0, x):
            raise RuntimeError("a val image is not uint8 / 255: the page could not reproduce it exactly")
    return pixels, [y for y, _, _ in picked], [i for _, i, _ in picked], list(val.classes)


@torch.no_grad()
def reference(student, pixels: np.ndarray, every: int = PREDICT_EVERY) -> dict:
    """What the Python halves make of ``pixels``: the message at every grid rate (hex), the logits at every
    ``every``-th rate and at the top one."""
    device, server = student.split()
    grid = student.codec.grid
    out = []
    for p in pixels:
        x = torch.from_numpy(p).permute(2, 0, 1).float().div(255.0)[None]
        z = device.latent(x)
        msgs = [device.message(z, grid.beta(i)) for i in range(grid.levels)]
        idx = sorted(set(range(0, grid.levels, every)) | {grid.levels - 1})
        logits = {i: server(msgs[i], trusted=True)[0].tolist() for i in idx}
        out.append({"messages": [m.hex() for m in msgs],
                    "predictions": {str(i): int(np.argmax(v)) for i, v in logits.items()},
                    "logits": {str(i): [round(float(t), 5) for t in v] for i, v in logits.items()}})
    return {"levels": grid.levels, "images": out}


def _curves() -> dict:
    """The shipped rate–accuracy curves the page draws (KB = 1024 B, headers included)."""
    res, vres = pretrained.results(), pretrained.variable_results()
    pick = lambda pts, key: [[round(p["kb_mean"], 4), p["accuracy"], p.get(key)] for p in pts]   # noqa: E731
    fine = [[round(p["kb_mean"], 4), p["accuracy"], p["index"]] for p in vres["fine"]]
    return {"teacher": res["teacher_accuracy"], "n": vres["n"],
            "variable": fine,
            "per_beta": pick(pretrained.points(res, "entropic"), "value"),
            "jpeg": pick(pretrained.points(res, "jpeg"), "value"),
            "webp": pick(pretrained.points(res, "webp"), "value")}


def _asset(name: str, blob: bytes, meta: dict | None = None) -> str:
    """A classic script that registers one gzip + base64 binary under ``name`` (pages opened from disk may not
    fetch, but may run scripts)."""
    b64 = base64.b64encode(gzip.compress(blob, 9, mtime=0)).decode()
    return f'MINIST_ASSET({json.dumps(name)}, {json.dumps(meta or {})}, "{b64}");\n'


def _array(name: str, a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    dtype = {np.dtype(np.int32): "int32", np.dtype(np.float32): "float32", np.dtype(np.uint8): "uint8"}[a.dtype]
    return _asset(name, a.astype(a.dtype.newbyteorder("<")).tobytes(), {"dtype": dtype, "shape": list(a.shape)})


def build(out="build/web", student=None, source=None, with_reference: bool = True) -> dict:
    """Write the page into ``out`` (replaced as a whole); return its size per part in bytes."""
    source = Path(source or WEB_SOURCE)
    dist = source / "node_modules" / "onnxruntime-web" / "dist"
    missing = [s for s in SOURCES if not (source / s).is_file()]
    if missing:
        raise FileNotFoundError(f"the page's sources {missing} are missing from {source}: run from a clone of minist")
    if not all((dist / r).is_file() for r in RUNTIME):
        raise FileNotFoundError(f"ONNX Runtime Web is not installed in {source / 'node_modules'}: run "
                                f"`npm ci --prefix {source}` (the npm registry, once; `make web` does it)")
    student = student or pretrained.variable_student()
    student.eval()
    codec = student.codec
    c = codec.channels
    size = int(student.teacher_config.image_size)
    h, w = student.latent_size(size)
    t = codec.bundle_tables()
    pixels, labels, indices, classes = example_images()
    meta = {"format": "minist-web", "version": 1, "codec_id": codec.codec_id, "input_size": size,
            "latent": [c, h, w], "fingerprint": codec.fingerprint().hex(),
            "grid": {"beta_min": codec.grid.beta_min, "doublings": codec.grid.doublings, "steps": codec.grid.steps,
                     "levels": codec.grid.levels},
            "classes": classes, "examples": {"labels": labels, "val_indices": indices},
            "curves": _curves(),
            "links": {k: {"name": ch.name, "uplink_bps": ch.uplink_bps, "rtt_s": ch.rtt_s, "source": ch.source}
                      for k, ch in PRESETS.items()}}
    with torch.no_grad():    # g' one rate at a time, as the server's ``output`` computes it for a message
        inv = np.stack([codec.gains(torch.tensor([i]))[1][0].float().numpy() for i in range(codec.grid.levels)])
    parts = {
        "runtime.js": (_asset("wasm", (dist / RUNTIME[2]).read_bytes())
                       + _asset("mjs", (dist / RUNTIME[1]).read_bytes())),
        "encoder.js": _asset("encoder", onnx_bytes(student, size)),
        "server.js": _asset("server", server_onnx_bytes(student, (c, h, w))),
        "tables.js": "".join(_array(k, t[k]) for k in ("rate_cdfs", "rate_lengths", "rate_offsets", "rate_medians",
                                                       "gains")) + _array("inv_gains", inv.astype(np.float32)),
        "examples.js": _array("examples", pixels),
        "meta.js": f"MINIST_META = {json.dumps(meta)};\n",
    }
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "assets").mkdir(parents=True)
    for s in SOURCES:
        shutil.copyfile(source / s, tmp / s)
    shutil.copyfile(dist / RUNTIME[0], tmp / RUNTIME[0])
    (tmp / "THIRD_PARTY.txt").write_text("ort.wasm.min.js and assets/runtime.js: ONNX Runtime Web "
                                         f"(npm onnxruntime-web {_ort_version(source)}), MIT licence, "
                                         "Copyright (c) Microsoft Corporation.\n")
    for name, text in parts.items():
        (tmp / "assets" / name).write_text(text)
    if with_reference:
        ref = reference(student, pixels)
        ref["digest"] = hashlib.sha256(pixels.tobytes()).hexdigest()
        (tmp / "reference.json").write_text(json.dumps(ref))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return sizes(out)


def _ort_version(source: Path) -> str:
    return json.loads((source / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"]


def sizes(folder) -> dict:
    """Bytes per file of the page (reference.json, the test's, is not part of it) and the total."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != "reference.json"}
    return {"files": files, "total": sum(files.values())}


def chromium() -> str | None:
    """A Chromium to run the page in (``MINIST_CHROMIUM``, else Debian's ``chromium``), or None."""
    import os
    for path in (os.environ.get("MINIST_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if path and Path(path).is_file():
            return path
    return None


@contextlib.contextmanager
def _page(folder, query: str = "", browser: str | None = None, **page_options):
    """``folder/index.html`` (from disk) open in headless Chromium through Playwright; yields (page, the page's
    errors, every URL it asked for that is not a file, blob or data URL)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError("running the page needs Playwright: pip install playwright (no browser download: "
                           "it drives the system's Chromium)") from e
    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no Chromium found: install Debian's `chromium` (apt-get install chromium) or set "
                           "MINIST_CHROMIUM to a Chromium or Chrome binary")
    errors, requests = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        try:
            page = b.new_page(**page_options)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "blob:", "data:"))
                    else None)
            page.goto((Path(folder).resolve() / "index.html").as_uri() + query)
            yield page, errors, requests
        finally:
            b.close()


def run_selftest(folder, every: int = PREDICT_EVERY, timeout_s: float = 600.0, browser: str | None = None) -> dict:
    """Open ``folder/index.html?selftest`` from disk in headless Chromium (Playwright) and return the page's
    ``MINIST_SELFTEST``: its messages at every grid rate, predictions and logits at every ``every``-th, 40 timed
    slider moves, and ``network_requests`` (every URL it asked for that is not a file, blob or data URL).
    Raises RuntimeError with the page's error if it fails."""
    with _page(folder, f"?selftest&every={int(every)}", browser) as (page, errors, requests):
        page.wait_for_function("window.MINIST_SELFTEST !== undefined", timeout=timeout_s * 1000)
        result = page.evaluate("window.MINIST_SELFTEST")
    if "error" in result or errors:
        raise RuntimeError(f"the page failed: {result.get('error') or errors}")
    result["network_requests"] = requests          # what the page asked of a network: nothing, if it is offline
    return result


def compare(page: dict, ref: dict) -> dict:
    """Equality counts of the page's self-test against minist's Python halves (``reference.json``)."""
    msgs = [(a == b) for pi, ri in zip(page["images"], ref["images"]) for a, b in zip(pi["messages"], ri["messages"])]
    preds, diff = [], 0.0
    for pi, ri in zip(page["images"], ref["images"]):
        for k, label in ri["predictions"].items():
            preds.append(pi["predictions"].get(k) == label)
            diff = max(diff, float(np.abs(np.asarray(pi["logits"][k]) - np.asarray(ri["logits"][k])).max()))
    ms = np.asarray([m["ms"] for m in page["moves"]])
    return {"messages_equal": int(sum(msgs)), "messages": len(msgs), "images": len(ref["images"]),
            "levels": ref["levels"], "predictions_equal": int(sum(preds)), "predictions": len(preds),
            "max_logit_difference": diff, "load_ms": float(page["loadMs"]), "moves": len(ms),
            "move_ms_median": float(np.median(ms)), "move_ms_p95": float(np.percentile(ms, 95)),
            "move_ms_max": float(ms.max())}


def screenshot(folder, path, position: int = 300, width: int = 1100, browser: str | None = None) -> Path:
    """A PNG of the built page with the slider at ``position`` (0 … 1000: β_min … β_max on a log scale)."""
    with _page(folder, "", browser, viewport={"width": width, "height": 900}) as (page, _, _):
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')", timeout=120_000)
        page.eval_on_selector("#beta", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }",
                              int(position))
        page.wait_for_function("document.getElementById('move-ms') && "
                               "document.getElementById('move-ms').textContent !== ''", timeout=60_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True)
    return Path(path)
