"""The rate–distortion study (issue: the β sweep and every baseline), one point at a time.

``minist sweep`` runs every part and writes one JSON per point under ``runs/sweep/points``;
a point already there is skipped, so an interrupted sweep resumes where it stopped.
``minist sweep --ship`` stores every swept student in ``data/`` (fp16, re-scored as stored) and merges the
points into ``data/results_mini.json``, which the figures and the explorer read through
:func:`minist.pretrained.results`.

Every point follows the protocol of docs/design.md §4 on the same cached val set: one image,
one bitstream, real bytes, accuracy after real decoding.

Parts (and what each point's knob is):

- ``codecs``: JPEG and WebP (``optimize=True`` / method 6) + the unmodified teacher; knob = quality.
- ``students``: the Entropic Student over the β grid; knob = β. Every β is trained from scratch with the
  mini recipe (:class:`minist.config.StudentTrainConfig`'s defaults: the layer2 … layer4 stage-1 loss, 8 + 2
  epochs): warm starts from a neighbour's weights gave a non-monotone curve in the first study. Each also
  gives a ``stage1-only`` point (the ablation: no KD fine-tuning) and ``bits_on_object``.
- ``learned``: compressai's factorized-prior and mean-scale-hyperprior image codecs trained by
  minist on the same images, over a λ grid, + the unmodified teacher; knob = λ.
- ``crbq``: channel reduction + 8-bit quantisation, on the students' recipe; knob = C.
- ``e2e``: Singh et al.'s end-to-end training (no teacher, CE + β·rate), on the students' budget; knob = β.
- ``paper-loss``, ``task-aware``: the stage-1 loss ablation on an RD curve. At each β of ``ABLATION_BETAS`` a
  student trained with the mini recipe but another stage-1 loss (``ABLATION``): the paper's (layer1 … layer4,
  weight 1 each), or the paper's weighted per position by the teacher's Grad-CAM (``saliency_floor``). The
  ``students`` points are the third arm (layer2 … layer4). Each point also records where its bits go
  (``bits_on_object``, 500 val images).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import checkpoint, pretrained
from ..config import ImageCodecConfig, StudentTrainConfig, mini_val_set
from ..data.synth import FashionOnPhotos
from ..evaluate import bits_on_object, codec_accuracy, image_codec_accuracy, size_stats
from ..models.image_codecs import device_parameters as codec_device_parameters
from ..recipes import ship_half, train_image_codec, train_student
from ..utils import data_dir

PARTS = ("codecs", "students", "learned", "crbq", "e2e", "paper-loss", "task-aware")
JPEG_QUALITIES = (1, 5, 10, 15, 20, 30, 50, 75, 95)       # each codec's whole range: its smallest setting too
WEBP_QUALITIES = (0, 1, 5, 10, 20, 30, 50, 75, 95)
BETAS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
STUDENT_RECIPE = dict(eval_stage1=True)          # on top of StudentTrainConfig's defaults (the mini recipe)
CRBQ_CHANNELS = (1, 2, 3)
E2E_BETAS = (1e-6, 1e-4)     # β per image-bit against a batch-mean CE
LAMBDA_CHAIN = ((0.013, None), (0.0035, 0.013), (0.05, 0.013))   # (λ, the λ it warm-starts from)
ABLATION_BETAS = (0.02, 0.08, 0.32)
PAPER_WEIGHTS = StudentTrainConfig.preset_config("paper").distill_weights     # layer1 … layer4, 1 each
ABLATION = {"paper-loss": {"distill_weights": PAPER_WEIGHTS},
            "task-aware": {"distill_weights": PAPER_WEIGHTS, "saliency_floor": 0.1}}
# the ablation's three arms on one RD curve, the reference first: the students (layer2 … layer4) are the middle one
ABLATION_ARMS = ("paper-loss", "entropic", "task-aware")
BITS_IMAGES = 500


def _point_path(out: Path, method: str, value) -> Path:
    return out / "points" / f"{method}-{value:g}.json"


def _write_point(out: Path, point: dict) -> dict:
    path = _point_path(out, point["method"], point["value"])
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, point)
    return point


def _row(method: str, knob: str, value, res: dict, device_parameters: int, **extra) -> dict:
    """One RD point in the shipped schema."""
    return {"method": method, "knob": knob, "value": value, "kb_mean": res["kb_mean"], "kb_std": res["kb_std"],
            "bpp": res["bpp"], "accuracy": res["accuracy"], "header_bytes": res["header_bytes"],
            "device_parameters": device_parameters, "n": res["n"], **extra}


# ---- input codecs + teacher ---------------------------------------------------------------------
def run_codecs(out: Path, teacher, limit: int | None = None, qualities=None) -> list[dict]:
    val = mini_val_set(limit)
    h, w = val[0][0].shape[-2:]
    rows = []
    for fmt, grid in (("jpeg", JPEG_QUALITIES), ("webp", WEBP_QUALITIES)):
        for q in (grid if qualities is None else [q for q in qualities if q in grid]):
            if _point_path(out, fmt, q).is_file():
                continue
            acc, sizes, headers = codec_accuracy(teacher, val, fmt, q, return_sizes=True)
            res = {**size_stats(sizes, (h, w)), "accuracy": acc, "header_bytes": sum(headers) / len(headers)}
            rows.append(_write_point(out, _row(fmt, "quality", q, res, 0)))
            print(f"{fmt} q{q}: {acc:.2f} % at {res['kb_mean']:.3f} KB")
    return rows


# ---- Entropic Student, stage-1 ablation, CR+BQ, end-to-end ---------------------------------------
def _train_images(meta: dict) -> int:
    """Training images a student saw over both stages (from its per-epoch history)."""
    return round(sum(h["images_per_second"] * h["seconds"] for h in meta["history"]))


def stage1_method(method: str) -> str:
    """The name of a method's stage-1-only ablation points."""
    return "stage1-only" if method == "entropic" else f"{method}-stage1-only"


