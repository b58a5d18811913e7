"""The task study of notebook 04: detection and segmentation on the shared bitstream (``minist tasks``).

:func:`run` trains both task teachers (:func:`minist.recipes.train_task_teacher`), task students on the shipped
classification students at :data:`BETAS` (:func:`minist.recipes.train_task_student`: the encoder and prior never
change, so the payloads stay bit-identical, checked before and after), scores the teachers on JPEG/WebP decodings
and the students through the real split (:func:`minist.evaluate.evaluate_task`: one image → one bitstream, batch
1, real bytes; detection mAP@[.5:.95] and mAP@.5, segmentation mIoU over the 11 classes and pixel accuracy), and
writes one JSON per point (resumable); :func:`ship` writes ``data/results_tasks_mini.json`` and the checkpoints.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpoint, pretrained
from ..config import TaskTrainConfig
from ..data.synth import cached
from ..evaluate import (
    DETECTION_DETAIL,
    METRICS,
    evaluate_task,
    size_stats,
    student_predictor,
    task_bootstrap,
    task_scores,
    teacher_predictor,
)
from ..models import tasks as T
from ..models.store import load_task_student, load_task_teacher, retrained_parameters, save_task
from ..recipes import train_task_student, train_task_teacher
from ..utils import data_dir

BETAS = (0.005, 0.08, 0.32)   # the default β (1.0 KB), a low rate (0.24 KB) and a lower one (0.12 KB)
# the shipped task students' budgets (CPU-sized: detection's stage 2 runs at ≈22 scenes/s on one core, the
# segmenter's at ≈50). Against 1 + 2 epochs these gained 1.8–3.1 mAP and 1.3–2.6 mIoU; stage 1's feature
# distillation barely moves after its first epoch, so detection keeps one.
STUDENT_RECIPE = {"detection": dict(stage1_epochs=1, stage2_epochs=4),
                  "segmentation": dict(stage1_epochs=3, stage2_epochs=4)}
# the task students on the variable-rate bitstream learn every β of the grid at once: they retrain the task network
# after the decoder (layer2 … layer4, the stages their task teachers tune too: TaskTrainConfig.teacher_tune) and take
# a longer stage 2; the detector also two residual blocks after its decoder (refine_blocks). Chosen on the 500 val
# scenes at β 0.005: with the frozen-backbone teachers 4 → 8 → 16 → 32 epochs gave 48.2 → 50.6 → 53.0 mAP and
# 45.0 → 46.1 → 47.5 mIoU (5-epoch teachers), then 56.4 → 57.6 mAP and 48.7 → 49.7 mIoU (21-epoch ones); from the
# tuned teachers segmentation's 32 → 48 epochs gave 60.36 → 61.05 mIoU, and detection's two refine blocks
# 65.18 → 66.68 mAP (+1.2 … +1.6 at every anchor; segmentation's were not tried)
TUNED = "layer2,layer3,layer4"
VARIABLE_RECIPE = {"detection": dict(stage2_epochs=32, stage2_tune=TUNED, refine_blocks=2),
                   "segmentation": dict(stage2_epochs=48, stage2_tune=TUNED)}
JPEG_QUALITIES = (5, 10, 20, 50, 90)
WEBP_QUALITIES = (1, 5, 20, 50, 90)
RESULTS_FILE = pretrained.TASK_RESULTS_FILE
TEACHER_FILE = pretrained.TASK_TEACHER_FILE
STUDENT_FILE = pretrained.TASK_STUDENT_FILE
VARIABLE_FILE = pretrained.TASK_VARIABLE_FILE
# where the task students on the variable-rate bitstream are scored: every anchor of its grid
VARIABLE_BETAS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)



# ---- the study ------------------------------------------------------------------------------------
def _point(task: str, method: str, knob: str | None, value, res: dict, hw, **extra) -> dict:
    row = {"task": task, "method": method, "knob": knob, "value": value,
           **{k: res[k] for k in METRICS[task]}, "n": res["n"]}
    if res["sizes"]:
        s = size_stats(res["sizes"], hw)
        row.update(kb_mean=s["kb_mean"], kb_std=s["kb_std"], bpp=s["bpp"])
    return {**row, **extra}


def _recipe(train: dict) -> dict:
    """The settings of a task student's training that a reader of the results needs."""
    keys = ("stage1_epochs", "stage2_epochs", "stage2_distill", "stage2_tune", "teacher_tune", "refine_blocks",
            "train_length", "batch_size", "stage1_lr", "max_steps")
    return {**{k: train[k] for k in keys if k in train}, "stage2_lr": train["lr"] / 4}   # stage 2 runs at lr / 4


