"""The mini study on its test split: every shipped model, scored once on 10,000 images that no choice has seen.

The 2,000 cached val images chose the recipes, the epochs, the checkpoints and the default β, so numbers measured
on them are optimistic (and ±1.3 pt noisy at 90 %). The test split (``minist.data.load("fashion-on-photos",
split="test")``) is drawn from the same pools with its own generator stream, and this module is the only code
that scores on it. Every headline number of the README comes from its result file.

Points, each resumable (one JSON per point under ``runs/test-mini/points``; run again after an interruption):

* ``teacher``: the shipped teacher on the original pixels;
* ``jpeg`` / ``webp``: each codec at the study's qualities (its smallest setting included) + the teacher;
* ``entropic``: every shipped per-β student (fp16, as stored);
* ``variable-rate``: the shipped variable-rate student at its eight anchor β.

Every point carries its 95 % Wilson interval and each image's correctness (``correct_bits``), so
:func:`minist.rd.versus_codecs` and :func:`minist.rd.mcnemar` compare any two on the same images, and
:func:`minist.rd.bootstrap_reach` puts an interval on "bytes at teacher − 1 pt".

    minist test-study                     # 103 min on one thread beside three jobs; data/results_test_mini.json
    minist test-study --limit 500 --out build/test-quick --dest build/test-quick/results.json   # a quick look
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import checkpoint, pretrained, rd
from ..config import mini_test_set
from ..evaluate import codec_point, decoded_accuracy, evaluate_student
from ..utils import data_dir
from .sweep import JPEG_QUALITIES, WEBP_QUALITIES

OUT = Path("runs/test-mini")
RESULTS_FILE = pretrained.TEST_RESULTS_FILE          # read back with pretrained.test_results()
METHODS = ("teacher", "entropic", "variable-rate", "jpeg", "webp")


def plan(methods=METHODS) -> list[tuple[str, float | None]]:
    """Every point the study scores, as ``(method, value)``: the teacher, each codec quality, each shipped β."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {METHODS}")
    todo = [("teacher", None)] if "teacher" in methods else []
    todo += [("entropic", b) for b in pretrained.betas("mini")] if "entropic" in methods else []
    if "variable-rate" in methods:          # its anchors: one per doubling of β over its grid
        todo += [("variable-rate", b) for b in pretrained.variable_student("mini").codec.grid.anchors]
    todo += [(fmt, q) for fmt, grid in (("jpeg", JPEG_QUALITIES), ("webp", WEBP_QUALITIES)) if fmt in methods
             for q in grid]
    return todo


def _path(out: Path, method: str, value) -> Path:
    return out / "points" / f"{method if value is None else f'{method}-{value:g}'}.json"


def score(method: str, value, test, teacher) -> dict:
    """One point on ``test``: accuracy with its interval, real bytes at batch 1, each image's correctness."""
    tic = time.perf_counter()
    if method == "teacher":
        acc, _, hits = decoded_accuracy(teacher, test, lambda x: (x, 0), per_image=True)     # the original pixels
        point = {"method": "teacher", "knob": None, "value": None, "accuracy": acc,
                 "ci95": list(rd.accuracy_interval(sum(hits), len(hits))), "correct_bits": rd.pack_correct(hits)}
    elif method in ("jpeg", "webp"):
        point = codec_point(teacher, test, method, int(value))
    else:
        student = pretrained.student("mini", beta=value) if method == "entropic" else pretrained.variable_student()
        point = {"method": method, "knob": "beta", "value": value,       # every student sends at its grid's β
                 **{k: v for k, v in evaluate_student(student, test, beta=value).items() if k != "beta"}}
    return {**point, "n": len(test), "seconds": time.perf_counter() - tic}


