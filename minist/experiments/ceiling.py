"""Where the students' ceiling comes from, measured: one cause that needs no training, and training arms.

The students flatten 1.4–1.9 pt below the teacher whatever the rate. One candidate costs no training to test: the
teacher's ``layer2`` … ``layer4`` keep the BatchNorm statistics of the *teacher's own* ``layer1`` features, while
they now see the decoder's. :func:`recalibrate_tail` re-estimates those statistics on decoded training images
(nothing else changes: no weight, no byte), and :func:`bn_ablation` scores each student before and after on the
val set (the set for choosing) with the paired test.

The other candidates each need a student trained: :data:`ARMS` are the mini recipe at β = 0.02 with one factor
changed (the budget, latent channels C, the decoder's width, what stage 2 learns from), plus the same recipe on
another seed for the noise between two runs. :func:`run` trains them (resumable; the stage-2 arms start from the
base arm's stage 1, so they differ in stage 2 alone) and :func:`collect` scores each against the base arm on the
same 2,000 val images (paired) and against the shipped per-β and variable-rate curves at equal bytes.

    minist bench ceiling            # both tables, ≈15 min on one thread (the BatchNorm arms; the rest is read)
    minist ceiling --test           # train the arms (one thread: ≈20 min per 8 + 2 arm, ≈35–40 per 16 + 4, 3–4 per
                                    # stage-2 arm), score the budget arms on the test split, collect them
                                    # → data/results_ceiling_mini.json
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, pretrained, rd
from ..config import StudentTrainConfig, mini_test_set, mini_val_set
from ..data.synth import FashionOnPhotos
from ..evaluate import evaluate_student, rate_free_accuracy
from ..models.store import load_student
from ..recipes import train_student
from ..utils import data_dir
from .test_study import paired_text, reach_text


@torch.no_grad()
def correct_on(student, dataset, beta=None, batch_size: int = 200) -> np.ndarray:
    """Per-image correctness of ``student`` at ``beta`` (eval mode: ẑ = round(z − m) + m, exactly what the bytes
    carry, so the same predictions as through rANS, in batches)."""
    student.eval()
    hits = []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        hits.append((student(x, beta=beta)["logits"].argmax(1) == y).numpy())
    return np.concatenate(hits)


@torch.no_grad()
def recalibrate_tail(student, images, beta=None, batch_size: int = 200):
    """A copy of ``student`` whose tail's BatchNorm statistics (running mean and variance of ``layer2`` …
    ``layer4``) are re-estimated on the decoded features of ``images`` at ``beta``: a cumulative average over all
    of them, every weight and the bitstream unchanged."""
    s = copy.deepcopy(student).eval()
    norms = [m for name in ("layer2", "layer3", "layer4") for m in getattr(s, name).modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None              # cumulative: every batch weighs the same
        m.train()
    for x, _ in torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False):
        s(x, beta=beta)
    return s.eval()


def _shipped(betas, variable_betas) -> list[tuple]:
    """``(method, β, student, the β to run it at)`` for the shipped per-β students at ``betas`` and the variable-rate
    student at ``variable_betas`` (loaded once)."""
    arms = [("entropic", b, pretrained.student("mini", beta=b), None) for b in betas]
    if variable_betas:
        variable = pretrained.variable_student("mini")
        arms += [("variable-rate", b, variable, b) for b in variable_betas]
    return arms


def bn_ablation(betas=(0.005, 0.08, 0.32), variable_betas=(0.005, 0.02, 0.08, 0.32), n_train: int = 4000,
                limit: int | None = None) -> list[dict]:
    """Each shipped student as it is and with its tail's BatchNorm re-estimated on ``n_train`` decoded training
    images, on the val set (or its first ``limit``): accuracy both ways and the paired difference."""
    val = mini_val_set(limit)
    train = FashionOnPhotos("train", epoch=10_000, train_length=n_train)    # an epoch no student trained on
    rows = []
    for method, b, student, beta in _shipped(betas, variable_betas):
        before = correct_on(student, val, beta)
        after = correct_on(recalibrate_tail(student, train, beta), val, beta)
        rows.append({"method": method, "beta": b, "before": 100 * before.mean(), "after": 100 * after.mean(),
                     "paired": rd.mcnemar(after, before), "n": len(val), "n_train": n_train})
    return rows


def rounding_ablation(betas=(0.005, 0.02, 0.08, 0.32), variable_betas=(0.005, 0.02, 0.08, 0.32),
                      limit: int | None = None) -> list[dict]:
    """Each shipped student (per-β at ``betas``, the variable-rate one at ``variable_betas``) with bytes free (its
    latent unrounded: :func:`minist.evaluate.rate_free_accuracy`) against itself as sent (rounded, the bitstream's
    answers), on the val set (or its first ``limit``), paired: how much of the gap to the teacher is the rounding to
    the rate's bytes, and how much is the bottleneck's rebuilding of ``layer1`` (what is left with bytes free)."""
    val = mini_val_set(limit)
    rows = []
    for method, b, student, beta in _shipped(betas, variable_betas):
        sent = correct_on(student, val, beta)
        r = rate_free_accuracy(student, val, beta=beta)
        free = rd.unpack_correct(r["correct_bits"], r["n"])
        rows.append({"method": method, "beta": b, "sent": 100 * sent.mean(), "free": r["accuracy"],
                     "paired": rd.mcnemar(free, sent), "n": len(val)})
    return rows


# ---- training arms --------------------------------------------------------------------------------------------
BETA = 0.02                       # ≈0.5 KB: the rate of the goal ("within 1 pt of the teacher at ≤ 0.5 KB")
OUT = Path("runs/ceiling")
RESULTS_FILE = pretrained.CEILING_FILE          # read back with pretrained.ceiling_results()
QUICK = dict(max_steps=2, train_length=128, val_length=40, eval_length=20)      # tests: the machinery only


@dataclass(frozen=True)
class Arm:
    """The mini recipe at :data:`BETA` with ``overrides`` (StudentTrainConfig fields); ``stage2_only``: the arm
    starts from the base arm's stage-1 checkpoint, so it differs from the base arm in stage 2 alone."""
    name: str
    factor: str
    overrides: dict = field(default_factory=dict)
    stage2_only: bool = False


