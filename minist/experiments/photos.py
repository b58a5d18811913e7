"""The study on real photographs: the whole of Imagenette v2 (``../shared/data/imagenette``), 128 × 128.

Parts, each resumable (run it again after an interruption; finished work is kept in ``runs/photos``):

* ``teacher``: the mini teacher's architecture (ResNet-18's layout at a quarter of its widths, so the student's
  encoder stays 0.139 of its FLOPs), trained **from scratch** on the 8,994 training photos with random-resized
  crops, flips, MixUp/CutMix and a long cosine schedule (optionally fine-tuned at the test resolution:
  :data:`FIXRES_RECIPE`); chosen on the 475 ``choice`` photos;
* ``student --beta B``: an Entropic Student from that teacher (16 + 4 epochs, the mini recipe's schedule twice as
  long, with a 250-step rate warm-up: :data:`STUDENT_RECIPE`) on the same augmented stream
  (teacher and student see the same view: Beyer et al.'s "consistent"); ``--method variable-rate``: one student
  for every β from B up; ``--stage1-epochs``, ``--mixup``, ``--channels``, ``--stage2-tail`` and ``--tag`` for the
  ablation; scored on the test photos at real bytes, with its stage-1-only point;
* ``codecs``: JPEG (q 1 … 90) and WebP (q 0 … 90) + the teacher on the test photos, real bytes;
* ``collect``: every finished point → ``data/results_imagenette.json`` (relative paths only, 95 % intervals);
* ``all``: every part in order (the teacher shipped when trained, the students at ``BETAS``, the variable-rate
  student), then ``collect`` and the figure (``docs/rd_photos.png``: :func:`minist.experiments.figures.photos_figure`);
* ``fixres``: a diagnostic: the shipped teacher fine-tuned at its test resolution (:func:`run_fixres`;
  ``teacher --fixres-epochs N`` runs that fine-tune on the run's own teacher, as its last step).

    minist photos all                     # make photos; hours on a 2-core CPU, resumable: run it again
    minist photos teacher [--ship]        # or one part at a time
    minist photos student --beta 0.005
    minist photos codecs && minist photos collect

Every number reported is measured on the 3,925 official val photos (the ``test`` split), which no choice sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import torch

from .. import checkpoint, pretrained, rd
from ..config import StudentTrainConfig, TeacherConfig, TeacherTrainConfig
from ..data import imagenette
from ..evaluate import codec_point, decoded_accuracy, evaluate_accuracy, evaluate_student, rate_free_accuracy
from ..models.store import load_student, load_teacher
from ..plots import STUDY_METHODS
from ..recipes import STAGE2_FIELDS, ship_half, train_student, train_teacher
from ..utils import data_dir
from .figures import photos_figure

OUT = Path("runs/photos")
RECIPE_METHODS = ("entropic", "stage1-only")     # the recipe's per-β points; an arm's method carries its --tag
# the students whose bytes the study reads against the codecs' (`minist bench photos`' ratio by target): the full
# students the figure draws (the recipe's, the variable-rate one, the ablation arm that reaches the teacher − 1 pt
# and its second seed)
HEADLINE_STUDENTS = tuple(m for m in STUDY_METHODS if m not in ("jpeg", "webp", "stage1-only"))
# the settings a student point records (its ``recipe``), and what one that predates a setting had: the default
RECIPE_KEYS = ("stage1_epochs", "stage2_epochs", "mixup", "channels", "decoder_widths", "rate_warmup_steps",
               "stage2_tail", "straight_through", "seed")
RECIPE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudentTrainConfig)}
TEACHER_FILE = "teacher_imagenette.pt"
RESULTS_FILE = pretrained.PHOTO_RESULTS_FILE      # read back with pretrained.photo_results()
# the real-photo teacher's recipe (chosen on the ``choice`` photos; data/README.md)
TEACHER_RECIPE = dict(epochs=100, batch_size=64, lr=0.1, weight_decay=5e-4, label_smoothing=0.1, warmup_epochs=2,
                      mixup=0.2, workers=0)
TRAIN_SIZE = 112            # the teacher trains on 112-px crops and is scored at 128 px: 1.3× cheaper steps, and
                            # random-resized crops enlarge objects, which a larger test size matches (FixRes)
# an optional last step for the teacher (``--fixres-epochs 3``): a fine-tune at the test resolution (Touvron et
# al.'s FixRes; ``crop="test-like"``), every weight, a fresh cosine from a small rate. It lifted the 50-epoch
# teacher on the choice photos (85.68 → 88.21 %) but not the 100-epoch one (87.37 → 86.95 %), so the recipe
# leaves it off (data/README.md)
FIXRES_RECIPE = dict(epochs=0, batch_size=64, lr=0.004, weight_decay=5e-5, label_smoothing=0.1, warmup_epochs=0,
                     mixup=0.0, workers=0)
# the students' recipe: twice the mini recipe's length (16 + 4 epochs), chosen on the choice photos over 8 + 2
# (83.79 against 82.95 % at β 0.02: the ablation, data/README.md); ``--tag short`` keeps the 8 + 2 arm. The rate's
# price rises over stage 1's first 250 steps (the variable-rate recipe's warm-up): on the 100-epoch teacher the β 0.16
# student collapsed without it in its first epoch (every photo 8 bytes, 10.11 %: the medians alone), and with it too
# (11.79 % at 63 bytes after 4 epochs, its distortion flat), so β 0.16 is not in :data:`BETAS`
STUDENT_RECIPE = dict(stage1_epochs=16, stage2_epochs=4, rate_warmup_steps=250, workers=0)
# β 0.16 is left out: on the 100-epoch teacher its per-β student collapsed twice, with the warm-up as without (the
# variable-rate student reaches that rate and below: its anchors β 0.005 … 0.64)
BETAS = (0.005, 0.01, 0.02, 0.04, 0.08)
JPEG_QUALITIES = (1, 5, 10, 20, 30, 50, 75, 90)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 75, 90)


def _point(method: str, knob: str, value, accuracy: float, n: int, **extra) -> dict:
    lo, hi = rd.accuracy_interval(round(accuracy * n / 100), n)
    return {"method": method, "knob": knob, "value": value, "accuracy": accuracy, "ci95": [lo, hi], "n": n, **extra}


def _write(path: Path, obj) -> None:
    blob = json.dumps(obj, indent=1).encode()
    checkpoint.atomic_write_bytes(path, lambda f: f.write(blob))


# ---- the teacher ------------------------------------------------------------------------------------------------
def teacher_config(out: Path, **overrides) -> TeacherTrainConfig:
    return TeacherTrainConfig(**{**TEACHER_RECIPE, "out": str(out / "teacher"), **overrides})


def run_teacher(root=None, out: Path = OUT, progress: bool = True, fixres_epochs: int | None = None,
                **overrides) -> dict:
    """Train (or resume) the real-photo teacher: the long run on 112-px random-resized crops (``out/teacher``),
    then, where :data:`FIXRES_RECIPE` or ``fixres_epochs`` asks for it, a fine-tune at the test resolution
    (``out/teacher-fixres``); score the result on the choice and test photos."""
    train = imagenette.load("train", root, size=TRAIN_SIZE, progress=progress)
    choice = imagenette.load("choice", root, progress=progress)
    cfg = teacher_config(out, train_length=len(train), val_length=len(choice), **overrides)
    model, meta = train_teacher(cfg, resume=True, model_config=TeacherConfig.preset_config("mini"),
                                progress=progress, train_set=train, val_set=choice)
    fixres = {**FIXRES_RECIPE, **({} if fixres_epochs is None else {"epochs": fixres_epochs})}
    if fixres["epochs"]:
        tuned = imagenette.PhotoSet(train.images, train.targets, 128, True, train.name, train.classes,
                                    crop="test-like")      # the same stored photos, cropped as the test ones
        cfg = TeacherTrainConfig(**{**fixres, "out": str(out / "teacher-fixres"),
                                    "init": str(Path(cfg.out) / "teacher.pt"),
                                    "train_length": len(tuned), "val_length": len(choice)})
        model, meta = train_teacher(cfg, resume=True, progress=progress, train_set=tuned, val_set=choice)
    test = imagenette.load("test", root, progress=progress)
    correct = round(evaluate_accuracy(model, test) * len(test) / 100)
    scores = {"choice": {"accuracy": meta["val_accuracy"], "n": len(choice), "sha256": choice.digest()},
              "test": _point("teacher", None, None, 100 * correct / len(test), len(test), sha256=test.digest()),
              "train_seconds": meta.get("total_train_seconds", meta["train_seconds"])}
    _write(Path(cfg.out) / "scores.json", scores)
    return {**meta, **scores}


def trained_teacher_file(out: Path = OUT) -> Path:
    """The run's finished teacher: the fine-tuned one where the run has that step (``out/teacher-fixres``, from
    ``--fixres-epochs``), else the long run's."""
    tuned = out / "teacher-fixres"
    if tuned.is_dir() and not (tuned / "teacher.pt").is_file():
        raise FileNotFoundError(f"{tuned} is unfinished: run `minist photos teacher` again to finish it")
    return tuned / "teacher.pt" if tuned.is_dir() else out / "teacher" / "teacher.pt"