def run(out: Path | str = OUT, methods=METHODS, limit: int | None = None, progress: bool = True) -> list[dict]:
    """Score every planned point not yet under ``out/points`` (resumable); return all the points there."""
    out = Path(out)
    test = mini_test_set(limit)
    digest = test.digest() if limit is None else None
    teacher = pretrained.teacher("mini")
    todo = plan(methods)
    for k, (method, value) in enumerate(todo, 1):
        path = _path(out, method, value)
        if path.is_file():
            continue
        point = score(method, value, test, teacher)
        checkpoint.write_json(path, {**point, "test_sha256": digest})
        if progress:
            name = method if value is None else f"{method} {value:g}"
            kb = f" at {point['kb_mean']:.3f} KB" if "kb_mean" in point else ""
            print(f"[{k}/{len(todo)}] {name}: {point['accuracy']:.2f} % [{point['ci95'][0]:.2f}, "
                  f"{point['ci95'][1]:.2f}]{kb} on {point['n']} test images ({point['seconds']:.0f} s)", flush=True)
    return [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]


def collect(out: Path | str = OUT, dest: Path | str | None = None) -> Path:
    """The points under ``out`` → one result file (``data/results_test_mini.json`` by default), refusing points
    scored on another test set or on fewer images than the others."""
    out = Path(out)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    teacher = [p for p in points if p["method"] == "teacher"]
    if not teacher:
        raise FileNotFoundError(f"no teacher point under {out / 'points'}: run `minist test-study` first")
    sizes = {p["n"] for p in points}
    digests = {p.get("test_sha256") for p in points}
    if len(sizes) > 1 or len(digests) > 1:
        raise ValueError(f"the points under {out / 'points'} were scored on different image sets (n = "
                         f"{sorted(sizes)}); delete the folder and run `minist test-study` again")
    t = teacher[0]
    points = [p for p in points if p["method"] != "teacher"]
    order = {m: i for i, m in enumerate(METHODS)}
    points.sort(key=lambda p: (order.get(p["method"], 99), p["value"]))
    for p in points:
        p.pop("test_sha256", None)
    doc = {"preset": "mini", "split": "test", "n": t["n"], "test_sha256": t.get("test_sha256"),
           "dataset": "Fashion-on-Photos, split 'test': 10,000 images from the val pools (Fashion-MNIST's test "
                      "products, the val photos) on their own generator stream; no choice saw them",
           "teacher_accuracy": t["accuracy"], "teacher_ci95": t["ci95"], "teacher_correct_bits": t["correct_bits"],
           "units": {"kb_mean": "KB per image, 1 KB = 1024 B, headers included",
                     "accuracy": "% top-1 after real decoding, batch 1", "ci95": "95 % Wilson interval"},
           "made_by": "minist test-study", "torch": torch.__version__,
           "seconds": sum(p.get("seconds", 0.0) for p in points) + t.get("seconds", 0.0), "points": points}
    dest = Path(dest) if dest else data_dir() / RESULTS_FILE
    checkpoint.write_json(dest, doc)
    return dest


STUDENTS = ("entropic", "variable-rate")


def summary(res: dict | None = None, draws: int = 1000) -> dict:
    """The headline numbers of a test-split result file (default: the shipped one), every one with its interval.

    * ``students``: each student point, its gap to the teacher on the same images (McNemar: difference, 95 %
      interval, p), and its rival codec point (:func:`minist.rd.versus_codecs`: the cheapest JPEG/WebP file with at
      least its bytes, the more accurate of the two) with the paired test against it;
    * ``reach``: bytes at teacher − 1 pt for each student and the best codec, and their ratio, with bootstrap
      intervals (:func:`minist.rd.bootstrap_reach`);
    * ``top``: the per-β student's most accurate point against the variable-rate student's, paired: do its extra
      bytes buy accuracy?"""
    res = res or pretrained.test_results()
    n = res["n"]
    teacher = rd.unpack_correct(res["teacher_correct_bits"], n)
    students = []
    for method in STUDENTS:
        rivals = {r["value"]: r for r in rd.versus_codecs(res, method)}
        for p in sorted((p for p in res["points"] if p["method"] == method), key=lambda p: p["value"]):
            r = rivals[p["value"]]
            students.append({**{k: p[k] for k in ("method", "value", "accuracy", "ci95", "kb_mean")},
                             "vs_teacher": rd.mcnemar(rd.unpack_correct(p["correct_bits"], n), teacher),
                             "rival": None if r["rival"] is None else {k: r["rival"][k] for k in
                                                                       ("method", "value", "accuracy", "kb_mean")},
                             "vs_rival": r["paired"]})
    reach = [rd.bootstrap_reach(res, m, draws=draws) for m in rd.held(res, STUDENTS)]
    best = {m: max((p for p in res["points"] if p["method"] == m), key=lambda p: p["accuracy"], default=None)
            for m in STUDENTS}
    top = None
    if all(best.values()):
        a, b = best["entropic"], best["variable-rate"]
        top = {"entropic": {k: a[k] for k in ("value", "accuracy", "kb_mean")},
               "variable-rate": {k: b[k] for k in ("value", "accuracy", "kb_mean")},
               "paired": rd.mcnemar(rd.unpack_correct(a["correct_bits"], n), rd.unpack_correct(b["correct_bits"], n))}
    return {"n": n, "teacher": {"accuracy": res["teacher_accuracy"], "ci95": res["teacher_ci95"]},
            "students": students, "reach": reach, "top": top}


