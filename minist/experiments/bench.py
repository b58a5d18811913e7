"""Benchmarks that print a table (speed targets live here, never in timed unit tests).

``minist bench`` measures, on this machine:
* the Fashion-on-Photos training stream, images/s (one process, per task);
* the teacher's training step, images/s and CPU seconds per epoch, next to the
  stream's rate (the stream must not be the bottleneck);
* the shipped teacher's accuracy on the cached validation set.
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import json
import math
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch

from .. import checkpoint, pretrained, rd
from .. import data as mdata
from ..config import StudentTrainConfig, TeacherTrainConfig, mini_val_set
from ..data.synth import FashionOnPhotos
from ..engine import Engine
from ..evaluate import evaluate_accuracy, evaluate_student
from ..export import DEVICE_VENV, REPO, device_python, export_bundle, folder_mb
from ..losses import kd_loss
from ..models.bottleneck import Encoder
from ..models.codec import payload_bits
from ..models.student import EntropicStudent
from ..models.teacher import build_teacher
from ..plots import METHOD_LABELS
from ..recipes import stage1_optimizers, stage1_step
from ..split import PRESETS, SplitClient, SplitServer
from ..split.adaptive import TRACE_PRESETS, load_trace
from ..split.latency import (
    PAPER_MESSAGE_ACCURACY,
    PAPER_MESSAGE_KB,
    crossover_bps,
    device_cost,
    end_to_end_ms,
    export_encoder,
    measure_strategies,
    natural_images,
    paper_pair,
    region_table,
)
from ..utils import data_dir, get_device
from ..widgets import Explorer
from . import ceiling, photos, test_study, variable, web
from .sweep import ABLATION_ARMS, ABLATION_METHODS

#: every benchmark, by the name ``minist bench NAME`` runs: (function, part of ``minist bench all``)
BENCHMARKS: dict[str, tuple] = {}


def benchmark(name: str, in_all: bool = True):
    """Register a benchmark function (``fn(quick=False)``) under ``name``."""
    def register(fn):
        BENCHMARKS[name] = (fn, in_all)
        return fn
    return register


def _rate(fn, n: int) -> float:
    tic = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - tic)


def data_rate(task: str, n: int = 300, size: int = 128) -> float:
    ds = FashionOnPhotos("train", task, size=size)
    ds[0]
    return _rate(lambda i: ds[i], n)


def _engine(model, opt, aux=None, amp: bool = False) -> Engine:
    """The training engine around ``model``, for timing its steps (nothing is written)."""
    return Engine(model, opt, out=tempfile.gettempdir(), name="bench", config={}, aux=aux, amp=amp, progress=False)


def _batch(batch: int, size: int, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.rand(batch, 3, size, size).contiguous(memory_format=fmt), torch.randint(0, 10, (batch,))


def teacher_step_rate(batch: int = 64, steps: int = 5, size: int = 128, teacher_config: dict | None = None,
                      amp: bool = False, channels_last: bool = True) -> float:
    """Images/s of the teacher's training step through the engine (random images: speed does not depend on them)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_teacher("mini", **(teacher_config or {})).to(memory_format=fmt).train()
    engine = _engine(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), amp=amp)
    xy = _batch(batch, size, channels_last)

    def loss(b):
        with engine.autocast():
            return torch.nn.functional.cross_entropy(model(b[0]), b[1]), {}
    engine.train_step(xy, loss)
    return batch * _rate(lambda _: engine.train_step(xy, loss), steps)