def teacher_path(out: Path = OUT) -> Path:
    """The real-photo teacher every point is scored with: the shipped one (``data/teacher_imagenette.pt``), else
    the run's."""
    shipped = data_dir() / TEACHER_FILE
    path = shipped if shipped.is_file() else trained_teacher_file(out)
    if not path.is_file():
        raise FileNotFoundError(f"no real-photo teacher ({shipped} or {path}): run `minist photos teacher` first")
    return path


def teacher(out: Path = OUT):
    return load_teacher(teacher_path(out))


def teacher_test_point(root=None, out: Path = OUT) -> dict:
    """The teacher's own point on the test photos (the one every other point is scored with), kept by its digest."""
    path = teacher_path(out)
    digest = checkpoint.load(path)["sha256"]
    cache = out / "teacher-test.json"
    if cache.is_file() and json.loads(cache.read_text()).get("teacher_sha256") == digest:
        return json.loads(cache.read_text())
    test = imagenette.load("test", root)
    model, meta = load_teacher(path)
    acc, _, hits = decoded_accuracy(model, test, lambda x: (x, 0), per_image=True)     # the original pixels
    point = _point("teacher", None, None, acc, len(test), sha256=test.digest(), correct_bits=rd.pack_correct(hits),
                   teacher_sha256=digest, stored=meta.get("stored", "fp32"),
                   train_seconds=meta.get("total_train_seconds", meta.get("train_seconds")))
    _write(cache, point)
    return point