# every point name the ablation writes: each arm and its stage-1-only points
ABLATION_METHODS = tuple(m for a in ABLATION for m in (a, stage1_method(a)))


def bits_on_product(student, limit: int = BITS_IMAGES) -> float:
    """The share (%) of a student's bits spent inside the product's mask, on the first ``limit`` val images."""
    cfg = StudentTrainConfig()
    masks = FashionOnPhotos("val", "classification", cfg.data_config()).object_mask
    return round(bits_on_object(student, mini_val_set(), masks, limit=limit)["bits_on_object"], 2)


def _train_point(out: Path, teacher, cfg, method: str, knob: str, value, progress: bool,
                 bits: bool = False) -> list[dict]:
    tic = time.time()
    student, meta = train_student(cfg, teacher, progress=progress, final_eval=True)
    extra = {"train_images": _train_images(meta), "train_seconds": round(time.time() - tic, 1),
             "checkpoint": str(Path(cfg.out) / "student.pt"), "recipe": _recipe(asdict(cfg))}
    if bits:
        extra["bits_on_object"] = bits_on_product(student)
    rows = [_row(method, knob, value, meta["val"], student.device_parameters(), **extra)]
    if "stage1_val" in meta:
        s1 = {k: v for k, v in extra.items() if k != "bits_on_object"}     # measured on the final student only
        rows.append(_row(stage1_method(method), knob, value, meta["stage1_val"], student.device_parameters(), **s1))
    for r in rows:
        _write_point(out, r)
        print(f"{r['method']} {knob}={value:g}: {r['accuracy']:.2f} % at {r['kb_mean']:.3f} KB")
    return rows


def run_students(out: Path, teacher, betas=BETAS, progress: bool = True, **overrides) -> list[dict]:
    """The Entropic Student at each β, from scratch with the mini recipe (points already done skip)."""
    rows = []
    for beta in betas:
        if _point_path(out, "entropic", beta).is_file():
            continue
        cfg = StudentTrainConfig(beta=beta, out=str(out / f"student-{beta:g}"), **{**STUDENT_RECIPE, **overrides})
        rows += _train_point(out, teacher, cfg, "entropic", "beta", beta, progress, bits=True)
    return rows


def _run_baseline(out: Path, teacher, method: str, knob: str, values, dirname: str, recipe: dict, progress: bool,
                  **fields) -> list[dict]:
    """Train and score one baseline at each knob value (``fields[knob]`` set per point); done points skip."""
    rows = []
    for v in values:
        if _point_path(out, method, v).is_file():
            continue
        cfg = StudentTrainConfig(method=method, out=str(out / f"{dirname}-{v:g}"), **{**fields, knob: v, **recipe})
        rows += _train_point(out, teacher, cfg, method, knob, v, progress)
    return rows


def run_ablation(out: Path, teacher, part: str, betas=ABLATION_BETAS, progress: bool = True,
                 **overrides) -> list[dict]:
    """One arm of the stage-1 loss ablation (``part``: a key of ``ABLATION``) over ``betas``."""
    rows = []
    for beta in betas:
        if _point_path(out, part, beta).is_file():
            continue
        cfg = StudentTrainConfig(beta=beta, out=str(out / f"{part}-{beta:g}"),
                                 **{**STUDENT_RECIPE, **ABLATION[part], **overrides})
        rows += _train_point(out, teacher, cfg, part, "beta", beta, progress, bits=True)
    return rows


