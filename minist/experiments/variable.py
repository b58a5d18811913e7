"""One student for every β, measured: against the per-β students, on a fine grid, and on a link that changes.

* :func:`measure` (``minist bench variable --write`` → ``data/results_variable_mini.json``): the variable-rate
  student and every shipped per-β student on the same val images with real bytes, at every β of the study's grid;
  the variable-rate student alone on a fine grid (every ``FINE_STRIDE``-th grid rate); JPEG's quality curve with
  p95 bytes; the device and server milliseconds every sender costs on this machine.
* :func:`replay` (``minist bench adaptive``): one bandwidth trace, every strategy, one request every
  ``1 / rate_hz`` s: deadlines met, mean accuracy, mean bytes. The strategies: the adaptive student
  (:class:`~minist.split.adaptive.RateController` over the fine grid), each per-β student, JPEG and WebP at a
  fixed quality, and JPEG with its quality picked by the same rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, image_formats, rd
from ..evaluate import codec_accuracy, evaluate_student
from ..split.adaptive import RateController, RateOption, latency_ms, options_from_results, send_adaptive
from ..split.latency import timings

FINE_STRIDE = 4                       # every 4th grid rate: 8 per doubling of β
JPEG_QUALITIES = (1, 5, 10, 15, 20, 30, 50, 75)
FIXED_CODECS = (("jpeg", 10), ("webp", 5))     # the fixed-quality image codecs of the trace benchmark
SUMMARY = ("accuracy", "bytes_mean", "bytes_p95", "kb_mean", "kb_std", "bpp", "header_bytes", "n")


def _summary(r: dict) -> dict:
    return {k: r[k] for k in SUMMARY if k in r}


@torch.no_grad()
def measure(variable, per_beta: dict, teacher, val_set, limit: int | None = None, progress: bool = False,
            stride: int = FINE_STRIDE) -> dict:
    """The side-by-side study: see the module docstring. ``per_beta``: {β: shipped per-β student}."""
    grid = variable.codec.grid
    rows = []
    for b in grid.anchors:
        v = evaluate_student(variable, val_set, limit=limit, beta=b)
        row = {"beta": b, "variable": _summary(v)}
        if b in per_beta:
            p = evaluate_student(per_beta[b], val_set, limit=limit)
            row.update(per_beta=_summary(p), accuracy_gap=v["accuracy"] - p["accuracy"],
                       bytes_ratio=v["bytes_mean"] / p["bytes_mean"])
        rows.append(row)
        if progress:
            print(f"β {b:g}: {row}", flush=True)
    fine = []
    for i in range(0, grid.levels, stride):
        b = float(grid.beta(i))
        fine.append({"index": i, "beta": b, **_summary(evaluate_student(variable, val_set, limit=limit, beta=b))})
    jpeg = []
    for q in JPEG_QUALITIES:
        acc, sizes, _ = codec_accuracy(teacher, val_set, "jpeg", q, limit=limit, return_sizes=True)
        jpeg.append({"quality": q, "accuracy": acc, "bytes_mean": float(np.mean(sizes)),
                     "bytes_p95": float(np.percentile(sizes, 95)), "n": len(sizes)})
    return {"grid": grid.to_dict(), "points": rows, "fine": fine, "jpeg": jpeg,
            "timing": timings(variable, teacher, val_set), "n": rows[0]["variable"]["n"],
            "threads": torch.get_num_threads()}


# ---- replaying a trace ----------------------------------------------------------------------------------------
class _Student:
    """Real bytes and answers of one student per (image, rate), computed once and kept."""

    def __init__(self, student, val_set):
        self.val = val_set
        self.device, self.server = student.split()
        self._z, self._msg, self._ok = {}, {}, {}

    def message(self, i: int, beta: float | None) -> bytes:
        if (i, beta) not in self._msg:
            if i not in self._z:
                self._z[i] = self.device.latent(self.val[i][0].unsqueeze(0))
            self._msg[i, beta] = self.device.message(self._z[i], beta)
        return self._msg[i, beta]

    def correct(self, i: int, beta: float | None) -> bool:
        if (i, beta) not in self._ok:
            self._ok[i, beta] = int(self.server(self.message(i, beta)).argmax(1)) == int(self.val[i][1])
        return self._ok[i, beta]


class _Codec:
    """Real bytes of JPEG/WebP per (image, quality) and the teacher's answer on the decoding."""

    def __init__(self, teacher, val_set, fmt: str):
        self.teacher, self.val, self.fmt = teacher, val_set, fmt
        self._msg, self._ok = {}, {}

    def message(self, i: int, q: int) -> bytes:
        if (i, q) not in self._msg:
            self._msg[i, q] = image_formats.encode(self.val[i][0], self.fmt, int(q))
        return self._msg[i, q]

    def correct(self, i: int, q: int) -> bool:
        if (i, q) not in self._ok:
            x = image_formats.decode(self.message(i, q)).unsqueeze(0)
            self._ok[i, q] = int(self.teacher(x).argmax(1)) == int(self.val[i][1])
        return self._ok[i, q]