def paired_text(d: dict, unit: str = "") -> str:
    """A paired difference (:func:`minist.rd.mcnemar`) as '+0.42 [−0.10, +0.94], p = 0.12' (``unit`` after the
    number, e.g. ' pt')."""
    lo, hi = d["ci95_pt"]
    p = f"p = {d['p_value']:.2g}" if d["p_value"] >= 1e-4 else "p < 1e-4"
    return f"{d['difference_pt']:+.2f}{unit} [{lo:+.2f}, {hi:+.2f}], {p}"


def reach_text(r: dict, key: str) -> str:
    """One quantity of :func:`minist.rd.bootstrap_reach` (``kb``, ``kb_rival`` or ``ratio``) with its interval,
    or why it has none."""
    unit = "×" if key == "ratio" else " KB"
    if r[key] is None:
        return f"never ({100 * r[key + '_reached']:.0f} % of the draws reach it)"
    ci = r[key + "_ci95"]
    return f"{r[key]:.3f}{unit} " + (f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else
                                     f"(reached in {100 * r[key + '_reached']:.0f} % of the draws)")


def markdown(summ: dict | None = None) -> str:
    """The README's test-split table (:func:`summary` as Markdown): every student with its interval, its paired gap
    to the teacher and to its rival codec, then bytes at teacher − 1 pt. ``minist test-study --markdown`` prints
    it; a test checks the README holds it verbatim."""
    s = summ or summary()
    t = s["teacher"]
    lines = ["| model | KB per image | accuracy [95 % CI] | − teacher, pt [95 % CI] | rival codec (≥ its bytes) | "
             "− rival, pt [95 % CI] |", "| --- | --- | --- | --- | --- | --- |",
             f"| teacher, original pixels | — | {t['accuracy']:.2f} % [{t['ci95'][0]:.2f}, {t['ci95'][1]:.2f}] | — | — "
             "| — |"]
    for r in s["students"]:
        name = "per-β student" if r["method"] == "entropic" else "variable-rate student"
        q = r["rival"]
        rival = "none" if q is None else f"{q['method'].upper() if q['method'] == 'jpeg' else 'WebP'} " \
                                         f"q{q['value']:g}: {q['kb_mean']:.3f} KB, {q['accuracy']:.2f} %"
        lines.append(f"| {name}, β {r['value']:g} | {r['kb_mean']:.3f} | {r['accuracy']:.2f} % [{r['ci95'][0]:.2f}, "
                     f"{r['ci95'][1]:.2f}] | {paired_text(r['vs_teacher'])} | {rival} | "
                     f"{'—' if r['vs_rival'] is None else paired_text(r['vs_rival'])} |")
    lines.append("")
    for r in s["reach"]:
        name = "per-β students" if r["method"] == "entropic" else "variable-rate student"
        lines.append(f"Bytes at teacher − 1 pt ({t['accuracy'] - 1:.2f} %), {name}: {reach_text(r, 'kb')}; the "
                     f"better of JPEG and WebP: {reach_text(r, 'kb_rival')}; ratio {reach_text(r, 'ratio')} "
                     f"({r['draws']} bootstrap draws).")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(args) -> int:
    if args.markdown:
        print(markdown(), end="")
        return 0
    if not args.collect_only:
        run(args.out, tuple(args.methods.split(",")), args.limit)
    dest = collect(args.out, args.dest)
    print(f"wrote {dest}")
    return 0
