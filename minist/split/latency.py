"""Where the time goes: device compute, transmission, server compute — per strategy.

Each strategy is measured once on this machine as three numbers: device
milliseconds, bytes sent, server milliseconds. End-to-end latency at any link
is then ``device · slowdown + RTT + 8 · bytes / rate + server`` (plus a small
reply), so sliders can redraw it without re-running a model. Strategies:

* **Entropic Student** — encoder + rANS on the device, message up, decode + decoder + tail on the server;
* **teacher on device** — the whole teacher on the device, nothing sent;
* **JPEG / WebP + teacher** — compress the image, send it, run the teacher on the server;
* **layer1 features** — the teacher's stem + layer1 on the device, its output sent as float32 / 8-bit.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import torch
from PIL import Image

from .. import checkpoint, image_formats
from ..config import BottleneckConfig
from ..data.photos import load_photo, split_photos
from ..models.halves import DeviceNet
from ..models.student import EntropicStudent
from ..models.teacher import build_teacher
from .channel import PRESETS
from .protocol import FRAME_OVERHEAD

REPLY_BYTES = 64   # a RESULT frame with the label and a few logits, roughly
#: the paper's Entropic Student on ImageNet at one point of SC2's re-run (docs/paper_scale.md §4, read off its
#: figure): a 5.3-KB message for 74.8 % top-1, 1.3 pt below the ResNet-50 teacher's 76.13 %
PAPER_MESSAGE_KB, PAPER_MESSAGE_ACCURACY, PAPER_TEACHER_ACCURACY = 5.3, 74.8, 76.13


def _time_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return 1000 * float(np.median(times))


def paper_pair(seed: int = 0):
    """(student, teacher) of the paper preset — ResNet-50 at 224 px and the paper's encoder (C = 24) — untrained,
    for timing: their compute does not depend on the weights. Their bytes do, so a latency map of this pair takes
    the message size from the paper (:data:`PAPER_MESSAGE_KB`, ``measure_strategies(message_bytes=…)``)."""
    torch.manual_seed(seed)
    teacher = build_teacher("paper").eval()
    student = EntropicStudent(teacher, BottleneckConfig.preset_config("paper")).eval()
    student.update(force=True)
    return student, teacher


def natural_images(size: int = 224, n: int = 4) -> list[torch.Tensor]:
    """Centre crops (``size`` px) of real photographs — the val background photos that ship with scikit-image and
    friends — as (3, size, size) floats in [0, 1]: JPEG's and WebP's bytes on them are real ones."""
    out = []
    for name in split_photos("val")[:n]:
        p = load_photo(name)
        h, w = p.shape[:2]
        s = min(h, w)
        crop = np.asarray(Image.fromarray(p[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2])
                          .resize((size, size), Image.BILINEAR))
        out.append(torch.from_numpy(crop.copy()).permute(2, 0, 1).float().div(255.0))
    return out


@torch.no_grad()
def measure_strategies(student, teacher, images, repeats: int = 5, jpeg_quality: int = 75,
                       message_bytes: float | None = None) -> list[dict]:
    """Median component times (ms, batch 1, this machine's CPU) and mean bytes per strategy.

    ``message_bytes``: the student's message size to use instead of its own (an untrained :func:`paper_pair`'s
    bytes mean nothing; its compute is real)."""
    student.eval()
    teacher.eval()
    device_part, server_part = student.split()
    xs = [x.unsqueeze(0) for x in images]
    rows = []

    msgs = [device_part(x) for x in xs]
    sent = float(np.mean([len(m) for m in msgs])) if message_bytes is None else float(message_bytes)
    rows.append({"strategy": "Entropic Student",
                 "device_ms": float(np.mean([_time_ms(lambda x=x: device_part(x), repeats) for x in xs])),
                 "bytes": sent + FRAME_OVERHEAD,
                 "server_ms": float(np.mean([_time_ms(lambda m=m: server_part(m), repeats) for m in msgs]))})
    rows.append({"strategy": "teacher on device",
                 "device_ms": float(np.mean([_time_ms(lambda x=x: teacher(x), repeats) for x in xs])),
                 "bytes": 0.0, "server_ms": 0.0})
    for fmt, name in (("jpeg", "JPEG"), ("webp", "WebP")):
        data = [image_formats.encode(x[0], fmt, jpeg_quality) for x in xs]
        rows.append({"strategy": f"{name} q{jpeg_quality} + teacher",
                     "device_ms": float(np.mean([_time_ms(lambda x=x, f=fmt: image_formats.encode(x[0], f,
                                                                                                   jpeg_quality),
                                                          repeats) for x in xs])),
                     "bytes": float(np.mean([len(d) for d in data])) + FRAME_OVERHEAD,
                     "server_ms": float(np.mean([_time_ms(lambda d=d: teacher(image_formats.decode(d).unsqueeze(0)),
                                                          repeats) for d in data]))})
    head = lambda x: teacher.features(x, ("layer1",))["layer1"]
    tail = lambda h: teacher.head(teacher.layer4(teacher.layer3(teacher.layer2(h))))
    feats = [head(x) for x in xs]
    for prec, nbytes in (("float32", 4), ("8-bit", 1)):
        rows.append({"strategy": f"layer1 features ({prec})",
                     "device_ms": float(np.mean([_time_ms(lambda x=x: head(x), repeats) for x in xs])),
                     "bytes": float(feats[0].numel() * nbytes) + FRAME_OVERHEAD,
                     "server_ms": float(np.mean([_time_ms(lambda h=h: tail(h), repeats) for h in feats]))})
    return rows


def _median_ms(fn, items, repeats: int = 3) -> float:
    """Median over ``items`` of :func:`_time_ms` of ``fn(item)``."""
    return float(np.median([_time_ms(lambda item=item: fn(item), repeats) for item in items]))


@torch.no_grad()
def timings(student, teacher, val_set, n: int = 20, beta: float | None = None, with_codecs: bool = True) -> dict:
    """Median ms on this machine: the device half (encoder + rANS), rANS alone (a retry at another rate), the
    server half, and (``with_codecs``) JPEG q10 encoding and decoding + the teacher (the codec senders' device and
    server)."""
    device, server = student.split()
    xs = [val_set[i][0].unsqueeze(0) for i in range(n)]
    msgs = [device(x, beta=beta) for x in xs]
    zs = [device.latent(x) for x in xs]
    out = {"device_ms": _median_ms(lambda x: device(x, beta=beta), xs),
           "rans_ms": _median_ms(lambda z: device.message(z, beta), zs),
           "server_ms": _median_ms(server, msgs)}
    if not with_codecs:
        return out
    jpegs = [image_formats.encode(x[0], "jpeg", 10) for x in xs]
    out["jpeg_device_ms"] = _median_ms(lambda x: image_formats.encode(x[0], "jpeg", 10), xs)
    out["jpeg_server_ms"] = _median_ms(lambda d: teacher(image_formats.decode(d).unsqueeze(0)), jpegs)
    return out


def end_to_end_ms(row: dict, uplink_bps: float, rtt_s: float, device_slowdown: float = 1.0,
                  downlink_bps: float | None = None) -> float:
    """Modelled end-to-end latency of one strategy on a link (ms); local inference sends nothing."""
    if row["bytes"] == 0:
        return row["device_ms"] * device_slowdown
    down = downlink_bps or uplink_bps
    wire = rtt_s + 8.0 * row["bytes"] / uplink_bps + 8.0 * REPLY_BYTES / down
    return row["device_ms"] * device_slowdown + 1000 * wire + row["server_ms"]


def crossover_bps(a: dict, b: dict, rtt_s: float, device_slowdown: float = 1.0) -> float | None:
    """Link rate (bit/s, both ways) above which strategy ``a`` is faster than ``b`` (None if never/always)."""
    # t(bw) = fixed + 8000 · (bytes + reply) / bw  (ms); solve t_a(bw) = t_b(bw)
    def parts(r):
        if r["bytes"] == 0:
            return r["device_ms"] * device_slowdown, 0.0
        return r["device_ms"] * device_slowdown + 1000 * rtt_s + r["server_ms"], 8000.0 * (r["bytes"] + REPLY_BYTES)
    fa, va = parts(a)
    fb, vb = parts(b)
    if math.isclose(fa, fb) or (va - vb) * (fb - fa) <= 0:
        return None
    return (va - vb) / (fb - fa)


SLOWDOWNS = (1, 2, 5, 10, 20, 50, 100)


def split_region(rows: list[dict], slowdowns=SLOWDOWNS, presets: dict | None = None) -> list[dict]:
    """For every link preset and device slowdown: the fastest strategy and the split's margin over the best
    other (ms; > 0: the split wins). ``rows`` from :func:`minist.split.latency.measure_strategies`."""
    es, others = rows[0], rows[1:]
    out = []
    for name, ch in (presets or PRESETS).items():
        for slow in slowdowns:
            t = {r["strategy"]: end_to_end_ms(r, ch.uplink_bps, ch.rtt_s, slow, ch.downlink_bps) for r in rows}
            best_other = min(others, key=lambda r: t[r["strategy"]])["strategy"]
            out.append({"link": name, "slowdown": slow, "fastest": min(t, key=t.get),
                        "split_ms": t[es["strategy"]], "best_other": best_other,
                        "margin_ms": t[best_other] - t[es["strategy"]]})
    return out


def region_table(rows: list[dict], slowdowns=SLOWDOWNS, presets: dict | None = None) -> str:
    """:func:`split_region` as text: per link (rows) and device slowdown (columns) the fastest strategy's initial
    (S = the Entropic Student's split, T = teacher on device, J/W = JPEG/WebP + the teacher on the server, L =
    layer1 features) and the split's margin over the best other strategy in ms (negative: it loses by that
    much); then the cells the split wins."""
    presets = presets or PRESETS
    region = split_region(rows, slowdowns, presets)
    lines = [f"{'link':>6} | " + " | ".join(f"{s:>4}× slower  " for s in slowdowns)]
    for name in presets:
        lines.append(f"{name:>6} | " + " | ".join(
            f"{'S' if r['fastest'] == rows[0]['strategy'] else r['fastest'][0].upper()} {r['margin_ms']:>+10.1f} ms"
            for r in region if r["link"] == name))
    wins = [r for r in region if r["margin_ms"] > 0]
    lines.append(f"\nthe split is fastest in {len(wins)} of {len(region)} cells"
                 + (": " + ", ".join(f"{r['link']} ×{r['slowdown']}" for r in wins) if wins else ""))
    return "\n".join(lines)


@torch.no_grad()
def device_cost(module, x: torch.Tensor) -> dict:
    """Parameters, FLOPs (torch's FlopCounterMode; a multiply-add counts 2) and peak activation memory.

    Peak memory is estimated as the largest input + output of any single leaf module
    during one forward pass, plus the parameters: what a layer-by-layer runtime must hold.
    """
    from torch.utils.flop_counter import FlopCounterMode
    params = sum(p.numel() for p in module.parameters())
    peak = 0

    def hook(m, inp, out):
        nonlocal peak
        size = sum(t.numel() * t.element_size() for t in inp if torch.is_tensor(t))
        size += out.numel() * out.element_size() if torch.is_tensor(out) else 0
        peak = max(peak, size)
    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    with FlopCounterMode(display=False) as counter:
        module(x)
    for h in handles:
        h.remove()
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    return {"parameters": params, "flops": int(counter.get_total_flops()),
            "peak_activation_bytes": int(peak), "parameter_bytes": int(param_bytes),
            "peak_memory_bytes": int(peak + param_bytes)}


def export_encoder(student, example: torch.Tensor, path=None) -> dict:
    """Export the device's network (normalise + encoder, image → latent) with ``torch.export``.

    rANS coding stays in CompressAI's C++ coder; the exported program is the part a
    device runtime would compile. Returns the file size, whether outputs match, and latency.
    """
    net = DeviceNet(student).eval()
    program = torch.export.export(net, (example,))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    if path is not None:
        checkpoint.atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
    buf.seek(0)
    loaded = torch.export.load(buf).module()
    with torch.no_grad():
        ref, out = net(example), loaded(example)
    return {"bytes": len(buf.getvalue()), "max_abs_diff": float((ref - out).abs().max()),
            "match": bool(torch.allclose(ref, out, atol=1e-5)),
            "eager_ms": _time_ms(lambda: net(example), 10), "exported_ms": _time_ms(lambda: loaded(example), 10)}
