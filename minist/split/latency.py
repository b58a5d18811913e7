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

from .. import checkpoint, image_formats
from ..models.halves import DeviceNet
from .channel import PRESETS
from .protocol import FRAME_OVERHEAD

REPLY_BYTES = 64   # a RESULT frame with the label and a few logits, roughly


def _time_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return 1000 * float(np.median(times))


@torch.no_grad()
def measure_strategies(student, teacher, images, repeats: int = 5, jpeg_quality: int = 75) -> list[dict]:
    """Median component times (ms, batch 1, this machine's CPU) and mean bytes per strategy."""
    student.eval()
    teacher.eval()
    device_part, server_part = student.split()
    xs = [x.unsqueeze(0) for x in images]
    rows = []

    msgs = [device_part(x) for x in xs]
    rows.append({"strategy": "Entropic Student",
                 "device_ms": float(np.mean([_time_ms(lambda x=x: device_part(x), repeats) for x in xs])),
                 "bytes": float(np.mean([len(m) for m in msgs])) + FRAME_OVERHEAD,
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