@torch.no_grad()
def replay(res: dict, variable, per_beta: dict, teacher, val_set, trace, deadline_ms: float = 150.0,
           slowdown: float = 1.0, rate_hz: float = 5.0, images: int = 500) -> list[dict]:
    """Every strategy on the same requests: one every ``1 / rate_hz`` s of ``trace``, cycling over ``images`` val
    images. Latency is modelled from measured parts (:func:`minist.split.adaptive.latency_ms`: device ms ×
    ``slowdown``, the link of that second, server ms), bytes and answers are real. Returns one row per strategy."""
    timing = res["timing"]
    n = min(images, len(val_set))
    requests = [(k / rate_hz, k % n) for k in range(int(trace.duration_s * rate_hz))]
    student_opts = options_from_results(res["fine"], timing["device_ms"], timing["server_ms"])
    jpeg_opts = options_from_results(res["jpeg"], timing["jpeg_device_ms"], timing["jpeg_server_ms"],
                                     key="quality")
    rows = []

    def run(name, pick, kind):
        met = ok = sent = 0
        chosen = []
        for t, i in requests:
            link = trace.at(t)
            nbytes, correct, ms, value = pick(i, link)
            met += ms <= deadline_ms
            ok += correct
            sent += nbytes
            chosen.append(value)
        k = len(requests)
        rows.append({"strategy": name, "kind": kind, "requests": k, "deadlines_met": 100.0 * met / k,
                     "accuracy": 100.0 * ok / k, "bytes_mean": sent / k, "chosen": chosen})

    def adaptive(sender, controller, retry_ms):
        """Per request: the controller's rate, stepped down while the real message misses (each retry re-codes)."""
        def pick(i, link):
            tries = []
            msg, opt, _, _ = send_adaptive(controller, lambda o: tries.append(o) or sender.message(i, o.value), link)
            ms = latency_ms(opt, len(msg), link, slowdown) + slowdown * retry_ms * (len(tries) - 1)
            return len(msg), sender.correct(i, opt.value), ms, opt.value
        return pick

    def fixed(sender, value, timed: RateOption):
        def pick(i, link):
            msg = sender.message(i, value)
            return len(msg), sender.correct(i, value), latency_ms(timed, len(msg), link, slowdown), None
        return pick

    run("adaptive student", adaptive(_Student(variable, val_set), RateController(student_opts, deadline_ms, slowdown),
                                     timing["rans_ms"]), "adaptive")
    student_timed = RateOption(0, 0, 0, 0, timing["device_ms"], timing["server_ms"])
    for b, s in sorted(per_beta.items()):
        run(f"per-β student, β = {b:g}", fixed(_Student(s, val_set), None, student_timed), "fixed")
    coders = {fmt: _Codec(teacher, val_set, fmt) for fmt in ("jpeg", "webp")}
    codec_timed = RateOption(0, 0, 0, 0, timing["jpeg_device_ms"], timing["jpeg_server_ms"])
    for fmt, q in FIXED_CODECS:
        run(f"{'JPEG' if fmt == 'jpeg' else 'WebP'} q{q}", fixed(coders[fmt], q, codec_timed), "codec")
    run("JPEG, quality adapted", adaptive(coders["jpeg"], RateController(jpeg_opts, deadline_ms, slowdown),
                                          timing["jpeg_device_ms"]), "adaptive")
    return rows