def run_crbq(out: Path, teacher, channels=CRBQ_CHANNELS, progress: bool = True, **overrides) -> list[dict]:
    return _run_baseline(out, teacher, "crbq", "channels", channels, "crbq",
                         {**STUDENT_RECIPE, "eval_stage1": False, **overrides}, progress, beta=0.0)


def run_e2e(out: Path, teacher, betas=E2E_BETAS, progress: bool = True, **overrides) -> list[dict]:
    """End-to-end at each β: one stage as long as the students' two (their stage 1 + stage 2 epochs)."""
    cfg = StudentTrainConfig()
    return _run_baseline(out, teacher, "end-to-end", "beta", betas, "e2e",
                         {"stage1_epochs": cfg.stage1_epochs + cfg.stage2_epochs, **overrides}, progress)


def run_learned(out: Path, teacher, quick: bool = False, progress: bool = True, archs=("factorized", "hyperprior"),
                chain=LAMBDA_CHAIN) -> list[dict]:
    """The learned image codecs + the unmodified teacher: each arch over the λ grid (warm-started from λ = 0.013)."""
    val = mini_val_set(limit=50 if quick else None)
    rows = []
    for arch in archs:
        for lmbda, parent in (chain[:1] if quick else chain):
            if _point_path(out, arch, lmbda).is_file():
                continue
            cfg = ImageCodecConfig(arch=arch, lmbda=lmbda, out=str(out / f"{arch}-{lmbda:g}"),
                                   epochs=2 if parent is None else 1,
                                   init_from=str(out / f"{arch}-{parent:g}" / "codec.pt") if parent else None)
            if quick:
                cfg.max_steps, cfg.train_length = 3, 64
            model, meta = train_image_codec(cfg, progress=progress)
            res = image_codec_accuracy(model, teacher, val)
            row = _row(arch, "lambda", lmbda, res, codec_device_parameters(model), train_images=meta["train_images"],
                       train_seconds=round(meta["train_seconds"], 1), checkpoint=str(Path(cfg.out) / "codec.pt"),
                       recipe={k: v for k, v in asdict(cfg).items() if k not in ("out", "device")})
            rows.append(_write_point(out, row))
            print(f"{arch} λ={lmbda:g}: {res['accuracy']:.2f} % at {res['kb_mean']:.3f} KB")
    return rows


# ---- collecting and shipping ---------------------------------------------------------------------
def _recipe(train: dict) -> dict:
    """A training config as a point records it (no run paths; JSON types)."""
    return json.loads(json.dumps({k: v for k, v in train.items() if k not in ("out", "device")}))


def _shipped(beta: float, recipe: dict):
    """``(path, meta)`` of the shipped student at β if it was trained with ``recipe``, else None."""
    path = data_dir() / pretrained.student_file("mini", beta)
    if not path.is_file():
        return None
    meta = checkpoint.load(path, kind="student")["meta"]
    return (path, meta) if _recipe(meta.get("train", {})) == recipe else None


def ship_students(out: Path | str, progress: bool = False) -> list[Path]:
    """Store every swept student (``<out>/student-β/student.pt``) as ``data/student_mini_beta<β>.pt``: fp16,
    re-scored as stored (:func:`minist.recipes.ship_half`), atomically. A student already shipped from the same
    recipe is kept. Returns the paths written."""
    shipped = []
    for p in sorted(Path(out).glob("points/entropic-*.json")):
        point = json.loads(p.read_text())
        if _shipped(point["value"], point["recipe"]):
            continue
        src = Path(point["checkpoint"])
        if not src.is_file():
            raise FileNotFoundError(f"{p} names {src}, which is missing: rerun `minist sweep --parts students`")
        dest = data_dir() / pretrained.student_file("mini", point["value"])
        ship_half(src, dest, progress=progress)
        shipped.append(dest)
    return shipped


def _as_shipped(p: dict) -> dict:
    """An ``entropic`` point with its shipped file's result (fp16, as stored; the run's fp32 accuracy beside)."""
    found = _shipped(p["value"], p["recipe"])
    if found is None:
        return {**p, "checkpoint": None}
    path, meta = found
    val = meta["val"]
    return {**p, **{k: val[k] for k in ("kb_mean", "kb_std", "bpp", "accuracy", "header_bytes", "n")},
            "accuracy_fp32": meta.get("val_fp32", val)["accuracy"], "checkpoint": path.name}