def ship_teacher(root=None, out: Path = OUT) -> Path:
    """The trained teacher in fp16 → ``data/teacher_imagenette.pt``, re-scored as stored on the choice photos."""
    src = trained_teacher_file(out)
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: run `minist photos teacher` first")
    dest = data_dir() / TEACHER_FILE
    ship_half(src, dest, val_set=imagenette.load("choice", root))
    return dest


def run_fixres(root=None, out: Path = OUT, mode: str = "all", epochs: int = 3, lr: float = 0.004,
               batch_size: int = 64, progress: bool = True) -> dict:
    """A diagnostic, not a recipe step: fine-tune the shipped teacher at its **test** resolution (Touvron et al.,
    "Fixing the train-test resolution discrepancy", 2019). The teacher trains on 112-px random-resized crops and is
    scored on 128-px centre crops, so its objects and BatchNorm statistics differ between the two; here the training
    photos are resized to 146 px and cropped to 128 (+ flip), SGD with Nesterov momentum on a cosine schedule,
    label smoothing 0.1. ``mode``: ``all`` (every weight) or ``bn-fc`` (BatchNorm affine + the classifier, 7,370
    parameters; the running statistics follow in both). Scored per epoch on the choice photos, once at the end on
    the test photos (95 % interval); ``out/fixres-<mode>/`` keeps the weights and the scores (≈6 min, one thread).
    It measures what the step does to a teacher already shipped (whose students are bound to its tail's digest, so
    it ships nothing); ``run_teacher(fixres_epochs=N)`` runs it on the run's own teacher, as its last step."""
    if mode not in ("all", "bn-fc"):
        raise ValueError(f"unknown fixres mode {mode!r}; choose 'all' or 'bn-fc'")
    torch.manual_seed(0)
    train = imagenette.load("train", root, size=128, crop="test-like", progress=progress)
    choice, test = imagenette.load("choice", root, progress=progress), imagenette.load("test", root, progress=progress)
    model, _ = load_teacher(teacher_path(out))
    model = model.float()
    if mode == "bn-fc":
        for name, p in model.named_parameters():
            p.requires_grad_("bn" in name or "downsample.1" in name or name.startswith("head"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-5)
    steps = epochs * (len(train) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    log = {"mode": mode, "epochs": epochs, "lr": lr, "trainable": sum(p.numel() for p in params),
           "choice": [evaluate_accuracy(model, choice)]}
    tic = time.time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train))
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            x = torch.stack([train[j][0] for j in idx])
            loss = loss_fn(model(x), train.targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log["choice"].append(evaluate_accuracy(model, choice))
    log["train_seconds"] = round(time.time() - tic, 1)
    correct = round(evaluate_accuracy(model, test) * len(test) / 100)
    log["test"] = _point("teacher-fixres", "mode", mode, 100 * correct / len(test), len(test), sha256=test.digest())
    log["shipped_test"] = teacher_test_point(root, out)["accuracy"]
    dest = out / f"fixres-{mode}"
    checkpoint.atomic_write_bytes(dest / "teacher.pt", lambda f: torch.save(model.state_dict(), f))
    _write(dest / "scores.json", log)
    return log


# ---- students ---------------------------------------------------------------------------------------------------
def student_dir(out: Path, beta: float, tag: str = "", method: str = "entropic") -> Path:
    name = f"student-{beta:g}" if method == "entropic" else f"{method}-{beta:g}"
    return out / f"{name}{('-' + tag) if tag else ''}"


def run_student(beta: float, root=None, out: Path = OUT, tag: str = "", progress: bool = True,
                stage1_from: Path | None = None, **overrides) -> dict:
    """Train (or resume) one student from the real-photo teacher; its test point and its stage-1-only point at
    every rate of its grid (a per-β student: its β; ``method="variable-rate"``: one student, every anchor from
    ``beta`` up; every point also carries ``rate_free``: its accuracy with the latent unrounded, bytes free:
    :func:`minist.evaluate.rate_free_accuracy`). ``stage1_from``: an arm that differs in stage 2 alone
    starts from that run folder's finished stage 1 (its stage-1-only points are then that run's, measured
    again)."""
    tmodel, _ = teacher(out)
    folder = student_dir(out, beta, tag, overrides.get("method", "entropic"))
    if stage1_from is not None and not (folder / "stage1-last.pt").is_file():
        src = Path(stage1_from) / "stage1-last.pt"
        if not (Path(stage1_from) / "stage1.pt").is_file() or not (Path(stage1_from) / "config.json").is_file():
            raise FileNotFoundError(f"{src.parent} has no finished stage 1 (stage1.pt, config.json): run that "
                                    f"student first, or leave --stage1-from out")
        if folder == Path(stage1_from):
            raise ValueError(f"--stage1-from {stage1_from} is this arm's own folder: give the arm a --tag")
    if stage1_from is not None:      # stage 1's settings are the finished run's; the overrides may change stage 2
        known = set(StudentTrainConfig.__dataclass_fields__) - set(STAGE2_FIELDS) - {"out", "beta", "method"}
        cfg_src = json.loads((Path(stage1_from) / "config.json").read_text())
        inherited = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg_src.items() if k in known}
        clash = sorted(k for k in overrides if k in inherited and overrides[k] != inherited[k])
        if clash:
            raise ValueError(f"an arm that starts from {stage1_from}'s stage 1 keeps its stage-1 settings, and "
                             f"{clash} differ from them: leave them out, or train the arm from scratch")
        overrides = {**inherited, **overrides}
        if not (folder / "stage1-last.pt").is_file():
            checkpoint.atomic_copy(Path(stage1_from) / "stage1-last.pt", folder / "stage1-last.pt")
    train = imagenette.load("train", root, progress=progress)            # 128-px random-resized crops + flips
    choice = imagenette.load("choice", root, progress=progress)
    cfg = StudentTrainConfig(**{**STUDENT_RECIPE, "beta": beta, "train_length": len(train),
                                "val_length": len(choice), "eval_length": len(choice), "out": str(folder),
                                **overrides})
    student, meta = train_student(cfg, tmodel, resume=True, progress=progress, final_eval=False,
                                  train_set=train, val_set=choice)
    test = imagenette.load("test", root, progress=progress)
    hw = test[0][0].shape[-2:]
    points = []
    stage1 = load_student(folder / "stage1.pt", tmodel)[0]
    for (method, model), rate in itertools.product(((cfg.method, student), (f"{cfg.method}-stage1-only", stage1)),
                                                   student.codec.grid.anchors):
        method = method.replace("entropic-stage1-only", "stage1-only")
        model.update(force=True)
        r = evaluate_student(model, test, progress=progress, beta=rate)
        # the ceiling with bytes free (the latent unrounded): what rebuilding layer1 alone costs at this rate
        free = rate_free_accuracy(model, test, beta=rate)
        points.append(_point(method if not tag else f"{method}-{tag}", "beta", rate, r["accuracy"], r["n"],
                             kb_mean=r["kb_mean"], bpp=r["bpp"], bytes_p95=r["bytes_p95"],
                             header_bytes=r["header_bytes"], correct_bits=r["correct_bits"],
                             recipe={k: v for k, v in cfg.__dict__.items() if k in RECIPE_KEYS},
                             train_seconds=meta["train_seconds"], image_size=list(hw), rate_free=free))
    _write(folder / "points.json", points)
    return {"points": points, "meta": meta}