def student_step_rates(batch: int = 32, steps: int = 3, size: int = 128, teacher_config: dict | None = None,
                       amp: bool = False, channels_last: bool = False) -> dict:
    """Images/s of the teacher's forward pass and of one stage-1 and one stage-2 training step (teacher forward
    included) through the engine, as the recipes run them; bf16 autocast (``amp``) covers the teacher, the
    decoder and the tail (the encoder and the prior stay fp32 inside the student's forward)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    cfg = StudentTrainConfig(beta=0.1, amp=amp)
    teacher = build_teacher("mini", **(teacher_config or {})).to(memory_format=fmt).eval().requires_grad_(False)
    student = EntropicStudent(teacher).to(memory_format=fmt).train()
    xy = _batch(batch, size, channels_last)
    opt, aux = stage1_optimizers(student, cfg)
    engine = _engine(student, opt, aux, amp)

    def forward(_):
        with torch.no_grad(), engine.autocast():
            teacher(xy[0])
    rates = {"teacher forward": batch * _rate(forward, steps)}
    step1 = stage1_step(student, teacher, cfg, engine, xy[0].device)
    engine.train_step(xy, step1)
    rates["stage 1 step"] = batch * _rate(lambda _: engine.train_step(xy, step1), steps)
    student.set_stage(2).train()
    engine = _engine(student, torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-3),
                     amp=amp)

    def step2(b):
        with torch.no_grad(), engine.autocast():
            t = teacher(b[0]).float()
        with engine.autocast():
            logits = student(b[0])["logits"].float()
        return kd_loss(logits, t, b[1]), {}
    engine.train_step(xy, step2)
    rates["stage 2 step"] = batch * _rate(lambda _: engine.train_step(xy, step2), steps)
    return rates


def _print_table(title: str, rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(title)
    print(f"{'what':<{width}} | value")
    print(f"{'-' * width}-|------")
    for k, v in rows:
        print(f"{k:<{width}} | {v}")
    print()


@torch.no_grad()
def _payload_study(student, teacher, val, n: int):
    """Per image: real payload bits vs Σ −log2 p, and whether the decoded latent equals the rounded one."""
    codec = student.codec
    med = codec._get_medians().detach().view(1, -1, 1, 1)
    ratios, big, exact, payloads = [], [], 0, []
    for i in range(n):
        z = student.encode(val[i][0].unsqueeze(0))
        data = codec.encode(z)
        exact += int(torch.equal(codec.decode(data), torch.round(z - med) + med))
        bits = float(codec.estimate_bits(z)[0])
        pay = payload_bits(data)
        payloads.append(pay / 8)
        ratios.append(pay / bits)
        if pay / 8 >= 200:
            big.append(pay / bits)
    subset = torch.utils.data.Subset(val, range(n))
    return ratios, big, exact, payloads, evaluate_student(student, subset), evaluate_accuracy(teacher, subset)


@benchmark("student")
def student_main(quick: bool = False) -> int:
    """Real payload vs estimated bits, decode exactness, stage speeds, accuracy at real bytes."""
    student, meta = pretrained.student("mini", with_meta=True)
    teacher = pretrained.teacher("mini")
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    n = 100 if quick else len(val)
    ratios, big, exact, payloads, res, t_acc = _payload_study(student, teacher, val, n)
    rates = student_step_rates(steps=1 if quick else 3)
    s1, s2 = rates["stage 1 step"], rates["stage 2 step"]
    cfg = StudentTrainConfig()
    rows = [
        (f"val images (real bytes, batch 1){' (quick)' if quick else ''}", f"{n}"),
        ("payload bits / estimated bits Σ−log2 p, mean", f"{sum(ratios) / len(ratios):.4f}"),
        ("same, payloads ≥ 200 B (target ≤ 1.02)",
         f"{sum(big) / len(big):.4f} (max {max(big):.4f}, {len(big)} images)" if big else "no payload ≥ 200 B"),
        ("payload bytes mean (rANS only)", f"{sum(payloads) / n:.1f} B"),
        ("our header + CRC per message", f"{student.header_bytes} B"),
        ("decoded latent == rounded latent, every element", f"{exact}/{n} images"),
        (f"student β = {meta['beta']}: accuracy at real bytes", f"{res['accuracy']:.2f} %"),
        ("teacher accuracy, same images", f"{t_acc:.2f} %  (gap {t_acc - res['accuracy']:.2f} pt; target ≤ 2)"),
        ("KB per image (mean ± std, header included)", f"{res['kb_mean']:.4f} ± {res['kb_std']:.4f} KB"),
        ("bits per pixel (header included)", f"{res['bpp']:.4f} bpp"),
        ("device-side parameters (encoder + prior)", f"{student.device_parameters():,d}"),
        ("stage 1 step, CPU", f"{s1:.0f} img/s → {cfg.train_length / s1:.0f} s/epoch ({cfg.train_length} images)"),
        ("stage 2 step, CPU", f"{s2:.0f} img/s → {cfg.train_length / s2:.0f} s/epoch ({cfg.train_length} images)"),
    ]
    if meta.get("history"):
        for stage in (1, 2):
            h = [r for r in meta["history"] if r["stage"] == stage]
            if h:
                rows.append((f"stage {stage} epoch as trained (recorded, incl. stream + eval)",
                             f"{sum(r['seconds'] for r in h) / len(h):.0f} s on {meta['device']}"))
    _print_table(f"minist student benchmark — torch {torch.__version__}, {torch.get_num_threads()} threads", rows)
    return 0


@torch.no_grad()
@benchmark("split")
def split_main(quick: bool = False) -> int:
    """End-to-end latency per strategy and link preset (measured components + channel model), the region
    where the split wins, a real round trip through the TCP server per preset, and the device's cost."""
    student = pretrained.student("mini")
    teacher = pretrained.teacher("mini")
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    images = [val[i][0] for i in range(4 if quick else 20)]
    rows = measure_strategies(student, teacher, images, repeats=3 if quick else 10)
    names = list(PRESETS)
    width = max(len(r["strategy"]) for r in rows)
    print(f"minist split benchmark — end-to-end ms per image (device + RTT + transfer + server), this CPU as the "
          f"device, {len(images)} val images")
    print(f"{'strategy':<{width}} | {'device ms':>9} | {'bytes':>8} | {'server ms':>9} | "
          + " | ".join(f"{n:>8}" for n in names))
    print("-" * (width + 40 + 11 * len(names)))
    for r in rows:
        cells = [end_to_end_ms(r, PRESETS[n].uplink_bps, PRESETS[n].rtt_s, 1.0, PRESETS[n].downlink_bps)
                 for n in names]
        print(f"{r['strategy']:<{width}} | {r['device_ms']:>9.2f} | {r['bytes']:>8.0f} | {r['server_ms']:>9.2f} | "
              + " | ".join(f"{c:>8.1f}" for c in cells))
    print("presets: " + "; ".join(f"{n} {p.uplink_bps / 1e6:g} Mbit/s up, RTT {1000 * p.rtt_s:g} ms"
                                  for n, p in PRESETS.items()))
    es = rows[0]
    print("\ncrossovers (link rate above which the Entropic Student split is faster), RTT 50 ms:")
    for r in rows[1:]:
        for slow in (1, 10, 100):
            bw = crossover_bps(es, r, 0.05, slow)
            faster_low = end_to_end_ms(es, 1e3, 0.05, slow) < end_to_end_ms(r, 1e3, 0.05, slow)
            what = (f"{bw / 1e6:.3f} Mbit/s" if bw else ("always faster" if faster_low else "never faster"))
            print(f"  vs {r['strategy']:<28} device {slow:>3}× slower than this CPU: {what}")
    print("\nwhere the split wins (S: the Entropic Student is fastest; otherwise the fastest strategy's initial, "
          "T = teacher on device, J/W = JPEG/WebP + server teacher, L = layer1 features); margin in ms over the "
          "best other strategy:")
    print(region_table(rows))
    pstudent, pteacher = paper_pair()
    prows = measure_strategies(pstudent, pteacher, natural_images(224, 2 if quick else 4), repeats=2 if quick else 5,
                               message_bytes=PAPER_MESSAGE_KB * 1024)
    print(f"\nthe paper's pair timed on this CPU (ResNet-50 and the paper's encoder, 224 px, untrained weights: "
          f"compute only; the message is the paper's {PAPER_MESSAGE_KB} KB for {PAPER_MESSAGE_ACCURACY} %; "
          f"JPEG/WebP bytes on real photographs):")
    for r in prows:
        print(f"  {r['strategy']:<28} device {r['device_ms']:8.1f} ms, {r['bytes']:>9.0f} B, server "
              f"{r['server_ms']:7.1f} ms")
    print(region_table(prows))
    # a real round trip per preset through the TCP server (channel modelled by the client)
    device_part, server_part = student.split()
    msgs = [device_part(x.unsqueeze(0)) for x in images[:3]]
    print("\nmeasured through the TCP server on 127.0.0.1 (3 images per preset):")
    with SplitServer(server_part) as srv:
        for n in (["4g", "wifi"] if quick else names):
            with SplitClient(port=srv.port, channel=PRESETS[n]) as c:
                rt = [c.infer(m)["round_trip_ms"] for m in msgs]
            print(f"  {n:>5}: round trip {sum(rt) / len(rt):8.1f} ms (model: "
                  f"{end_to_end_ms(es, PRESETS[n].uplink_bps, PRESETS[n].rtt_s, 0, PRESETS[n].downlink_bps):.1f} ms "
                  f"without the device's encode)")
    x = images[0].unsqueeze(0)
    enc, full = device_cost(device_part.encoder, x), device_cost(teacher, x)
    exp = export_encoder(student, x)
    rows2 = [("device network parameters: encoder vs teacher",
              f"{enc['parameters']:,d} vs {full['parameters']:,d}"),
             ("device FLOPs per image: encoder vs teacher",
              f"{enc['flops'] / 1e6:.1f} M vs {full['flops'] / 1e6:.1f} M"),
             ("device peak memory (params + largest layer I/O)",
              f"{enc['peak_memory_bytes'] / 1e6:.2f} MB vs {full['peak_memory_bytes'] / 1e6:.2f} MB"),
             ("torch.export of the encoder: size, outputs match",
              f"{exp['bytes'] / 1e3:.0f} kB, max |diff| {exp['max_abs_diff']:.1e} "
              f"({'match' if exp['match'] else 'MISMATCH'})"),
             ("encoder latency eager vs exported (batch 1)",
              f"{exp['eager_ms']:.2f} ms vs {exp['exported_ms']:.2f} ms")]
    px = torch.rand(1, 3, 224, 224)
    penc, pfull = device_cost(Encoder(24).eval(), px), device_cost(build_teacher("paper").eval(), px)
    rows2.append(("paper preset FLOPs: encoder (C=24) vs ResNet-50, 224×224",
                  f"{penc['flops'] / 1e9:.2f} G vs {pfull['flops'] / 1e9:.2f} G"))
    print()
    _print_table("device cost", rows2)
    return 0