ARMS = (
    Arm("base", "the mini recipe (8 + 2 epochs, C = 12, decoder 64, 32; stage 2: decoder, ½ CE + ½ KD)"),
    Arm("seed-1", "the same recipe, another seed: the noise between two runs", {"seed": 1}),
    Arm("seed-2", "the same recipe, a third seed", {"seed": 2}),
    Arm("epochs-16+4", "budget ×2: 16 + 4 epochs (the variable-rate student's)",
        {"stage1_epochs": 16, "stage2_epochs": 4}),
    Arm("channels-24", "latent channels C = 24 (the paper's)", {"channels": 24}),
    Arm("decoder-2x", "decoder hidden widths ×2 (128, 64)", {"decoder_widths": (128, 64)}),
    Arm("stage2-ce-only", "stage 2 on the labels alone (no KD on logits)", {"alpha": 1.0}, True),
    Arm("stage2-kd-only", "stage 2 on the teacher's logits alone", {"alpha": 0.0}, True),
    Arm("stage2-tail", "stage 2 also fine-tunes layer2 … head (the paper's choice)", {"stage2_tail": True}, True),
    # the budget at the lower rates: is the gain at β 0.02 a gain of the whole curve? (compared at equal bytes)
    Arm("epochs-16+4-beta0.005", "budget ×2 at β 0.005 (the curve's top: bytes at teacher − 1 pt)",
        {"beta": 0.005, "stage1_epochs": 16, "stage2_epochs": 4}),
    Arm("epochs-16+4-beta0.01", "budget ×2 at β 0.01 (near where the 16 + 4 curve crosses teacher − 1 pt)",
        {"beta": 0.01, "stage1_epochs": 16, "stage2_epochs": 4}),
    Arm("epochs-16+4-beta0.04", "budget ×2 at β 0.04", {"beta": 0.04, "stage1_epochs": 16, "stage2_epochs": 4}),
    Arm("epochs-16+4-beta0.08", "budget ×2 at β 0.08", {"beta": 0.08, "stage1_epochs": 16, "stage2_epochs": 4}),
    Arm("epochs-32+8", "budget ×4: 32 + 8 epochs", {"stage1_epochs": 32, "stage2_epochs": 8}),
    Arm("epochs-16+4-decoder-2x", "budget ×2 and the decoder ×2 together",
        {"stage1_epochs": 16, "stage2_epochs": 4, "decoder_widths": (128, 64)}),
    # the rounding: stage 1's decoder reads the noisy latent, the bitstream's is rounded (the wide decoder loses
    # most to it with bytes free); here stage 1's decoder reads the rounded one, gradient straight through
    Arm("epochs-16+4-decoder-2x-ste", "and stage 1's decoder reads the rounded latent (straight-through)",
        {"stage1_epochs": 16, "stage2_epochs": 4, "decoder_widths": (128, 64), "straight_through": True}),
)