# ---- the input codecs ------------------------------------------------------------------------------------------
def run_codecs(root=None, out: Path = OUT, progress: bool = True) -> list[dict]:
    """JPEG and WebP at every quality of the study + the teacher, on the test photos (one file per point)."""
    tmodel, _ = teacher(out)
    test = imagenette.load("test", root, progress=progress)
    folder = out / "codecs"
    folder.mkdir(parents=True, exist_ok=True)
    points = []
    for fmt, qualities in (("jpeg", JPEG_QUALITIES), ("webp", WEBP_QUALITIES)):
        for q in qualities:
            path = folder / f"{fmt}-q{q}.json"
            if not path.is_file():
                point = codec_point(tmodel, test, fmt, q)
                _write(path, point)
                if progress:
                    print(f"{fmt} q{q}: {point['accuracy']:.2f} % at {point['kb_mean']:.3f} KB", flush=True)
            points.append(json.loads(path.read_text()))
    return points


def _with_choice(points: list[dict], history: Path) -> list[dict]:
    """Each point with the accuracy its run reached on the ``choice`` photos at the end of its stage
    (``choice``: what every choice between arms is made on; per-β runs only: a variable-rate run scores
    its anchors on the test photos alone)."""
    if not history.is_file():
        return points
    hist = json.loads(history.read_text())
    last = {stage: [r for r in hist if r.get("stage") == stage and "accuracy" in r] for stage in (1, 2)}
    for p in points:
        rows = last[1] if "stage1-only" in p["method"] else last[2]
        if rows and not p["method"].startswith("variable-rate"):
            r = rows[-1]
            p["choice"] = {"accuracy": r["accuracy"], "kb_mean": r["kb_mean"], "n": r["n"], "epoch": r["epoch"]}
    return points