def _fmt_kb(kb) -> str:
    return "never" if kb is None else f"{kb:.3f} KB"


def _pt(d: dict) -> str:
    return test_study.paired_text(d, " pt")


def _print_ratio_by_target(res: dict, methods) -> None:
    """:func:`minist.rd.ratio_by_target` as a table: the bytes ratio to the better of JPEG and WebP at looser
    targets than teacher − 1 pt ("≤ KB, ≥ ratio" where a student's cheapest point already reaches the target; the
    codecs' KB is exact there too, their smallest settings being measured)."""
    rows = []
    for r in rd.ratio_by_target(res, rd.held(res, methods)):
        cells = [f"JPEG/WebP {_fmt_kb(r['kb_rival'])}"]
        for m, v in r["students"].items():
            name = METHOD_LABELS.get(m, m)
            if v["kb"] is None:
                cells.append(f"{name} never")
            else:
                le, ge = ("≤ ", "≥ ") if v["below_range"] else ("", "")
                cells.append(f"{name} {le}{v['kb']:.3f} KB"
                             + ("" if v["ratio"] is None else f" ({ge}{v['ratio']:.2f}×)"))
        rows.append((f"teacher − {r['drop']:g} pt = {r['target_accuracy']:.2f} %", "; ".join(cells)))
    _print_table("the bytes ratio by target: KB per image to reach it, (the better codec ÷ the student)", rows)


def print_test_split(quick: bool = False) -> None:
    """The headline numbers: every shipped student, the teacher and the codecs on the test split (no choice saw
    it), with 95 % intervals and paired tests (:func:`minist.experiments.test_study.summary`)."""
    res = pretrained.test_results()
    s = test_study.summary(res, draws=200 if quick else 1000)
    t = s["teacher"]
    print(f"THE TEST SPLIT: {s['n']:,} Fashion-on-Photos images that no choice saw (data/results_test_mini.json); "
          f"teacher {t['accuracy']:.2f} % [{t['ci95'][0]:.2f}, {t['ci95'][1]:.2f}]; intervals 95 %, "
          "paired tests on the same images\n")
    rows = []
    for r in s["students"]:
        name = f"{METHOD_LABELS.get(r['method'], r['method'])}, β {r['value']:g}"
        rows.append((name, f"{r['accuracy']:.2f} % [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] at "
                           f"{r['kb_mean']:.3f} KB; − teacher {_pt(r['vs_teacher'])}"))
    _print_table("each student against the teacher", rows)
    rows = []
    for r in s["students"]:
        q = r["rival"]
        rows.append((f"{METHOD_LABELS.get(r['method'], r['method'])}, β {r['value']:g} ({r['kb_mean']:.3f} KB)",
                     "no codec file is that small or larger" if q is None else
                     f"{METHOD_LABELS.get(q['method'], q['method'])} q{q['value']:g} ({q['kb_mean']:.3f} KB, "
                     f"{q['accuracy']:.2f} %): student − codec {_pt(r['vs_rival'])}"))
    _print_table("each student against the cheapest JPEG/WebP file with at least its bytes (the better of the two)",
                 rows)
    rows = []
    for r in s["reach"]:
        name = METHOD_LABELS.get(r["method"], r["method"])
        rows += [(f"{name}: KB per image", test_study.reach_text(r, "kb")),
                 ("best of JPEG/WebP: KB per image", test_study.reach_text(r, "kb_rival")),
                 (f"ratio: best codec ÷ {name} (goal ≥ 4×)", test_study.reach_text(r, "ratio"))]
    _print_table(f"bytes to reach teacher − 1 pt = {t['accuracy'] - 1:.2f} % (bootstrap over images, "
                 f"{s['reach'][0]['draws']} draws)", rows)
    _print_ratio_by_target(res, [r["method"] for r in s["reach"]])
    if s["top"]:
        a, b = s["top"]["entropic"], s["top"]["variable-rate"]
        _print_table("do more bytes buy accuracy? each student's best point", [
            (f"per-β, β {a['value']:g}", f"{a['accuracy']:.2f} % at {a['kb_mean']:.3f} KB"),
            (f"variable-rate, β {b['value']:g}", f"{b['accuracy']:.2f} % at {b['kb_mean']:.3f} KB"),
            ("per-β − variable-rate", _pt(s["top"]["paired"]))])