def verdict(rows: list[dict], goal: float = 99.0) -> dict:
    """The issue's goal: the adaptive student meets ≥ ``goal`` % of deadlines with a higher mean accuracy than any
    fixed-β student that also does."""
    ad = next(r for r in rows if r["strategy"] == "adaptive student")
    fixed_ok = [r for r in rows if r["kind"] == "fixed" and r["deadlines_met"] >= goal]
    best = max(fixed_ok, key=lambda r: r["accuracy"], default=None)
    return {"adaptive_met": ad["deadlines_met"], "adaptive_accuracy": ad["accuracy"],
            "best_fixed": best and best["strategy"], "best_fixed_accuracy": best and best["accuracy"],
            "met": ad["deadlines_met"] >= goal and (best is None or ad["accuracy"] > best["accuracy"])}


def _accuracy_and_bytes(by_beta: dict) -> dict:
    return {b: {k: r[k] for k in ("accuracy", "bytes_mean")} for b, r in by_beta.items()}


def _at_equal_kb(runs: list[dict], kbs=(0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)) -> list[dict]:
    """The seeds compared at the same bytes rather than the same β: each run's anchors as a curve, its accuracy
    interpolated at each KB (:func:`minist.rd.accuracy_at_kb`), and their sd where every run reaches it."""
    curves = [[{"kb_mean": v["bytes_mean"] / 1024, "accuracy": v["accuracy"]} for v in r["by_beta"].values()]
              for r in runs]
    rows = []
    for kb in kbs:
        acc = [rd.accuracy_at_kb(c, kb) for c in curves]
        whole = None not in acc and len(acc) > 1
        rows.append({"kb": kb, "accuracy": acc, "accuracy_mean": float(np.mean(acc)) if None not in acc else None,
                     "accuracy_sd": float(np.std(acc, ddof=1)) if whole else None})
    return rows


def seed_study(folders, shipped: dict | None = None) -> dict:
    """The variable-rate recipe over seeds: each finished run's val accuracy and bytes at every anchor β (its
    ``student.pt``'s ``val_by_beta``, fp32, 2,000 val images, real bytes), their mean and sample sd, and whether a
    run collapsed (an anchor at ≤ 15 %: the medians' answer). ``shipped``: the shipped student's metadata, drawn
    as a reference row (``val_by_beta_fp32``)."""
    runs = []
    for folder in folders:
        ck = checkpoint.load(Path(folder) / "student.pt", kind="student")
        meta, train = ck["meta"], ck["meta"]["train"]
        runs.append({"folder": Path(folder).name, "seed": train["seed"],
                     "rate_warmup_steps": train.get("rate_warmup_steps") or 0,
                     "train_seconds": meta.get("train_seconds"),
                     "by_beta": _accuracy_and_bytes(meta["val_by_beta"])})
    if not runs:
        raise FileNotFoundError("no finished variable-rate runs given (each folder needs its student.pt)")
    betas = list(runs[0]["by_beta"])
    rows = []
    for b in betas:
        acc = np.array([r["by_beta"][b]["accuracy"] for r in runs])
        size = np.array([r["by_beta"][b]["bytes_mean"] for r in runs])
        rows.append({"beta": float(b), "accuracy_mean": float(acc.mean()),
                     "accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else None,
                     "bytes_mean": float(size.mean()), "bytes_sd": float(size.std(ddof=1)) if len(size) > 1 else None})
    out = {"runs": runs, "anchors": rows, "at_equal_kb": _at_equal_kb(runs),
           "collapsed": [r["seed"] for r in runs if min(v["accuracy"] for v in r["by_beta"].values()) <= 15.0]}
    if shipped is not None:
        out["shipped"] = {"seed": shipped["train"]["seed"],
                          "rate_warmup_steps": shipped["train"].get("rate_warmup_steps") or 0,
                          "by_beta": _accuracy_and_bytes(shipped["val_by_beta_fp32"])}
    return out