def collect(out: Path, preset: str = "mini", dest: Path | None = None) -> Path:
    """Merge the point files into ``data/results_<preset>.json`` (atomically); the ``entropic`` points carry the
    results of the shipped students (fp16, as stored) where ``data/`` has them."""
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    if not points:
        raise FileNotFoundError(f"no sweep points under {out / 'points'}: run `minist sweep` first")
    _, tmeta = pretrained.teacher(preset, with_meta=True)
    val = mini_val_set()
    points.sort(key=_study_order)
    for i, p in enumerate(points):      # name shipped files by their place in data/, drop run paths
        p.pop("checkpoint", None)
        if p["method"] == "entropic":
            points[i] = _as_shipped(p)
    doc = {"preset": preset, "teacher_accuracy": tmeta["val_accuracy"],
           "val_set": {"n": len(val), "sha256": val.digest()},
           "units": {"kb_mean": "KB per image, 1 KB = 1024 B, headers included",
                     "bpp": "bits per input pixel (128×128)", "accuracy": "% top-1 after real decoding"},
           "made_by": "minist sweep && minist sweep --ship", "torch": torch.__version__,
           "teacher": {k: tmeta.get(k) for k in ("train", "train_seconds", "total_train_seconds")},
           "points": points}
    dest = dest or data_dir() / pretrained.results_file(preset)
    checkpoint.write_json(dest, doc)
    return dest


def _study_order(p: dict) -> tuple:
    """Where a point stands in the shipped results: by method (the study's order), then knob value."""
    order = ("entropic", "stage1-only", *ABLATION_METHODS, "crbq", "end-to-end", "factorized", "hyperprior", "jpeg",
             "webp")
    return (order.index(p["method"]) if p["method"] in order else 99, p["value"])


def merge(out: Path, methods=("jpeg", "webp"), dest: Path | None = None) -> tuple[Path, list[dict]]:
    """Put the point files of ``methods`` under ``out/points`` into the shipped results (``data/results_mini.json``),
    replacing a point of the same method and knob value and keeping every other point: new baseline points for a
    study whose student runs are not on this machine. Refuses points measured on another val set."""
    dest = dest or data_dir() / pretrained.results_file("mini")
    doc = json.loads(dest.read_text())
    new = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    new = [p for p in new if p["method"] in methods]
    if not new:
        raise FileNotFoundError(f"no {'/'.join(methods)} points under {out / 'points'}: run `minist sweep --parts "
                                f"codecs` first")
    if mini_val_set().digest() != doc["val_set"]["sha256"]:
        raise ValueError(f"{dest} was measured on another val set than this machine renders; merge nothing")
    keys = {(p["method"], p["value"]) for p in new}
    points = [p for p in doc["points"] if (p["method"], p.get("value")) not in keys] + new
    doc["points"] = sorted(points, key=_study_order)
    checkpoint.write_json(dest, doc)
    return dest, new


def run(parts=PARTS, out: str | Path = "runs/sweep", progress: bool = True, quick: bool = False,
        betas=None, qualities=None) -> None:
    """Run ``parts`` (points already under ``out`` are skipped); ``betas``: the β of the ``students`` and
    ablation parts (default ``BETAS`` and ``ABLATION_BETAS``), e.g. to share a part between two processes."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown sweep parts {sorted(unknown)}; choose from {PARTS}")
    if betas and not set(parts) <= {"students", "e2e", *ABLATION}:
        raise ValueError(f"--betas sets the β of the students, e2e and the ablation parts ({', '.join(ABLATION)}) "
                         "only")
    if betas and any(b < 0 for b in betas):
        raise ValueError(f"β must be ≥ 0, got {list(betas)}")
    out = Path(out)
    teacher = pretrained.teacher("mini")
    small = {}
    if quick:
        small = dict(max_steps=3, train_length=256, eval_length=20, val_length=100, stage1_epochs=1, stage2_epochs=1)
    for part in parts:
        tic = time.time()
        if part == "codecs":
            run_codecs(out, teacher, limit=100 if quick else None, qualities=(10, 50) if quick else qualities)
        elif part == "students":
            grid = tuple(betas) if betas else BETAS
            run_students(out, teacher, betas=grid[:1] if quick else grid, progress=progress, **small)
        elif part == "learned":
            run_learned(out, teacher, quick=quick, progress=progress)
        elif part == "crbq":
            run_crbq(out, teacher, channels=CRBQ_CHANNELS[:1] if quick else CRBQ_CHANNELS, progress=progress, **small)
        elif part == "e2e":
            grid = tuple(betas) if betas else E2E_BETAS
            run_e2e(out, teacher, betas=grid[:1] if quick else grid, progress=progress, **small)
        elif part in ABLATION:
            grid = tuple(betas) if betas else ABLATION_BETAS
            run_ablation(out, teacher, part, betas=grid[:1] if quick else grid, progress=progress, **small)
        print(f"sweep part {part}: {time.time() - tic:.0f} s")


__all__ = ["run", "collect", "ship_students", "BETAS", "PARTS", "ABLATION_ARMS"]