@benchmark("rd")
def rd_main(quick: bool = False) -> int:
    """The headline numbers on the test split (when its result file is shipped), then the shipped val study as
    tables: bytes to reach teacher − 1 pt, accuracy at the student's rates, and each student against the best input
    codec at up to twice its bytes."""
    if (data_dir() / pretrained.TEST_RESULTS_FILE).is_file():
        print_test_split(quick)
        print("THE VAL STUDY (2,000 images, used for choosing: optimistic for the chosen models; it holds the "
              "baselines the test split does not re-score)\n")
    res = pretrained.results("mini")
    rows = []
    reach = {r["method"]: r for r in rd.bytes_to_reach(res, 1.0) if not r["method"].endswith("-stage1-only")}
    for m, r in reach.items():
        rows.append((METHOD_LABELS.get(m, m), f"{_fmt_kb(r['kb'])} (best {r['best_accuracy']:.2f} % over "
                                             f"{r['kb_range'][0]:.2f}–{r['kb_range'][1]:.2f} KB)"))
    inputs = [reach[m]["kb"] for m in ("jpeg", "webp", "factorized", "hyperprior") if m in reach and reach[m]["kb"]]
    ours = reach.get("entropic", {}).get("kb")
    ratio = f"{min(inputs) / ours:.2f}×" if ours and inputs else "undefined: " + (
        "the Entropic Student never reaches it" if not ours else "no input codec reaches it")
    rows.append(("ratio: best input codec ÷ Entropic Student (goal ≥ 4×)", ratio))
    _print_table(f"bytes per image to reach teacher − 1 pt = {res['teacher_accuracy'] - 1:.2f} % "
                 f"({res['val_set']['n']} val images)", rows)
    h2h = rd.head_to_head(res, baselines=sorted({p["method"] for p in res["points"]}
                                                - {"entropic", "stage1-only", *ABLATION_METHODS}))
    cols = [c for c in h2h[0] if c not in ("knob", "value", "kb", "entropic")]
    print("\naccuracy (%) at each Entropic Student rate (— = outside that method's measured range)")
    print(f"{'β':>7} {'KB':>6} {'student':>8} " + " ".join(f"{METHOD_LABELS.get(c, c)[:12]:>12}" for c in cols))
    for r in h2h:
        cells = " ".join(f"{'—' if r[c] is None else f'{r[c]:.2f}':>12}" for c in cols)
        print(f"{r['value']:>7g} {r['kb']:>6.3f} {r['entropic']:>8.2f} {cells}")
    rows = []
    for r in rd.against_codecs(res, 2.0):
        q = r["rival"]
        rival = (f"{METHOD_LABELS.get(q['method'], q['method'])} q{q['value']:g}: {q['accuracy']:.2f} % at "
                 f"{q['kb_mean']:.3f} KB → {'student wins' if r['wins'] else 'codec wins'}") if q else (
                 f"none: the smallest codec file is {r['cheapest']['kb_mean']:.3f} KB "
                 f"({r['cheapest']['accuracy']:.2f} %)")
        rows.append((f"β {r['value']:g}: {r['accuracy']:.2f} % at {r['kb']:.3f} KB", rival))
    print()
    _print_table("each student against the best JPEG/WebP point at ≤ 2× its bytes "
                 f"(teacher {res['teacher_accuracy']:.2f} %)", rows)
    present = [a for a in ABLATION_ARMS if any(p["method"] == a for p in res["points"])]
    if present and present[0] == ABLATION_ARMS[0]:      # the reference arm (the paper's loss) is there
        rows = []
        for a in present:
            for p in sorted(pretrained.points(res, a), key=lambda p: p["value"]):
                bits = p.get("bits_on_object")
                name = "stage-1 loss: layer2–4 (the default)" if a == "entropic" else METHOD_LABELS.get(a, a)
                rows.append((f"{name}, β {p['value']:g}",
                             f"{p['accuracy']:.2f} % at {p['kb_mean']:.3f} KB"
                             + ("" if bits is None else f", {bits:.1f} % of the bits on the product")))
        for a in present[1:]:
            levels = sorted({p["accuracy"] for m in (a, present[0]) for p in pretrained.points(res, m)})
            for r in rd.rate_ratio(res, a, present[0], accuracies=levels):
                if r["ratio"] is not None:
                    rows.append((f"{a} ÷ {present[0]} bytes at {r['accuracy']:.2f} %",
                                 f"{r['kb']:.3f} / {r['kb_reference']:.3f} KB = {r['ratio']:.2f}×"))
        print()
        _print_table("the stage-1 loss ablation (each arm trained from scratch with the same recipe)", rows)
    return 0


@benchmark("ceiling", in_all=False)
def ceiling_main(quick: bool = False) -> int:
    """The ceiling ablation that needs no training: each shipped student with its tail's BatchNorm statistics
    re-estimated on decoded training images, against itself as shipped, on the val set (paired); and each student
    with bytes free (its latent unrounded) against itself as sent."""
    rows = ceiling.bn_ablation(betas=(0.005,) if quick else (0.005, 0.08, 0.32),
                               variable_betas=(0.02,) if quick else (0.005, 0.02, 0.08, 0.32),
                               n_train=400 if quick else 2000, limit=200 if quick else None)
    _print_table(f"the tail's BatchNorm statistics re-estimated on {rows[0]['n_train']:,} decoded training images "
                 f"({rows[0]['n']:,} val images, paired; {torch.get_num_threads()} thread(s))",
                 [(f"{METHOD_LABELS.get(r['method'], r['method'])}, β {r['beta']:g}",
                   f"{r['before']:.2f} % → {r['after']:.2f} %: {_pt(r['paired'])}") for r in rows])
    rows = ceiling.rounding_ablation(betas=(0.005,) if quick else (0.005, 0.02, 0.08, 0.32),
                                     variable_betas=(0.02,) if quick else (0.005, 0.02, 0.08, 0.32),
                                     limit=200 if quick else None)
    teacher_val = pretrained.teacher("mini", with_meta=True)[1]["val_accuracy"]
    _print_table(f"bytes free: each student with its latent unrounded, against itself as sent "
                 f"({rows[0]['n']:,} val images, paired; the teacher {teacher_val:.2f} %)",
                 [(f"{METHOD_LABELS.get(r['method'], r['method'])}, β {r['beta']:g}",
                   f"{r['sent']:.2f} % as sent → {r['free']:.2f} % unrounded: {_pt(r['paired'])}") for r in rows])
    try:
        doc = pretrained.ceiling_results()
    except FileNotFoundError as e:
        print(f"the training arms: {e}")
        return 0
    _print_table(f"the training arms at β {doc['beta']:g} ({doc['n']:,} val images, paired against the base arm; "
                 f"teacher {doc['teacher_accuracy']:.2f} %; data/results_ceiling_mini.json, `minist ceiling`)",
                 [(f"{arm}: {factor}", f"{acc}; vs base {paired}; vs the per-β curve at equal bytes {pb} pt")
                  for arm, factor, acc, paired, pb, _, _ in ceiling.arm_rows(doc)])
    return 0


@benchmark("server-check")
def server_check_main(quick: bool = False) -> int:
    """What the in-process server half's default checks cost: ms per genuine message, trusted (no re-encoding)
    against checked (header, latent size, re-encoding), and the sandboxed decoder ``minist serve`` uses."""
    n = 20 if quick else 200
    val, rows = mini_val_set(limit=n), []          # loaded once, not once per message
    for name, student in (("per-β student (β 0.005)", pretrained.student("mini")),
                          ("variable-rate student (β 0.02)", pretrained.variable_student("mini"))):
        device, server = student.split()
        beta = 0.02 if name.startswith("variable") else None
        msgs = [device(x[None], beta=beta) for x, _ in val]
        sandbox = server.decoder_for_strangers(server.latent_sizes)
        timed = {}
        for how, fn in (("trusted", lambda m, s=server: s(m, trusted=True)), ("checked", server),
                        ("sandboxed", lambda m, s=server, d=sandbox: s(m, decode=d))):
            fn(msgs[0])
            timed[how] = statistics.median(_time_ms_once(fn, m) for m in msgs)
        close = getattr(sandbox, "close", None)
        if close is not None:
            close()
        rows += [(f"{name}: {how}", f"{ms:.2f} ms per message") for how, ms in timed.items()]
        rows.append((f"{name}: cost of the check", f"{timed['checked'] - timed['trusted']:+.2f} ms "
                     f"({100 * (timed['checked'] / timed['trusted'] - 1):+.0f} %)"))
    _print_table(f"in-process server half, {n} val messages, {torch.get_num_threads()} thread(s), "
                 f"{platform.processor() or platform.machine()}", rows)
    return 0