def _write(out: Path, name: str, obj: dict) -> dict:
    path = out / "points" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, obj)
    return obj


def _done(out: Path, name: str) -> bool:
    return (out / "points" / f"{name}.json").is_file()


def _sort(points: list[dict]) -> None:
    """The results files' order: by task, then teacher, students, codecs, then by knob value."""
    order = {"teacher": 0, "entropic": 1, "variable-rate": 2, "jpeg": 3, "webp": 4}
    points.sort(key=lambda p: (p["task"], order.get(p["method"], 9), p["value"] or 0))


def run(tasks=T.TASKS, betas=BETAS, out: str | Path = "runs/tasks", quick: bool = False, progress: bool = True,
        baselines: bool = True, variable: bool = False, shipped_teachers: bool = False, **recipe) -> Path:
    """Train and score everything for ``tasks``; one JSON per point under ``out/points`` (resumable).

    ``variable``: also one task student per task on the shipped variable-rate student's bitstream, trained at
    every β of its grid and scored at :data:`VARIABLE_BETAS` (method ``variable-rate``). ``shipped_teachers``: use
    ``data/``'s task teachers and leave their points (teacher, JPEG, WebP) to the shipped results (``collect(…,
    merge=True)``), for a new student arm on the shipped study.
    ``recipe`` overrides :class:`TaskTrainConfig` fields (e.g. ``stage2_epochs=4``)."""
    out = Path(out)
    teacher = pretrained.teacher("mini")
    small = dict(max_steps=3, train_length=64, batch_size=8, val_length=20) if quick else {}
    limit = 20 if quick else None
    for task in tasks:
        T._check_task(task)
        base = TaskTrainConfig(task=task, out=str(out), **{**STUDENT_RECIPE[task], **recipe, **small})
        val = base.val_scenes()
        hw = tuple(val[0][0].shape[-2:])
        tpath = out / TEACHER_FILE.format(task=task)
        if shipped_teachers:
            tnet, tmeta = pretrained.task_teacher(task, with_meta=True)
        elif tpath.is_file():
            tnet, tmeta = load_task_teacher(tpath, teacher)
        else:
            tic = time.time()
            tnet, tmeta = train_task_teacher(base, teacher, progress)
            tmeta["train_seconds"] = round(time.time() - tic, 1)
            save_task(tpath, tnet, tmeta)
        if not shipped_teachers and not _done(out, f"{task}-teacher"):
            res = evaluate_task(task, teacher_predictor(tnet), val, limit, progress)
            _write(out, f"{task}-teacher", _point(task, "teacher", None, None, res, hw,
                                                  train_seconds=tmeta.get("train_seconds"), tuned=list(tnet.tuned)))
        codecs = baselines and not shipped_teachers
        for fmt, grid in (("jpeg", JPEG_QUALITIES), ("webp", WEBP_QUALITIES)) if codecs else ():
            for q in (grid[:2] if quick else grid):
                if not _done(out, f"{task}-{fmt}-{q}"):
                    res = evaluate_task(task, teacher_predictor(tnet, fmt, q), val, limit, progress)
                    _write(out, f"{task}-{fmt}-{q}", _point(task, fmt, "quality", q, res, hw))
        arms = [("entropic", beta, pretrained.student("mini", beta=beta), STUDENT_FILE.format(task=task, beta=beta),
                 (beta,), {}) for beta in betas]
        if variable:           # one task student for every rate: trained on the grid, scored at its anchors
            longer = {k: v for k, v in VARIABLE_RECIPE[task].items()     # the command's own flags win
                      if k not in recipe and not (quick and k == "stage2_epochs")}
            arms.append(("variable-rate", None, pretrained.variable_student("mini"), VARIABLE_FILE.format(task=task),
                         VARIABLE_BETAS[::3] if quick else VARIABLE_BETAS, longer))
        for method, beta, student, fname, scored_at, arm_recipe in arms:
            names = {b: f"{task}-{method}-{b:g}" for b in scored_at}
            if all(_done(out, n) for n in names.values()):
                continue
            spath = out / fname
            if spath.is_file():
                snet, smeta = load_task_student(spath, tnet, student)
            else:
                tic = time.time()
                snet, smeta = train_task_student(TaskTrainConfig(**{**asdict(base), "beta": beta, **arm_recipe}),
                                                 tnet, student, progress)
                smeta["train_seconds"] = round(time.time() - tic, 1)
                save_task(spath, snet, smeta)
            for b, name in names.items():
                if _done(out, name):
                    continue
                res = evaluate_task(task, student_predictor(snet, beta=b), val, limit, progress)   # its grid's β
                _write(out, name, _point(task, method, "beta", b, res, hw,
                                         header_bytes=snet.backbone.front.codec.header_bytes,
                                         payload_digest=smeta["payload_digest"],
                                         device_parameters=student.device_parameters(),
                                         retrained_parameters=retrained_parameters(snet),
                                         train_seconds=smeta.get("train_seconds"),
                                         recipe=_recipe(smeta["train"]), checkpoint=spath.name))
                print(f"{task} {method} β={b:g}: " + ", ".join(f"{k} {res[k]:.2f}" for k in METRICS[task]),
                      flush=True)
    return out