def ablation(res: dict, beta: float | None = None) -> list[dict]:
    """The real-photo ablation: at each β where an arm ran (``--tag``; or at ``beta``), every per-β arm with its
    final and stage-1-only points, on the choice photos (where arms are compared) and on the test photos
    (reported). Arms scored against an earlier teacher (``res["earlier"]``, kept by :func:`collect` when the
    teacher changed) follow the current ones; each row names its teacher's test accuracy (``teacher``). An arm
    (a tagged method) carries ``versus``: McNemar's paired test against the recipe's point of the same stage at the
    same β (``difference_pt`` > 0: the arm is right more often); ``rate_free``: its accuracy with bytes free where it
    was measured (:func:`minist.evaluate.rate_free_accuracy`), else None. An arm's stage-1-only point that is the
    recipe's own (the same answers and bytes: the arm shares its stage 1) is listed once, as the recipe's."""
    rows = []
    for block in [res] + list(res.get("earlier", [])):
        per_beta = [p for p in block["points"] if p.get("knob") == "beta"
                    and not p["method"].startswith("variable-rate")]
        betas = ({beta} if beta is not None else
                 {p["value"] for p in per_beta if p["method"] not in RECIPE_METHODS})
        base = {(p["method"], p["value"]): p for p in per_beta if p["method"] in RECIPE_METHODS}
        for p in sorted(per_beta, key=lambda p: (p["value"], p["method"])):
            if p["value"] not in betas:
                continue
            ref = base.get(("stage1-only" if p["method"].startswith("stage1-only") else "entropic", p["value"]))
            if ref is not None and ref is not p and p["method"].startswith("stage1-only") and _same_run(p, ref):
                continue        # an arm that differs in stage 2 alone (``--stage1-from``): its stage 1 is the recipe's
            versus = None
            if ref is not None and ref is not p and "correct_bits" in p and "correct_bits" in ref:
                versus = rd.mcnemar(rd.unpack_correct(p["correct_bits"], p["n"]),
                                    rd.unpack_correct(ref["correct_bits"], ref["n"]))
            rows.append({"method": p["method"], "beta": p["value"], "recipe": p.get("recipe", {}),
                         "choice": p.get("choice"), "test": {k: p[k] for k in ("accuracy", "ci95", "kb_mean", "n")},
                         "train_seconds": p.get("train_seconds"), "teacher": block["teacher_accuracy"],
                         "versus": versus, "rate_free": (p.get("rate_free") or {}).get("accuracy"),
                         "one_factor": _one_factor(p, [q for q in per_beta if q["value"] == p["value"]])})
    return rows