def _time_ms_once(fn, arg) -> float:
    tic = time.perf_counter()
    fn(arg)
    return 1000 * (time.perf_counter() - tic)


@benchmark("photos", in_all=False)
def photos_main(quick: bool = False) -> int:
    """The shipped real-photo study (``data/results_imagenette.json``, made by ``minist photos all``) as a table:
    every point with its 95 % interval on the 3,925 test photos (a student's with its rate-free ceiling where it was
    measured), and the bytes each method needs for teacher − 1 pt (for a student that reaches it, with a bootstrap over
    the photos: :func:`minist.rd.bootstrap_reach`)."""
    res = pretrained.photo_results()
    rows = [(f"teacher (original pixels, {res['teacher_stored']})",
             f"{res['teacher_accuracy']:.2f} % [{res['teacher_ci95'][0]:.2f}, {res['teacher_ci95'][1]:.2f}]")]
    for p in sorted(res["points"], key=lambda p: (p["method"], p["kb_mean"])):
        rows.append((f"{METHOD_LABELS.get(p['method'], p['method'])} {p['knob']}={p['value']:g}",
                     f"{p['accuracy']:.2f} % [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] at {p['kb_mean']:.3f} KB "
                     f"(p95 {p['bytes_p95']:.0f} B)"
                     + (f"; bytes free (latent unrounded) {p['rate_free']['accuracy']:.2f} %" if "rate_free" in p
                        else "")))
    for row in rd.bytes_to_reach(res, 1.0):
        rows.append((f"KB to reach teacher − 1 pt: {METHOD_LABELS.get(row['method'], row['method'])}",
                     _fmt_kb(row["kb"])))
    for r in rd.crossings(res):     # how firmly: the photos resampled, the teacher's target moving with them
        rows.append((f"the same, resampling the photos: {METHOD_LABELS.get(r['method'], r['method'])}",
                     f"{test_study.reach_text(r, 'kb')}; the better of JPEG and WebP "
                     f"{test_study.reach_text(r, 'kb_rival')}; ratio {test_study.reach_text(r, 'ratio')} "
                     f"({r['draws']} bootstrap draws)"))
    t = photos.train_time(res)
    rows.append(("training time (epochs' seconds summed, one thread each)",
                 f"{t['total'] / 3600:.2f} h: teacher {t['teacher'] / 3600:.2f} h + {t['runs']} students "
                 f"{t['students'] / 3600:.2f} h"))
    _print_table(f"real photos: {res['dataset']}; {res['n']} test photos, 128 px, real bytes", rows)
    _print_ratio_by_target(res, photos.HEADLINE_STUDENTS)
    arms = photos.ablation(res)
    if arms:
        rows = []
        for a in arms:
            ch, te = a["choice"], a["test"]
            recipe = ", ".join(f"{k} {v}" for k, v in a["recipe"].items())
            vs = a["versus"]
            rows.append((f"teacher {a['teacher']:.2f} %, β {a['beta']:g}: "
                         f"{METHOD_LABELS.get(a['method'], a['method'])} ({recipe})",
                         ("" if ch is None else f"choice {ch['accuracy']:.2f} % at {ch['kb_mean']:.3f} KB; ")
                         + f"test {te['accuracy']:.2f} % [{te['ci95'][0]:.2f}, {te['ci95'][1]:.2f}] at "
                           f"{te['kb_mean']:.3f} KB"
                         + ("" if vs is None else f"; vs the recipe {vs['difference_pt']:+.2f} pt, "
                                                  f"p = {vs['p_value']:.2g}")
                         + "".join(f"; vs {METHOD_LABELS.get(o['method'], o['method'])} (one factor: "
                                   + ", ".join(f"{k} {a} → {b}" for k, (a, b) in o["factor"].items())
                                   + f") {o['versus']['difference_pt']:+.2f} pt, p = {o['versus']['p_value']:.2g}"
                                   + ("" if o["versus_free"] is None else
                                      f" (bytes free {o['versus_free']['difference_pt']:+.2f} pt, "
                                      f"p = {o['versus_free']['p_value']:.2g})")
                                   for o in a["one_factor"])))
        print()
        _print_table("the ablation: arms compared on the choice photos, reported on the test photos", rows)
    return 0


@benchmark("explorer")
def explorer_main(quick: bool = False) -> int:
    """Milliseconds per explorer move (what a slider move costs in the widget, the first one included); target
    ≤ 250 ms. The explorer is opened as a learner opens it (``show()``), then its controls are moved."""
    matplotlib.use("Agg")
    tic = time.perf_counter()
    ex = Explorer(images=8)
    build = time.perf_counter() - tic
    tic = time.perf_counter()
    ex.show(display=False)
    opened = time.perf_counter() - tic
    lo, hi = ex.beta_range
    rng = np.random.default_rng(0)
    moves = [("beta", float(lo * (hi / lo) ** rng.uniform())) for _ in range(8 if quick else 40)]
    moves += [("kbps", float(10 ** rng.uniform(0, 5))) for _ in range(4 if quick else 10)]
    moves += [("image", int(rng.integers(0, 8))) for _ in range(4 if quick else 10)]
    order = rng.permutation(len(moves))
    times, first = {}, None
    for j in order:
        name, value = moves[j]
        tic = time.perf_counter()
        ex.controls[name].value = value          # the widget's own observer: compute + panels + outputs
        ms = 1000 * (time.perf_counter() - tic)
        first = ms if first is None else first
        times.setdefault(f"move the {name} slider", []).append(ms)
    every = [t for v in times.values() for t in v]
    rows = [(k, f"median {statistics.median(v):.0f} ms, max {max(v):.0f} ms over {len(v)} moves")
            for k, v in times.items()]
    rows.append(("the first move after opening", f"{first:.0f} ms"))
    rows.append(("every move", f"median {statistics.median(every):.0f} ms, max {max(every):.0f} ms "
                               f"({sum(t <= 250 for t in every)} of {len(every)} ≤ 250 ms)"))
    rows.append(("once: load the variable-rate student, teacher, results", f"{1000 * build:.0f} ms"))
    rows.append(("once: open the widget (RD panel, first draw)", f"{1000 * opened:.0f} ms"))
    tic = time.perf_counter()
    ex.render_png(lo, 0, 250.0)
    rows.append(("static full figure (notebook's printable copy)", f"{1000 * (time.perf_counter() - tic):.0f} ms"))
    _print_table(f"explorer moves, {torch.get_num_threads()} threads (target ≤ 250 ms per move, the first included)",
                 rows)
    return 0