def collect(out: str | Path = "runs/tasks", dest: Path | None = None, merge: bool = False) -> Path:
    """Merge the points into one results JSON (``data/results_tasks_mini.json`` by default).

    ``merge``: keep every shipped point that ``out`` does not measure again (same task, method and value), for a
    new arm whose older points are not on this machine; refused if the shipped file's scenes are another set."""
    out = Path(out)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    if not points:
        raise FileNotFoundError(f"no task points under {out / 'points'}: run `minist tasks` first")
    val = TaskTrainConfig().val_scenes()
    if merge:
        shipped = pretrained.task_results("mini")
        if shipped["val_set"]["sha256"] != val.digest():
            raise ValueError("the shipped task results were measured on other scenes than this machine renders; "
                             "merge nothing")
        new = {(p["task"], p["method"], p["value"]) for p in points}
        points += [p for p in shipped["points"] if (p["task"], p["method"], p["value"]) not in new]
    _sort(points)
    doc = {"preset": "mini", "val_set": {"n": len(val), "sha256": val.digest(), "scenes": "multi-object "
                                         "Fashion-on-Photos, 1–4 objects, 128×128"},
           "units": {"kb_mean": "KB per image, 1 KB = 1024 B, headers included", "bpp": "bits per input pixel",
                     "map": "COCO mAP@[.5:.95] in % (torchmetrics, pycocotools)", "map_50": "mAP@.5 in %",
                     "miou": "mean IoU in % over the 11 classes (background included)",
                     "pixel_accuracy": "% of pixels"},
           "made_by": "minist tasks && minist tasks --ship", "torch": torch.__version__, "points": points}
    dest = dest or data_dir() / RESULTS_FILE
    return checkpoint.write_json(dest, doc)


def ship(out: str | Path = "runs/tasks", merge: bool = False) -> list[Path]:
    """Copy the task teachers and students to ``data/`` (atomically) and write the results JSON there
    (``merge``: keeping the shipped points ``out`` does not hold, :func:`collect`)."""
    copied = [checkpoint.atomic_copy(p, data_dir() / p.name) for p in sorted(Path(out).glob("task_*_mini_*.pt"))]
    return copied + [collect(out, merge=merge)]


# ---- the test split: reporting, no choice -----------------------------------------------------------------------
TEST_FILE = pretrained.TASK_TEST_RESULTS_FILE
TEST_SCENES = 2000      # the first 2,000 of the test split: student ÷ teacher to ±1.2–1.3 % (95 %, at β 0.005)
TEST_JPEG, TEST_WEBP = (1, 5, 10, 20, 50), (0, 1, 5, 10, 20, 50)    # each codec's smallest setting included
# bootstrap draws, and the points that get an interval: a COCO evaluation of 2,000 scenes takes ≈8 s on one core,
# so detection's interval is drawn for the headline point alone (the variable-rate student at its top β)
TEST_DRAWS = {"detection": 50, "segmentation": 1000}
TEST_INTERVALS = {"detection": ("variable-rate-0.005",), "segmentation": None}     # None: every point


def test_scenes(n: int = TEST_SCENES):
    """The multi-object scenes of the Fashion-on-Photos **test** split (val pools, its own generator stream): the
    task study's reporting set, which no choice (recipe, epochs, checkpoint) has seen. The first ``n`` scenes of
    the 10,000-scene split, rendered alone (each scene's pixels depend on its index only)."""
    return cached("test", "detection", **{**asdict(TaskTrainConfig().data_config()), "test_length": n})