def _same_run(p: dict, q: dict) -> bool:
    """The same answers for the same bytes: one model listed under two arms (a stage 1 that they share)."""
    return (p.get("correct_bits"), p["kb_mean"]) == (q.get("correct_bits"), q["kb_mean"])


def _one_factor(p: dict, others: list[dict]) -> list[dict]:
    """``p`` against each point of the same stage whose recipe differs from ``p``'s in exactly one setting (e.g. 32 + 8
    epochs with the decoder ×2 against 32 + 8 epochs): that one factor's effect, paired on the same photos. The
    recipe's own points are left out (each arm's ``versus`` holds them), and so is a point with ``p``'s very answers
    and bytes (a stage 1 that two arms share).
    Each: ``method`` (the other point), ``factor`` {setting: [its value, p's value]}, ``versus`` (McNemar,
    > 0: ``p`` is right more often), ``versus_free`` (the same with bytes free, where both measured ``rate_free``;
    else None). A setting a point does not record (it predates the setting) is the recipe's default."""
    stage, mine = p["method"].startswith("stage1-only"), p.get("recipe") or {}
    if p["method"] in RECIPE_METHODS or not mine or "correct_bits" not in p:
        return []           # the recipe's own point: each arm's ``versus`` pairs it already
    out = []
    for q in others:
        theirs = q.get("recipe") or {}
        if q is p or q["method"] in RECIPE_METHODS or q["method"].startswith("stage1-only") != stage or not theirs \
                or "correct_bits" not in q or _same_run(p, q):
            continue
        pairs = {k: [theirs.get(k, RECIPE_DEFAULTS.get(k)), mine.get(k, RECIPE_DEFAULTS.get(k))]
                 for k in sorted(set(mine) | set(theirs))}
        diff = {k: v for k, v in pairs.items() if v[0] != v[1]}
        if len(diff) == 1:
            free = [(x.get("rate_free") or {}).get("correct_bits") for x in (p, q)]
            out.append({"method": q["method"], "factor": diff,
                        "versus": rd.mcnemar(rd.unpack_correct(p["correct_bits"], p["n"]),
                                             rd.unpack_correct(q["correct_bits"], q["n"])),
                        "versus_free": None if None in free else
                        rd.mcnemar(rd.unpack_correct(free[0], p["n"]), rd.unpack_correct(free[1], q["n"]))})
    return out


def train_time(res: dict) -> dict:
    """The study's training time as recorded (the sum of its epochs' seconds, evaluation left out): the teacher,
    each of the recipe's students (per-β and variable-rate; one run each, however many points it scored), and the
    total. The ablation's arms are not part of the recipe and are not counted."""
    runs = {(p["method"], p["value"] if p["method"] == "entropic" else None): p["train_seconds"]
            for p in res["points"] if p["method"] in ("entropic", "variable-rate") and "train_seconds" in p}
    students = sum(runs.values())
    return {"teacher": res["teacher_train_seconds"], "students": students, "runs": len(runs),
            "total": res["teacher_train_seconds"] + students}