def _per_beta_students() -> dict:
    return {b: pretrained.student("mini", beta=b) for b in pretrained.betas("mini")}


@benchmark("variable", in_all=False)
def variable_main(quick: bool = False, write: bool = False) -> int:
    """Per-β students vs the variable-rate student at every β of the grid (real bytes, the same val images),
    and the variable-rate student on the fine grid. ``write``: measure now (≈30 min on one thread) and write
    ``data/results_variable_mini.json``; else print the shipped file."""
    if write or quick:
        val, limit = mini_val_set(), 40 if quick else None
        res = variable.measure(pretrained.variable_student("mini"), _per_beta_students(), pretrained.teacher("mini"),
                               val, limit=limit, progress=not quick, stride=32 if quick else variable.FINE_STRIDE)
        res["val_set"] = {"n": res["n"], "sha256": val.digest()}
        if write and not quick:
            path = pretrained.data_dir() / pretrained.VARIABLE_RESULTS_FILE.format(preset="mini")
            checkpoint.write_json(path, res)
            print(f"wrote {path}")
    else:
        res = pretrained.variable_results("mini")
    print(f"per-β students vs one variable-rate student, {res['n']} val images, real bytes (header included)")
    print(f"{'β':>6} | {'per-β %':>7} {'per-β B':>8} | {'variable %':>10} {'variable B':>10} | {'Δ pt':>6} "
          f"{'bytes ×':>7} | within 0.5 pt and ≤ 1.10×")
    for r in res["points"]:
        p, v = r.get("per_beta"), r["variable"]
        if p is None:
            print(f"{r['beta']:>6g} | {'—':>7} {'—':>8} | {v['accuracy']:>10.2f} {v['bytes_mean']:>10.1f} |")
            continue
        ok = r["accuracy_gap"] >= -0.5 and r["bytes_ratio"] <= 1.10
        print(f"{r['beta']:>6g} | {p['accuracy']:>7.2f} {p['bytes_mean']:>8.1f} | {v['accuracy']:>10.2f} "
              f"{v['bytes_mean']:>10.1f} | {r['accuracy_gap']:>+6.2f} {r['bytes_ratio']:>7.3f} | "
              f"{'yes' if ok else 'no'}")
    fine = res["fine"]
    falls = all(b["bytes_mean"] < a["bytes_mean"] for a, b in zip(fine, fine[1:]))
    steps = [b["accuracy"] - a["accuracy"] for a, b in zip(fine, fine[1:])]
    print(f"\nfine grid: {len(fine)} β from {fine[0]['beta']:g} to {fine[-1]['beta']:g}; bytes fall at every step: "
          f"{'yes' if falls else 'no'}; accuracy steps from {min(steps):+.2f} to {max(steps):+.2f} pt")
    t = res["timing"]
    print(f"timing ({res.get('threads', '?')} threads): device {t['device_ms']:.1f} ms (rANS alone "
          f"{t['rans_ms']:.1f}), server {t['server_ms']:.1f} ms; JPEG q10 encode {t['jpeg_device_ms']:.1f} ms, "
          f"decode + teacher {t['jpeg_server_ms']:.1f} ms")
    return 0


ADAPTIVE_DEADLINES = (100.0, 150.0, 200.0)


@benchmark("adaptive", in_all=False)
def adaptive_main(quick: bool = False, trace_spec: str = "markov:4g:0:300", slowdown: float = 1.0) -> int:
    """One bandwidth trace through every strategy at each deadline: deadlines met, mean accuracy, mean bytes."""
    trace = load_trace(trace_spec if not quick else "markov:4g:0:20")
    res = pretrained.variable_results("mini")
    val, images = mini_val_set(), 40 if quick else 500
    teacher = pretrained.teacher("mini")
    per_beta = _per_beta_students()
    vs = pretrained.variable_student("mini")
    states = collections.Counter(s.name for s in _states_of(trace))
    print(f"trace {trace.name}: {trace.duration_s:.0f} s; uplink {min(trace.uplink_bps) / 1e3:.0f} … "
          f"{max(trace.uplink_bps) / 1e3:.0f} kbit/s, RTT {1000 * min(trace.rtt_s):.0f} … "
          f"{1000 * max(trace.rtt_s):.0f} ms; seconds per state: {dict(states)}")
    for deadline in ADAPTIVE_DEADLINES:
        rows = variable.replay(res, vs, per_beta, teacher, val, trace, deadline, slowdown, images=images)
        print(f"\ndeadline {deadline:g} ms, device ×{slowdown:g}, {rows[0]['requests']} requests (5 per s), "
              f"{images} val images in turn; latency modelled from measured parts, bytes and answers real")
        print(f"{'strategy':<28} | {'met %':>6} | {'accuracy %':>10} | {'mean B':>7}")
        for r in rows:
            print(f"{r['strategy']:<28} | {r['deadlines_met']:>6.1f} | {r['accuracy']:>10.2f} | "
                  f"{r['bytes_mean']:>7.1f}")
        v = variable.verdict(rows)
        print(f"goal (adaptive ≥ 99 % met, more accurate than every fixed β that meets 99 %): "
              f"{'met' if v['met'] else 'not met'} (best such fixed β: {v['best_fixed']}, "
              f"{v['best_fixed_accuracy'] if v['best_fixed_accuracy'] is not None else float('nan'):.2f} %)")
    return 0


def _states_of(trace):
    """The preset state each second of a generated trace is nearest to (for the header line)."""
    preset = trace.name.split("-")[0]
    states = TRACE_PRESETS.get(preset, ((),))[0]
    if not states:
        return []
    return [min(states, key=lambda s: abs(math.log(s.uplink_bps / up))) for up in trace.uplink_bps]


def main(quick: bool = False, which: str = "all", write: bool = False) -> int:
    """Run one benchmark of :data:`BENCHMARKS` by name, or ``all`` (those marked as part of it)."""
    if which != "all" and which not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {which!r}; choose all or one of {', '.join(BENCHMARKS)}")
    for name, (fn, in_all) in BENCHMARKS.items():
        if which == name or (which == "all" and in_all):
            options = {"write": write} if "write" in inspect.signature(fn).parameters else {}
            fn(quick=quick, **options)
    return 0