def _scored(out: Path, task: str, name: str, predict, scenes, n: int, progress: bool) -> dict:
    """One point's per-scene records and bytes, kept under ``out/scenes`` (a point scored once is read back)."""
    path = out / "scenes" / f"{name}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    res = evaluate_task(task, predict, scenes, n, progress, per_scene=True)
    rec = {"scenes": res["scenes"], "sizes": res["sizes"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(path, lambda f: torch.save(rec, f))
    return rec


def _run_model(folder: str | Path, fname: str, flags: str) -> Path:
    """``folder``/``fname``, or a clear error naming the ``minist tasks`` command (``flags``) that makes it."""
    path = Path(folder) / fname
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {folder}: make it with `minist tasks {flags} --out {folder}` first")
    return path


def _task_pair(task: str, teachers: str | Path | None, students: str | Path | None):
    """``(task teacher, its meta, variable-rate task student)``: ``data/``'s, or those of the run folders
    ``teachers`` / ``students`` (a missing file is refused with the command that makes it)."""
    if teachers is None:
        tnet, tmeta = pretrained.task_teacher(task, with_meta=True)
    else:
        tpath = _run_model(teachers, TEACHER_FILE.format(task=task), f"--tasks {task} --betas ''")
        tnet, tmeta = load_task_teacher(tpath, pretrained.teacher("mini"))
    snet = pretrained.variable_task_student(task) if students is None else load_task_student(
        _run_model(students, VARIABLE_FILE.format(task=task), f"--tasks {task} --betas '' --variable"), tnet,
        pretrained.variable_student("mini"))[0]
    return tnet, tmeta, snet


def test(tasks=T.TASKS, out: str | Path = "runs/tasks-test", n: int = TEST_SCENES, draws: dict | None = None,
         progress: bool = False, teachers: str | Path | None = None, students: str | Path | None = None) -> Path:
    """Score the shipped task teachers, JPEG/WebP + teacher and the shipped task students on the variable-rate
    bitstream (at :data:`VARIABLE_BETAS`) on ``n`` test scenes, batch 1, real bytes; the points of
    :data:`TEST_INTERVALS` with a paired bootstrap interval (over scenes) of their metric ÷ the teacher's. One JSON
    per point under ``out/points``, the scenes' records under ``out/scenes`` (resumable); writes ``out/``
    :data:`TEST_FILE` (:func:`ship_test` copies it to ``data/``). ``teachers``: a run folder whose task teachers
    (:data:`TEACHER_FILE`) replace the shipped ones, e.g. a longer recipe's: every ratio is then to them.
    ``students``: a run folder whose variable-rate task students (:data:`VARIABLE_FILE`) replace the shipped ones."""
    out, draws = Path(out), {**TEST_DRAWS, **(draws or {})}
    scenes = test_scenes(n)          # the test split's first n scenes (rendering only those)
    hw = tuple(scenes[0][0].shape[-2:])
    for task in tasks:
        T._check_task(task)
        tnet, tmeta, snet = _task_pair(task, teachers, students)
        teacher = teacher_predictor(tnet)
        base = _scored(out, task, f"{task}-teacher", teacher, scenes, n, progress)
        arms = [(f"{task}-teacher", "teacher", None, teacher)]
        arms += [(f"{task}-{fmt}-{q}", fmt, q, teacher_predictor(tnet, fmt, q))
                 for fmt, grid in (("jpeg", TEST_JPEG), ("webp", TEST_WEBP)) for q in grid]
        arms += [(f"{task}-variable-rate-{b:g}", "variable-rate", b, student_predictor(snet, beta=b))
                 for b in VARIABLE_BETAS]
        for name, method, value, predict in arms:
            if _done(out, name):
                continue
            rec = _scored(out, task, name, predict, scenes, n, progress)
            res = {**task_scores(task, rec["scenes"]), "n": n, "sizes": rec["sizes"]}
            wanted = TEST_INTERVALS[task] is None or name.removeprefix(f"{task}-") in TEST_INTERVALS[task]
            extra = {"vs_teacher": task_bootstrap(task, rec["scenes"], base["scenes"], draws[task])} \
                if method != "teacher" and wanted else {}
            about = {"epochs": tmeta["train"]["epochs"], "checkpoint": "shipped" if teachers is None else
                     TEACHER_FILE.format(task=task)} if method == "teacher" else {}
            _write(out, name, _point(task, method, "quality" if method in ("jpeg", "webp") else
                                     None if method == "teacher" else "beta", value, res, hw, **extra, **about))
            print(f"{name}: " + ", ".join(f"{k} {res[k]:.2f}" for k in METRICS[task])
                  + (f" ({extra['vs_teacher']['ratio_pct']:.1f} % of the teacher, 95 % "
                     f"[{extra['vs_teacher']['ci95_pct'][0]:.1f}, {extra['vs_teacher']['ci95_pct'][1]:.1f}])"
                     if extra else ""), flush=True)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    _sort(points)
    doc = {"preset": "mini", "test_set": {"n": n, "split": "test", "sha256": scenes.digest(),
                                          "scenes": f"the first {n} multi-object Fashion-on-Photos test scenes"},
           "interval": "vs_teacher: paired bootstrap over scenes of metric ÷ teacher's metric, 95 % percentile",
           "made_by": "minist tasks --test", "torch": torch.__version__, "points": points}
    return checkpoint.write_json(out / TEST_FILE, doc)


def ship_test(out: str | Path = "runs/tasks-test") -> Path:
    """Copy :func:`test`'s result file to ``data/`` (atomically)."""
    src = Path(out) / TEST_FILE
    if not src.is_file():
        raise FileNotFoundError(f"no {TEST_FILE} under {out}: run `minist tasks --test` first")
    return checkpoint.atomic_copy(src, data_dir() / TEST_FILE)


# ---- where a task student loses: eval-only hybrids of its teacher and itself ---------------------------------------
DIAGNOSIS_FILE = "diagnosis_{task}.json"


def _half_resolution(h: torch.Tensor) -> torch.Tensor:
    """Features average-pooled 2 × 2 and upsampled back: the same map without its finest detail."""
    return F.interpolate(F.avg_pool2d(h, 2), size=h.shape[-2:], mode="bilinear", align_corners=False)


def diagnosis_arms(tnet, snet, beta: float = 0.005) -> dict:
    """``{arm: predict(x) → (prediction, None)}``: the task teacher and student on one scene, and three hybrids.

    * ``student tail, teacher's layer1``: the student's network after the decoder on the teacher's exact
      ``layer1``: what its tail makes of features the bytes did not have to carry;
    * ``teacher tail, student's layer1``: the teacher's network on the student's decoded ``layer1`` at ``beta``:
      what stage 2 had to adapt to;
    * ``teacher, layer1 at half resolution``: the teacher on its own ``layer1`` without its finest detail
      (:func:`_half_resolution`): how much the task needs what a stride-4 map holds at stride 4;
    * ``student, bytes free``: the student on its latent unrounded (:meth:`StudentFront.rate_free`): what rounding
      to the bytes costs it, and so whether more bytes could buy the rest."""
    def arm(net, front):
        return lambda x: (net.from_layer1(front(x[None]), tuple(x.shape[-2:]))[0], None)
    teacher_l1, student_l1 = tnet.backbone.front, (lambda x: snet.backbone.front(x, beta=beta))
    return {"teacher": arm(tnet, teacher_l1), f"student, β {beta:g}": arm(snet, student_l1),
            "student tail, teacher's layer1": arm(snet, teacher_l1),
            "teacher tail, student's layer1": arm(tnet, student_l1),
            "teacher, layer1 at half resolution": arm(tnet, lambda x: _half_resolution(teacher_l1(x))),
            f"student, β {beta:g}, bytes free": arm(snet, lambda x: snet.backbone.front.rate_free(x, beta=beta))}


@torch.no_grad()
def diagnose(task: str = "detection", teachers: str | Path | None = None, students: str | Path | None = None,
             n: int = 500, beta: float = 0.005, out: str | Path = "runs/tasks-diagnosis",
             progress: bool = False) -> Path:
    """Score :func:`diagnosis_arms` for the task teacher and the variable-rate task student (``data/``'s, or those
    of the run folders ``teachers`` / ``students``) on the first ``n`` **val** scenes: a diagnosis on the set that
    chose the recipe, not a headline. Detection adds COCO's breakdown (mAP@.75, by object size, recall). Writes
    ``out/`` :data:`DIAGNOSIS_FILE`; the features are computed in process (the student's ``layer1`` is what the
    server decodes from the bytes at ``beta``)."""
    T._check_task(task)
    tnet, _, snet = _task_pair(task, teachers, students)
    val = TaskTrainConfig(task=task).val_scenes()
    rows = {}
    for name, predict in diagnosis_arms(tnet.eval(), snet.eval(), beta).items():
        res = evaluate_task(task, predict, val, n, progress, detail=True)
        rows[name] = {k: res[k] for k in METRICS[task] + (DETECTION_DETAIL if task == "detection" else ())}
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[name].items()), flush=True)
    doc = {"task": task, "val_scenes": min(n, len(val)), "beta": beta, "arms": rows,
           "teachers": "shipped" if teachers is None else str(teachers),
           "students": "shipped" if students is None else str(students), "made_by": "minist tasks --diagnose"}
    return checkpoint.write_json(Path(out) / DIAGNOSIS_FILE.format(task=task), doc)


__all__ = ["run", "collect", "ship", "test", "ship_test", "test_scenes", "diagnose", "BETAS"]