def _key(point: dict) -> tuple:
    return point["method"], point.get("knob"), point.get("value")


def collect(out: Path = OUT, root=None) -> Path:
    """Every finished point of ``out`` → ``data/results_imagenette.json`` (no absolute paths). The shipped file's
    other points stay when they were scored on the same test photos with the same teacher (a run folder need not
    hold every arm ever run); a point measured again replaces its old self. When the teacher changed, the old study
    goes, except its ablation arms (:func:`ablation`), kept under ``earlier`` with their teacher's accuracy."""
    test = teacher_test_point(root, out)
    points = [json.loads(p.read_text()) for p in sorted((out / "codecs").glob("*.json"))]
    for p in sorted(out.glob("*/points.json")):
        points += _with_choice(json.loads(p.read_text()), p.parent / "history.json")
    shipped, earlier = data_dir() / RESULTS_FILE, []
    if shipped.is_file():
        prev = json.loads(shipped.read_text())
        earlier = [e for e in prev.get("earlier", []) if e["teacher_sha256"] != test["teacher_sha256"]]
        if (prev.get("test_sha256"), prev.get("teacher_sha256")) == (test["sha256"], test["teacher_sha256"]):
            fresh = {_key(p) for p in points}
            points = [p for p in prev["points"] if _key(p) not in fresh] + points
        elif prev.get("test_sha256") == test["sha256"] and (arms := ablation({**prev, "earlier": []})):
            # a new teacher: its study replaces the old one, but the old ablation's arms (each with the recipe's
            # points at its β) stay, labelled with their teacher, since no other record of them is shipped
            keep = {(a["method"], a["beta"]) for a in arms}
            earlier.append({k: prev[k] for k in ("teacher_accuracy", "teacher_ci95", "teacher_sha256",
                                                  "teacher_train_seconds")}
                           | {"points": [p for p in prev["points"] if (p["method"], p.get("value")) in keep]})
    res = {"dataset": "imagenette2 (../shared/data/imagenette): 8,994 train, 475 choice (held-out train), "
                      "3,925 test (official val)",
           "test_sha256": test["sha256"], "image_size": 128, "teacher_accuracy": test["accuracy"],
           "teacher_ci95": test["ci95"], "teacher_stored": test["stored"], "teacher_sha256": test["teacher_sha256"],
           "teacher_correct_bits": test["correct_bits"],
           "teacher_train_seconds": test["train_seconds"], "n": test["n"], "points": points}
    if earlier:
        res["earlier"] = earlier
    dest = data_dir() / RESULTS_FILE
    _write(dest, res)
    return dest