@benchmark("foundation")
def foundation_main(quick: bool = False) -> int:
    n = 60 if quick else 400
    cfg = TeacherTrainConfig()
    rows = []
    cls_rate = data_rate("classification", n)
    det_rate = data_rate("detection", n)
    rows.append(("data: Fashion-on-Photos classification, 1 process", f"{cls_rate:.0f} images/s"))
    rows.append(("data: Fashion-on-Photos detection, 1 process", f"{det_rate:.0f} images/s"))
    step = teacher_step_rate(steps=2 if quick else 6)
    rows.append(("teacher (mini) training step, batch 64", f"{step:.0f} images/s"))
    rows.append((f"teacher CPU seconds per epoch ({cfg.train_length} images)", f"{cfg.train_length / step:.0f} s"))
    rows.append(("stream / training-step rate (must be > 1)", f"{cls_rate / step:.1f}×"))
    model, meta = pretrained.teacher("mini", with_meta=True)
    if meta.get("history"):
        h = meta["history"][-1]
        rows.append(("teacher epoch as trained (recorded, incl. stream)", f"{h['seconds']:.0f} s on {meta['device']}"))
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    if quick:
        val = torch.utils.data.Subset(val, range(200))
    tic = time.perf_counter()
    acc = evaluate_accuracy(model, val)
    dt = time.perf_counter() - tic
    rows.append((f"teacher val accuracy ({len(val)} cached val images)",
                 f"{acc:.2f} % (recorded {meta['val_accuracy']:.2f} %)"))
    rows.append(("teacher eval speed, batch 250", f"{len(val) / dt:.0f} images/s"))
    _print_table(f"minist foundation benchmark — {platform.processor() or platform.machine()}, torch "
                 f"{torch.__version__}, {torch.get_num_threads()} threads{' (quick)' if quick else ''}", rows)
    return 0