def _arms(names=None) -> list[Arm]:
    if names is None:
        return list(ARMS)
    known = {a.name: a for a in ARMS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {list(known)}")
    return [known[n] for n in names]


def config_for(arm: Arm, out: Path | str = OUT, quick: bool = False) -> StudentTrainConfig:
    over = {"beta": BETA, **arm.overrides, **(QUICK if quick else {})}
    return StudentTrainConfig(**over, out=str(Path(out) / arm.name))


def run(out: Path | str = OUT, names=None, quick: bool = False, progress: bool = True) -> list[Path]:
    """Train every arm that has no ``student.pt`` under ``out/<arm>`` yet (each resumable after an interruption);
    the stage-2 arms copy the base arm's finished stage 1 first. Returns the finished arms' folders."""
    out, teacher, done = Path(out), pretrained.teacher("mini"), []
    for arm in _arms(names):
        folder = out / arm.name
        if not (folder / "student.pt").is_file():
            if arm.stage2_only:
                base = out / "base"
                if not (base / "stage1-last.pt").is_file():
                    raise FileNotFoundError(f"the arm {arm.name!r} starts from the base arm's stage 1, and "
                                            f"{base / 'stage1-last.pt'} is missing: run the 'base' arm first")
                folder.mkdir(parents=True, exist_ok=True)
                if not (folder / "stage1-last.pt").is_file():       # a resumed stage 2 keeps its own copy
                    shutil.copyfile(base / "stage1-last.pt", folder / "stage1-last.pt")
            tic = time.time()
            train_student(config_for(arm, out, quick), teacher, resume=True, progress=progress)
            if progress:
                print(f"arm {arm.name}: trained in {(time.time() - tic) / 60:.1f} min", flush=True)
        done.append(folder)
    return done


# chosen on the val set, then reported once on the test split: the arms that change the whole per-β curve
TEST_ARMS = ("epochs-16+4-beta0.005", "epochs-16+4-beta0.01", "epochs-16+4", "epochs-16+4-beta0.04",
             "epochs-16+4-beta0.08", "epochs-32+8", "epochs-16+4-decoder-2x", "epochs-16+4-decoder-2x-ste")


def _budget(train: dict) -> str:
    """A test point's method: the per-β recipe with its budget (and decoder, where it is not the preset's), e.g.
    ``entropic-16+4`` or ``entropic-16+4-decoder128,64`` (the shipped students: ``entropic``); ``-ste``: stage 1's
    decoder read the rounded latent."""
    widths = train.get("decoder_widths")
    return (f"entropic-{train['stage1_epochs']}+{train['stage2_epochs']}"
            + (f"-decoder{','.join(map(str, widths))}" if widths else "")
            + ("-ste" if train.get("straight_through") else ""))


def score_on_test(out: Path | str = OUT, names=None, progress: bool = True) -> list[dict]:
    """Each finished arm of ``names`` (default: those of :data:`TEST_ARMS` that have finished) on the 10,000-image
    test split (real bytes, batch 1, each image's correctness), once: kept as ``out/<arm>/test.json``. Refuses a
    test set other than the shipped study's."""
    out, test, shipped = Path(out), None, pretrained.test_results()
    if names is None:
        names = [n for n in TEST_ARMS if (out / n / "student.pt").is_file()]
    points = []
    for name in names:
        folder = out / name
        path = folder / "test.json"
        if not path.is_file():
            if not (folder / "student.pt").is_file():
                raise FileNotFoundError(f"{folder / 'student.pt'} is missing: run `minist ceiling --arms {name}`")
            if test is None:
                test = mini_test_set()
                if test.digest() != shipped["test_sha256"]:
                    raise ValueError("this machine renders another test split than results_test_mini.json's: "
                                     "check the locked versions (README, 'Start here')")
            tic = time.time()
            student, meta = load_student(folder / "student.pt")
            r = evaluate_student(student, test)
            point = {"method": _budget(meta["train"]), "knob": "beta", "value": meta["train"]["beta"], "arm": name,
                     **{k: r[k] for k in ("accuracy", "ci95", "kb_mean", "bytes_mean", "bytes_p95", "header_bytes",
                                          "correct_bits")}, "n": len(test), "seconds": time.time() - tic}
            checkpoint.write_json(path, point)
            if progress:
                print(f"{name} on the test split: {r['accuracy']:.2f} % at {r['kb_mean']:.3f} KB "
                      f"({time.time() - tic:.0f} s)", flush=True)
        points.append(json.loads(path.read_text()))
    return points


# what collect computes from an arm's own numbers; an arm kept from an earlier file is stripped of it first
_DERIVED = ("versus_base", "versus_per_beta_curve_pt", "versus_variable_curve_pt", "versus_teacher", "versus_shipped")


def _earlier(dest: Path) -> dict:
    """The result file that ``dest`` already holds (or an empty one): the arms of another machine's run, kept
    where ``out`` lacks them."""
    return json.loads(dest.read_text()) if dest.is_file() else {"arms": [], "test": None}


def _test_section(out: Path, earlier: dict | None = None) -> dict | None:
    """The arms scored on the test split, each paired against the teacher, and bytes at teacher − 1 pt for their
    curve against the best codec (:func:`minist.rd.bootstrap_reach`), on the shipped study's images. An arm with
    no ``test.json`` under ``out`` is kept from ``earlier`` (a result file) when it was scored on the same split."""
    shipped = pretrained.test_results()
    section = (earlier or {}).get("test") or {}
    kept = ({p["arm"]: {k: v for k, v in p.items() if k not in _DERIVED} for p in section.get("points", [])}
            if section.get("test_sha256") == shipped["test_sha256"] else {})
    points = []
    for name in TEST_ARMS:
        if (path := out / name / "test.json").is_file():
            points.append(json.loads(path.read_text()))
        elif name in kept:
            points.append(kept[name])
    if not points:
        return None
    teacher = rd.unpack_correct(shipped["teacher_correct_bits"], shipped["n"])
    for p in points:          # paired on the same images: the teacher, and the shipped students at the same β
        hits = rd.unpack_correct(p["correct_bits"], p["n"])
        p["versus_teacher"] = rd.mcnemar(hits, teacher)
        p["versus_shipped"] = {q["method"]: {"kb_mean": q["kb_mean"], "accuracy": q["accuracy"],
                                             **rd.mcnemar(hits, rd.unpack_correct(q["correct_bits"], q["n"]))}
                               for q in shipped["points"]
                               if q["method"] in ("entropic", "variable-rate") and q["value"] == p["value"]}
    res = {**shipped, "points": [p for p in shipped["points"] if p["method"] in ("jpeg", "webp")] + points}
    methods = sorted({p["method"] for p in points})
    return {"n": shipped["n"], "test_sha256": shipped["test_sha256"], "teacher_accuracy": shipped["teacher_accuracy"],
            "points": points, "reach": [rd.bootstrap_reach(res, method=m) for m in methods]}


def _curve(points) -> list[dict]:
    """A shipped curve's points that did not collapse (≤ 15 %: the medians' answer)."""
    return [p for p in points if p["accuracy"] > 15.0]


def collect(out: Path | str = OUT, dest: Path | str | None = None) -> Path:
    """Every finished arm under ``out``: its val accuracy at real bytes (fp32, the run's own final evaluation),
    the paired difference to the base arm on the same images, and its accuracy minus the shipped per-β and
    variable-rate curves' at its bytes (interpolated on log KB: the effect at equal bytes).

    An arm that ``out`` lacks is kept from the result file ``dest`` already holds, when it was scored on the same
    val set: arms trained on another machine (or in an earlier session whose ``out`` is gone) stay in the table,
    and one run adds the arms it trained."""
    out, study = Path(out), pretrained.results("mini")
    dest = Path(dest) if dest else data_dir() / RESULTS_FILE
    earlier = _earlier(dest)
    kept = {a["arm"]: {k: v for k, v in a.items() if k not in _DERIVED} for a in earlier["arms"]}
    arms = []
    for arm in ARMS:
        path = out / arm.name / "student.pt"
        if not path.is_file():
            if arm.name in kept:
                arms.append(kept[arm.name])
            continue
        meta = checkpoint.load(path, kind="student")["meta"]
        v = meta["val"]
        arms.append({"arm": arm.name, "factor": arm.factor, "overrides": dict(arm.overrides),
                     "same_rate": arm.overrides.get("beta", BETA) == BETA, "stage2_only": arm.stage2_only,
                     "val_sha256": meta["val_set"]["sha256"],
                     "train_minutes": sum(h["seconds"] for h in meta["history"]           # a stage-2 arm: its own
                                          if not arm.stage2_only or h.get("stage") == 2) / 60,   # stage 2 only
                     **{k: v[k] for k in ("accuracy", "ci95", "kb_mean", "bytes_mean", "n", "correct_bits")}})
    if not arms or arms[0]["arm"] != "base":
        raise FileNotFoundError(f"no finished base arm under {out} (nor in {dest}): run `minist ceiling` first")
    if len({(a["val_sha256"], a["n"]) for a in arms}) > 1:
        raise ValueError(f"the arms under {out} and those kept from {dest} were scored on different val sets; "
                         f"run them again with one recipe (or move {dest} aside to start a new table)")
    per_beta = _curve([p for p in study["points"] if p["method"] == "entropic"])
    variable = _curve(pretrained.variable_results("mini")["fine"])
    base = rd.unpack_correct(arms[0]["correct_bits"], arms[0]["n"])
    for a in arms:
        hits = rd.unpack_correct(a["correct_bits"], a["n"])
        a["versus_base"] = None if a["arm"] == "base" or not a["same_rate"] else rd.mcnemar(hits, base)
        for name, curve in (("per_beta", per_beta), ("variable", variable)):
            at = rd.accuracy_at_kb(curve, a["kb_mean"])
            a[f"versus_{name}_curve_pt"] = None if at is None else a["accuracy"] - at
    doc = {"preset": "mini", "beta": BETA, "split": "val", "n": arms[0]["n"], "val_sha256": arms[0]["val_sha256"],
           "teacher_accuracy": study["teacher_accuracy"],
           "about": "training arms of the ceiling ablation: the mini recipe at β 0.02 with one factor changed, "
                    "each scored once on the 2,000 val images (the set for choosing) at real bytes, batch 1",
           "made_by": "minist ceiling", "torch": torch.__version__, "arms": arms, "test": _test_section(out, earlier)}
    checkpoint.write_json(dest, doc)
    return dest


def arm_rows(doc: dict) -> list[tuple[str, ...]]:
    """The table of a result file: arm, what it changes, accuracy and KB, the paired difference to the base arm,
    and the difference to each shipped curve at equal bytes."""
    def pt(x):
        return "–" if x is None else f"{x:+.2f}"
    rows = []
    for a in doc["arms"]:
        vb = a["versus_base"]
        paired = "reference" if a["arm"] == "base" else "– (another β)" if vb is None else paired_text(vb)
        rows.append((a["arm"], a["factor"], f"{a['accuracy']:.2f} % at {a['kb_mean']:.3f} KB", paired,
                     pt(a["versus_per_beta_curve_pt"]), pt(a["versus_variable_curve_pt"]),
                     f"{a['train_minutes']:.0f}"))
    return rows


ARM_COLUMNS = ("arm", "what changes", "val accuracy at real bytes", "paired vs base (pt, 95 %, McNemar)",
               "vs per-β curve at equal bytes (pt)", "vs variable-rate curve (pt)", "training min")


# the base recipe and its runs on other seeds (the arms that change the seed alone)
SEED_ARMS = ("base",) + tuple(a.name for a in ARMS if set(a.overrides) == {"seed"})


def seed_spread(doc: dict) -> dict | None:
    """The base recipe over seeds (:data:`SEED_ARMS` that finished): each run's accuracy minus the shipped per-β
    curve at its bytes, their mean and sd, and each run's accuracy and KB. The McNemar intervals of the table count
    the val images' noise alone; this is the training run's: an arm's effect at equal bytes within ≈2 sd of the mean
    is within what another seed of the base recipe gives. None with fewer than two runs."""
    runs = [a for a in doc["arms"] if a["arm"] in SEED_ARMS and a["versus_per_beta_curve_pt"] is not None]
    if len(runs) < 2:
        return None
    pts = np.array([a["versus_per_beta_curve_pt"] for a in runs])
    return {"arms": [a["arm"] for a in runs], "at_equal_bytes_pt": pts.tolist(), "mean_pt": float(pts.mean()),
            "sd_pt": float(pts.std(ddof=1)), "kb": [a["kb_mean"] for a in runs],
            "accuracy": [a["accuracy"] for a in runs]}


def seed_text(spread: dict) -> str:
    """One sentence for :func:`seed_spread`."""
    runs = ", ".join(f"{a} {acc:.2f} % at {kb:.3f} KB ({d:+.2f})" for a, acc, kb, d in
                     zip(spread["arms"], spread["accuracy"], spread["kb"], spread["at_equal_bytes_pt"]))
    return (f"The base recipe over {len(spread['arms'])} seeds (vs the per-β curve at equal bytes): {runs}; mean "
            f"{spread['mean_pt']:+.2f}, sd {spread['sd_pt']:.2f} pt between runs.")


def markdown(doc: dict | None = None) -> str:
    doc = doc or pretrained.ceiling_results()
    lines = ["| " + " | ".join(ARM_COLUMNS) + " |", "| " + " | ".join("---" for _ in ARM_COLUMNS) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in arm_rows(doc)]
    if spread := seed_spread(doc):
        lines += ["", seed_text(spread)]
    return "\n".join(lines) + "\n"


def test_markdown(doc: dict | None = None) -> str:
    """The test section: each arm against the teacher on the 10,000 test images, and bytes at teacher − 1 pt."""
    t = (doc or pretrained.ceiling_results())["test"]
    def shipped(p, method):
        q = p["versus_shipped"].get(method)
        return "–" if q is None else f"{q['accuracy']:.2f} % at {q['kb_mean']:.3f} KB: {paired_text(q)}"
    lines = ["| arm | β | test accuracy (95 %) | KB | vs teacher (pt, paired) | vs the shipped per-β student at this β "
             "| vs the variable-rate student at this β |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {p['arm']} | {p['value']:g} | {p['accuracy']:.2f} % [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] | "
              f"{p['kb_mean']:.3f} | {paired_text(p['versus_teacher'])} | {shipped(p, 'entropic')} | "
              f"{shipped(p, 'variable-rate')} |" for p in t["points"]]
    for r in t["reach"]:
        lines += ["", f"Bytes at teacher − 1 pt ({t['teacher_accuracy'] - 1:.2f} %), {t['n']:,} test images, "
                  f"bootstrap 95 %: {r['method']} {reach_text(r, 'kb')}; the best codec {reach_text(r, 'kb_rival')};"
                  f" ratio {reach_text(r, 'ratio')}."]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    if args.markdown:
        doc = pretrained.ceiling_results()
        print(markdown(doc) + ("\n" + test_markdown(doc) if doc.get("test") else ""), end="")
        return 0
    names = None if args.arms is None else [n for n in args.arms.split(",") if n]
    if not args.collect_only:
        run(args.out, names, quick=args.quick)
        if args.test:
            score_on_test(args.out)
    dest = collect(args.out, args.dest)
    print(markdown(json.loads(Path(dest).read_text())), end="")
    print(f"wrote {dest}")
    return 0