def _widths(text: str) -> tuple[int, ...]:
    """``"128,64"`` → (128, 64): the decoder's two hidden widths, positive integers."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not two positive widths: give them as 128,64")
    return widths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="minist photos", description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=("teacher", "student", "codecs", "collect", "all", "fixres"))
    p.add_argument("--data-root", default=None, help="the Imagenette folder (default ../shared/data/imagenette)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--epochs", type=int, default=None, help="teacher epochs (fixres: its epochs, default 3)")
    p.add_argument("--fixres-epochs", type=int, default=None,
                   help=f"teacher: epochs of a fine-tune at the test resolution after the long run (default "
                        f"{FIXRES_RECIPE['epochs']}: none)")
    p.add_argument("--fixres-mode", default="all", choices=("all", "bn-fc"),
                   help="fixres: fine-tune every weight, or BatchNorm + classifier only")
    p.add_argument("--lr", type=float, default=0.004, help="fixres: peak learning rate")
    p.add_argument("--beta", type=float, default=0.005, help="student β")
    p.add_argument("--stage1-epochs", type=int, default=None)
    p.add_argument("--stage2-epochs", type=int, default=None)
    p.add_argument("--mixup", type=float, default=None, help="student stage 1: MixUp α (same view for both)")
    p.add_argument("--channels", type=int, default=None, help="student latent channels C")
    p.add_argument("--decoder-widths", default=None, type=_widths,
                   help="student: the server decoder's hidden widths, e.g. 128,64 (default: the preset's 64,32)")
    p.add_argument("--rate-warmup-steps", type=int, default=None,
                   help="student stage 1: the rate's price rises linearly from 0 over these steps")
    p.add_argument("--tag", default="", help="an ablation arm's name (its own folder and method name)")
    p.add_argument("--stage2-tail", action="store_true",
                   help="student stage 2: fine-tune layer2 … head too (the paper's stage 2), not the decoder alone")
    p.add_argument("--straight-through", action="store_true",
                   help="student stage 1: the decoder reads the rounded latent (gradient straight through), not the "
                        "noisy one; the rate keeps the noise")
    p.add_argument("--seed", type=int, default=None,
                   help="student: the training seed (weights, photo order, crops, noise; default 0); a second seed "
                        "of an arm needs its own --tag, and pairs with the first as one factor")
    p.add_argument("--stage1-from", default=None,
                   help="student: an arm that differs in stage 2 alone: start from this run folder's finished stage 1")
    p.add_argument("--method", default=None, choices=("entropic", "variable-rate"),
                   help="student: one β (entropic), or one student for every β from --beta up (variable-rate)")
    p.add_argument("--ship", action="store_true", help="teacher: copy the finished teacher into data/ (fp16)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one per job: two jobs share 2 cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, t0 = Path(args.out), time.time()
    try:
        if args.part == "teacher" and args.ship:
            print(f"shipped {ship_teacher(args.data_root, out)}")
        elif args.part == "teacher":
            over = {} if args.epochs is None else {"epochs": args.epochs}
            r = run_teacher(args.data_root, out, fixres_epochs=args.fixres_epochs, **over)
            print(f"teacher: choice {r['choice']['accuracy']:.2f} % ({r['choice']['n']}), test "
                  f"{r['test']['accuracy']:.2f} % [{r['test']['ci95'][0]:.2f}, {r['test']['ci95'][1]:.2f}] "
                  f"({r['test']['n']}); {r['train_seconds'] / 60:.0f} min of training, "
                  f"{(time.time() - t0) / 60:.0f} min wall")
        elif args.part == "student":
            over = {k: v for k, v in (("stage1_epochs", args.stage1_epochs), ("stage2_epochs", args.stage2_epochs),
                                      ("mixup", args.mixup), ("channels", args.channels), ("method", args.method),
                                      ("decoder_widths", args.decoder_widths),
                                      ("rate_warmup_steps", args.rate_warmup_steps),
                                      ("stage2_tail", args.stage2_tail or None),
                                      ("straight_through", args.straight_through or None),
                                      ("seed", args.seed))
                    if v is not None}
            r = run_student(args.beta, args.data_root, out, args.tag, stage1_from=args.stage1_from, **over)
            for q in r["points"]:
                print(f"{q['method']} β {q['value']:g}: {q['accuracy']:.2f} % [{q['ci95'][0]:.2f}, {q['ci95'][1]:.2f}]"
                      f" at {q['kb_mean']:.3f} KB on {q['n']} test photos")
        elif args.part == "fixres":
            r = run_fixres(args.data_root, out, args.fixres_mode, args.epochs or 3, args.lr)
            print(f"fixres {r['mode']}: choice " + " → ".join(f"{a:.2f}" for a in r["choice"]) + " %; test "
                  f"{r['test']['accuracy']:.2f} % [{r['test']['ci95'][0]:.2f}, {r['test']['ci95'][1]:.2f}] against "
                  f"{r['shipped_test']:.2f} % shipped ({r['train_seconds'] / 60:.0f} min of training)")
        elif args.part == "codecs":
            run_codecs(args.data_root, out)
        elif args.part == "all":
            if not (data_dir() / TEACHER_FILE).is_file():      # a shipped teacher is used as it is
                run_teacher(args.data_root, out)
                ship_teacher(args.data_root, out)
            run_codecs(args.data_root, out)
            for beta in BETAS:
                run_student(beta, args.data_root, out)
            run_student(BETAS[0], args.data_root, out, method="variable-rate")     # one student, every β
            print(f"wrote {collect(out, args.data_root)} and {photos_figure()} "
                  f"({(time.time() - t0) / 60:.0f} min wall)")
        else:
            print(f"wrote {collect(out, args.data_root)}")
    except FileNotFoundError as e:
        print(f"minist photos: {e}")
        return 2
    return 0