# ---- issue 7: the paper preset's stage-1 throughput next to the teacher's forward pass ----------------------
def _timed(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call of ``fn`` (after ``warmup`` calls), synchronising the GPU around the timed loop."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - tic) / steps


def _per_s(rate: float) -> str:
    return f"{rate:,.0f} images/s" if rate >= 100 else f"{rate:.2g} images/s"


def paper_throughput(batch: int = 64, steps: int = 20, warmup: int = 5, device=None, amp: bool = True) -> list:
    """Stage-1 training steps/s of the paper preset (ResNet-50 teacher, C = 24, 224×224 synthetic images) and the
    teacher's forward-only rate on the same device and batch, with a breakdown of the stage-1 step.

    Weights are random (speed does not depend on them; nothing downloads). ``amp``: bf16 autocast for the
    teacher on CUDA, as the paper preset trains (the student stays fp32: its latent must round as ``compress``
    rounds it). Returns table rows.
    """
    device = get_device(device)
    cfg = StudentTrainConfig.preset_config("paper", beta=0.08, amp=amp)
    teacher = build_teacher("paper").to(device).eval().requires_grad_(False)
    student = EntropicStudent(teacher).to(device).train()
    if device.type == "cuda":
        teacher = teacher.to(memory_format=torch.channels_last)
        student = student.to(memory_format=torch.channels_last)
    opt, aux = stage1_optimizers(student, cfg)
    engine = _engine(student, opt, aux, amp and device.type == "cuda")
    step1 = stage1_step(student, teacher, cfg, engine, device)
    x = torch.rand(batch, 3, 224, 224, device=device)

    def teacher_forward():
        with torch.no_grad(), engine.autocast():
            teacher(x)

    def teacher_features():
        with torch.no_grad(), engine.autocast():
            teacher.features(x, ("layer1", "layer2", "layer3", "layer4"))

    def student_forward():
        student(x)

    def step():
        engine.train_step((x,), step1)

    t_fwd = _timed(teacher_forward, steps, warmup, device)
    t_feat = _timed(teacher_features, steps, warmup, device)
    with torch.no_grad():
        t_sfwd = _timed(student_forward, steps, warmup, device)
    t_step = _timed(step, steps, warmup, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    mem = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" \
        if device.type == "cuda" else ""
    return [
        (f"device: {name}, batch {batch}, 224×224, {'bf16 teacher' if amp and device.type == 'cuda' else 'fp32'}"
         f"{mem}", ""),
        ("teacher (ResNet-50) forward only", _per_s(batch / t_fwd)),
        ("stage-1 training step (teacher features + student fwd/bwd + Adam + aux)", _per_s(batch / t_step)),
        ("ratio: stage-1 step / teacher forward", f"{t_fwd / t_step:.2f}×"),
        ("  of the step: teacher layer1…4 features (no grad)", f"{100 * t_feat / t_step:.0f} %"),
        ("  of the step: student forward (fp32, no grad)", f"{100 * t_sfwd / t_step:.0f} %"),
        ("  of the step: the rest (backward through layer2–4 and the bottleneck, optimisers)",
         f"{100 * max(0.0, t_step - t_feat - t_sfwd) / t_step:.0f} %"),
    ]


@benchmark("throughput", in_all=False)
def throughput_main(quick: bool = False) -> int:
    cuda = torch.cuda.is_available()
    batch, steps, warmup = (64, 20, 5) if cuda and not quick else ((2, 2, 1) if quick else (8, 3, 1))
    rows = paper_throughput(batch=batch, steps=steps, warmup=warmup)
    _print_table(f"paper preset stage-1 throughput — torch {torch.__version__}"
                 f"{'' if cuda else ' (no GPU here: CPU numbers, not the target)'}{' (quick)' if quick else ''}", rows)
    return 0


# ---- the device without PyTorch (minist export + device/) -------------------------------------------
_DEVICE_PROBE = """
import json, sys, time
sys.modules["torch"] = None                  # the device process may not import torch
from minist_device import Device
import numpy as np
d = Device(sys.argv[1])
xs = np.load(sys.argv[2])
d.encode(xs[0])
import hashlib
ts, sizes, digests = [], [], []
for x in xs:
    t = time.perf_counter(); m = d.encode(x); ts.append(time.perf_counter() - t); sizes.append(len(m))
    digests.append(hashlib.sha256(m).hexdigest())
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")]   # ru_maxrss survives exec: not it
print(json.dumps({"ms": 1000 * float(np.median(ts)), "bytes": float(np.mean(sizes)), "sha256": digests,
                  "rss_mb": int(hwm[0].split()[1]) / 1024 if hwm else float("nan")}))
"""


@benchmark("device", in_all=False)
def device_main(quick: bool = False) -> int:
    """Bundle and environment sizes, encode + entropy-code latency (ONNX Runtime + NumPy rANS vs PyTorch eager,
    one thread), peak RSS of the device process, payload bytes."""
    torch.set_num_threads(1)
    n = 20 if quick else 1000
    student = pretrained.student("mini")
    device_part, _ = student.split()
    val = mini_val_set(limit=n)
    xs = torch.stack([val[i][0] for i in range(n)])
    device_part(xs[:1])
    ts, digests = [], []
    for x in xs:
        t = time.perf_counter()
        m = device_part(x[None])
        ts.append(time.perf_counter() - t)
        digests.append(hashlib.sha256(m).hexdigest())
    torch_ms = 1000 * float(np.median(ts))
    python, env = device_python()   # .venv-device, else this Python with the device/ sources
    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(student, Path(tmp) / "bundle")
        bundle_kb = folder_mb(Path(tmp) / "bundle") * 1024
        np.save(Path(tmp) / "x.npy", xs.numpy()[:, None])
        run = subprocess.run([python, "-c", _DEVICE_PROBE, str(Path(tmp) / "bundle"), str(Path(tmp) / "x.npy")],
                             capture_output=True, text=True, env=env)
    if run.returncode:
        raise RuntimeError(f"the device probe failed: {run.stderr.strip().splitlines()[-1:]}")
    probe = json.loads(run.stdout.strip().splitlines()[-1])
    dev_mb, main_mb = folder_mb(DEVICE_VENV), folder_mb(REPO / ".venv")
    fmt = lambda v: "–" if v is None else f"{v:,.0f} MB"   # noqa: E731
    _print_table(f"The device without PyTorch (default student, {n} val images, one thread, medians)", [
        ("device environment (.venv-device: onnxruntime, numpy, pillow)", fmt(dev_mb)),
        ("full environment (.venv, torch + CUDA libraries)", fmt(main_mb)),
        ("bundle (encoder.onnx + tables.npz + manifest.json)", f"{bundle_kb:.0f} KB"),
        ("encode + entropy code, ONNX Runtime + NumPy rANS", f"{probe['ms']:.2f} ms"),
        ("encode + entropy code, PyTorch eager + CompressAI", f"{torch_ms:.2f} ms"),
        ("ratio (device ÷ PyTorch)", f"{probe['ms'] / torch_ms:.2f}"),
        (f"peak RSS of the device process (incl. the {xs.numel() * 4 / 2**20:.0f} MB of test images it holds)",
         f"{probe['rss_mb']:.0f} MB"),
        ("payload bytes per image", f"{probe['bytes']:.0f} B"),
        ("payloads byte-identical to PyTorch's (so the same server predictions)",
         f"{sum(a == b for a, b in zip(probe['sha256'], digests))}/{n}"),
    ])
    return 0


# ---- training speed on this machine (minist bench train) -------------------------------------------------
def _train_rates(teacher_config, threads: int, amp: bool, channels_last: bool, batch: int, steps: int) -> dict:
    """Images/s of a teacher step, a teacher forward, a stage-1 step and a stage-2 step, through the engine."""
    torch.set_num_threads(threads)
    return {"teacher training step": teacher_step_rate(batch, steps, 128, teacher_config, amp, channels_last),
            **student_step_rates(batch, steps, 128, teacher_config, amp, channels_last)}


@benchmark("train", in_all=False)
def train_main(quick: bool = False, teacher_config: dict | None = None) -> int:
    """Training images/s on this machine: fp32 vs bf16 autocast, channels_last, 1 vs all threads, and the
    training stream rendered on the fly vs held in memory. The entropy model, the prior and the device encoder
    stay fp32; the recipes turn bf16 on where :func:`minist.utils.fast_bf16` says it pays (``amp=None``)."""
    teacher_config = teacher_config or {}
    batch, steps = (8, 1) if quick else (32, 4)
    threads = sorted({1, torch.get_num_threads()})
    combos = [(t, amp, cl) for t in threads for amp in (False, True) for cl in (False, True)]
    if quick:
        combos = combos[:2]
    table = []
    for t, amp, cl in combos:
        r = _train_rates(teacher_config, t, amp, cl, batch, steps)
        table.append((t, amp, cl, r))
    torch.set_num_threads(threads[-1])
    names = list(table[0][3])
    print(f"minist training speed — {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"batch {batch}, images/s (higher is better){' (quick)' if quick else ''}")
    print(f"{'threads':>7} {'precision':>9} {'layout':>13} | " + " | ".join(f"{n:>21}" for n in names)
          + " | stage 1 ÷ teacher forward")
    for t, amp, cl, r in table:
        print(f"{t:>7} {'bf16' if amp else 'fp32':>9} {'channels_last' if cl else 'contiguous':>13} | "
              + " | ".join(f"{r[n]:>21.0f}" for n in names) + f" | {r['stage 1 step'] / r['teacher forward']:.3f}")
    ds = FashionOnPhotos("train", "classification", size=128, train_length=256)
    n = 32 if quick else 256
    render = _rate(lambda i: ds[i], n)
    held = torch.utils.data.TensorDataset(torch.stack([ds[i][0] for i in range(n)]), torch.zeros(n))
    memory = _rate(lambda i: held[i], n)
    print(f"\ntraining stream, one process: rendered on the fly {render:,.0f} images/s, held in memory "
          f"{memory:,.0f} images/s (a stage-1 step needs {table[0][3]['stage 1 step']:,.0f} images/s)")
    return 0


@benchmark("web", in_all=False)
def web_main(quick: bool = False) -> int:
    """The web page's β explorer in headless Chromium: build it, run its self-test, print equality, speed and size."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = web.build(Path(tmp) / "web")
        page = web.run_selftest(Path(tmp) / "web")
        ref = json.loads((Path(tmp) / "web" / "reference.json").read_text())
    c = web.compare(page, ref)
    _print_table(f"the web explorer in headless Chromium ({platform.processor() or platform.machine()}, "
                 "ONNX Runtime Web, WebAssembly, one thread)", [
        ("messages byte-identical to minist's Python device", f"{c['messages_equal']} / {c['messages']} "
                                                              f"({c['images']} images × {c['levels']} rates)"),
        ("predictions equal to minist's Python server", f"{c['predictions_equal']} / {c['predictions']}"),
        ("largest logit difference, page − Python", f"{c['max_logit_difference']:.2g}"),
        ("page load to first answer", f"{c['load_ms']:.0f} ms"),
        (f"slider move, median of {c['moves']} (target ≤ 100 ms)", f"{c['move_ms_median']:.1f} ms"),
        ("slider move, 95th percentile / slowest", f"{c['move_ms_p95']:.1f} / {c['move_ms_max']:.1f} ms"),
    ])
    _print_table("the page's size (target ≤ 5 MB)", [(name, f"{n / 1e6:.3f} MB") for name, n in sizes["files"].items()]
                 + [("in all", f"{sizes['total'] / 1e6:.2f} MB")])
    return 0
