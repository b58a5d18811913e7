"""The rate–distortion study (issue: the β sweep and every baseline), one point at a time.

``minist sweep`` runs every part and writes one JSON per point under ``runs/sweep/points``;
a point already there is skipped, so an interrupted sweep resumes where it stopped.
``minist sweep --collect`` merges the points into ``data/results_mini.json``, which the
figures and the explorer read through :func:`minist.pretrained.results`.

Every point follows the protocol of DESIGN §4 on the same cached val set: one image,
one bitstream, real bytes, accuracy after real decoding.

Parts (and what each point's knob is):

- ``codecs``: JPEG and WebP (``optimize=True`` / method 6) + the unmodified teacher; knob = quality.
- ``students``: the Entropic Student over the β grid; knob = β. The shipped β = 0.02 student is
  the anchor (full recipe); the other β are warm-started from their neighbour's stage-1 weights
  (a continuation, as in rate sweeps of learned codecs) with a shorter recipe, see ``SWEEP_RECIPE``.
  Each also gives a ``stage1-only`` point (the ablation: no KD fine-tuning).
- ``learned``: compressai's factorized-prior and mean-scale-hyperprior image codecs trained by
  minist on the same images, over a λ grid, + the unmodified teacher; knob = λ.
- ``crbq``: channel reduction + 8-bit quantisation; knob = C.
- ``e2e``: Singh et al.'s end-to-end training (no teacher, CE + β·rate); knob = β.
- ``paper-loss``, ``layer2-4``, ``task-aware`` (``--variant r18`` only): the stage-1 loss ablation on an RD
  curve. At each β of ``ABLATION_BETAS`` a student trained from scratch with the r18 recipe (``R18_RECIPE``) and
  one stage-1 loss (``ABLATION``): the paper's (layer1 … layer4, weight 1 each), layer2 … layer4 only, or the
  task-aware one (the teacher's Grad-CAM weighting each position's error, ``saliency_floor``). Each point also
  records where its bits go (``bits_on_object``, 500 val images). Points are named by the part; the shipped
  r18 students (chosen from these runs) are the ``entropic`` points.
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
from ..models.store import load_student
from ..recipes import train_image_codec, train_student
from ..utils import data_dir

PARTS = ("codecs", "students", "learned", "crbq", "e2e", "paper-loss", "layer2-4", "task-aware")
JPEG_QUALITIES = (5, 10, 15, 20, 30, 50, 75, 95)
WEBP_QUALITIES = (1, 5, 10, 20, 30, 50, 75, 95)
BETAS = (0.005, 0.02, 0.08, 0.16, 0.32, 0.64, 1.28, 5.12)
ANCHOR_BETA = 0.02
# (β, the β whose stage-1 weights it starts from), in the order they run: ×4 steps from the anchor first,
# then the knee filled in (at ×4 the rate fell from 0.58 KB at β = 0.32 to 0.08 KB at 1.28)
BETA_CHAIN = ((0.08, 0.02), (0.32, 0.08), (1.28, 0.32), (5.12, 1.28), (0.64, 0.32), (0.005, 0.02), (0.16, 0.08))
SWEEP_RECIPE = dict(stage1_epochs=2, stage2_epochs=2, train_length=4000, stage1_warmup_steps=30, eval_length=200)
CRBQ_CHANNELS = (1, 2, 3)
CRBQ_RECIPE = dict(stage1_epochs=3, stage2_epochs=2, train_length=4000, eval_length=200)
E2E_BETAS = (1e-6, 1e-4)     # β per image-bit against a batch-mean CE
E2E_RECIPE = dict(stage1_epochs=5, train_length=4000, eval_length=200)
LAMBDA_CHAIN = ((0.013, None), (0.0035, 0.013), (0.05, 0.013))   # (λ, the λ it warm-starts from)
# the r18 students' recipe (the method issue): a lighter encoder, one stage-1 lr drop, a decoder-only stage 2
R18_RECIPE = dict(encoder_widths=(24, 16), stage1_epochs=8, stage1_milestones=(0.75,), stage2_epochs=2,
                  stage2_tail=False, eval_stage1=True)
ABLATION_BETAS = (0.02, 0.08, 0.32)
ABLATION = {"paper-loss": {}, "layer2-4": {"distill_weights": (0.0, 1.0, 1.0, 1.0)},
            "task-aware": {"saliency_floor": 0.1}}
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
        for q in (qualities or grid):
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
             "checkpoint": str(Path(cfg.out) / "student.pt"), "recipe": {k: v for k, v in asdict(cfg).items()
                                                                         if k not in ("out", "device")}}
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


def anchor_point(out: Path) -> dict | None:
    """The shipped default-β student as a sweep point (its recorded full-val result)."""
    path = data_dir() / pretrained.student_file("mini", ANCHOR_BETA)
    if not path.is_file():
        return None
    student, meta = load_student(path)
    return _write_point(out, _row("entropic", "beta", ANCHOR_BETA, meta["val"], student.device_parameters(),
                                  train_images=_train_images(meta), checkpoint=str(path), recipe=meta["train"]))


def shipped_points(out: Path, variant: str) -> list[dict]:
    """Every shipped student of ``variant`` as a point (its recorded full-val result, and its stage-1 ablation)."""
    rows = []
    for beta in pretrained.betas("mini", variant):
        path = data_dir() / pretrained.student_file("mini", beta, variant)
        student, meta = load_student(path)
        rows.append(_write_point(out, _row("entropic", "beta", beta, meta["val"], student.device_parameters(),
                                           train_images=_train_images(meta), checkpoint=str(path),
                                           train_seconds=round(meta["train_seconds"], 1), recipe=meta["train"])))
        if "stage1_val" in meta:
            rows.append(_write_point(out, _row("stage1-only", "beta", beta, meta["stage1_val"],
                                               student.device_parameters(), recipe=meta["train"])))
    return rows


def run_students(out: Path, teacher, chain=BETA_CHAIN, progress: bool = True, **overrides) -> list[dict]:
    rows = []
    anchor = anchor_point(out)
    if anchor:
        rows.append(anchor)
    for beta, parent in chain:
        if _point_path(out, "entropic", beta).is_file():
            continue
        init = (out / f"student-{parent:g}" / "stage1.pt")
        if parent == ANCHOR_BETA or not init.is_file():
            init = data_dir() / pretrained.student_file("mini", ANCHOR_BETA)
        cfg = StudentTrainConfig(beta=beta, init_from=str(init), eval_stage1=True, out=str(out / f"student-{beta:g}"),
                                 **{**SWEEP_RECIPE, **overrides})
        rows += _train_point(out, teacher, cfg, "entropic", "beta", beta, progress)
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
                                 **{**R18_RECIPE, **ABLATION[part], **overrides})
        rows += _train_point(out, teacher, cfg, part, "beta", beta, progress, bits=True)
    return rows


def run_crbq(out: Path, teacher, channels=CRBQ_CHANNELS, progress: bool = True, **overrides) -> list[dict]:
    return _run_baseline(out, teacher, "crbq", "channels", channels, "crbq", {**CRBQ_RECIPE, **overrides},
                         progress, beta=0.0)


def run_e2e(out: Path, teacher, betas=E2E_BETAS, progress: bool = True, **overrides) -> list[dict]:
    return _run_baseline(out, teacher, "end-to-end", "beta", betas, "e2e", {**E2E_RECIPE, **overrides}, progress)


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
def ship_students(out: Path | str) -> list[Path]:
    """Copy every swept student (``<out>/student-β/student.pt``) to ``data/student_mini_beta<β>.pt``, atomically."""
    shipped = []
    for p in sorted(Path(out).glob("points/entropic-*.json")):
        point = json.loads(p.read_text())
        src = Path(point["checkpoint"])
        dest = data_dir() / pretrained.student_file("mini", point["value"])
        if src.resolve() == dest.resolve():
            continue
        if not src.is_file():
            raise FileNotFoundError(f"{p} names {src}, which is missing: rerun `minist sweep --parts students`")
        shipped.append(checkpoint.atomic_copy(src, dest))
    return shipped



def collect(out: Path, preset: str = "mini", dest: Path | None = None, variant: str | None = None) -> Path:
    """Merge the point files into ``data/results_<preset>.json`` (atomically); a ``variant`` adds its shipped
    students first and writes ``data/results_<preset>_<variant>.json``."""
    if variant is not None:
        shipped_points(out, variant)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    if not points:
        raise FileNotFoundError(f"no sweep points under {out / 'points'}: run `minist sweep` first")
    _, tmeta = pretrained.teacher(preset, with_meta=True, variant=variant)
    val = mini_val_set()
    order = {m: i for i, m in enumerate(("entropic", "stage1-only", *ABLATION_METHODS, "crbq", "end-to-end",
                                         "factorized", "hyperprior", "jpeg", "webp"))}
    points.sort(key=lambda p: (order.get(p["method"], 99), p["value"]))
    for p in points:      # name shipped files by their place in data/, drop run paths
        init = p.get("recipe", {}).get("init_from")
        if init and Path(init).is_absolute():       # paths relative to the repository, not this machine
            p["recipe"]["init_from"] = str(Path(init).relative_to(data_dir().parent)) \
                if Path(init).is_relative_to(data_dir().parent) else Path(init).name
        ck = p.pop("checkpoint", None)
        if p["method"] == "entropic" and ck:
            shipped = data_dir() / pretrained.student_file(preset, p["value"], variant)
            p["checkpoint"] = shipped.name if shipped.is_file() else None
    doc = {"preset": preset, "teacher_accuracy": tmeta["val_accuracy"],
           "val_set": {"n": len(val), "sha256": val.digest()},
           "units": {"kb_mean": "KB per image, 1 KB = 1024 B, headers included",
                     "bpp": "bits per input pixel (128×128)", "accuracy": "% top-1 after real decoding"},
           "made_by": "minist sweep && minist sweep --ship" if variant is None else
           f"minist sweep --variant {variant} --parts codecs,{','.join(ABLATION)} && "
           f"minist sweep --variant {variant} --ship",
           "torch": torch.__version__, "points": points}
    if variant is not None:
        doc["teacher"] = {k: tmeta.get(k) for k in ("train", "train_seconds")}
    dest = dest or data_dir() / pretrained.results_file(preset, variant)
    checkpoint.write_json(dest, doc)
    return dest


def run(parts=PARTS, out: str | Path = "runs/sweep", progress: bool = True, quick: bool = False,
        variant: str | None = None, betas=None) -> None:
    """Run ``parts`` (points already under ``out`` are skipped); ``betas``: the β of the ablation arms
    (default ``ABLATION_BETAS``), e.g. to share one arm's points between two processes."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown sweep parts {sorted(unknown)}; choose from {PARTS}")
    if betas and not set(parts) <= set(ABLATION):
        raise ValueError(f"--betas sets the β of the ablation parts ({', '.join(ABLATION)}) only")
    if betas and any(b < 0 for b in betas):
        raise ValueError(f"β must be ≥ 0, got {list(betas)}")
    if variant is not None and not set(parts) <= {"codecs", *ABLATION}:
        raise ValueError(f"--variant {variant} measures the input codecs against its teacher (--parts codecs) and "
                         f"the stage-1 loss ablation (--parts {','.join(ABLATION)}); its shipped students are "
                         "trained with `minist train-student --variant` and collected by --ship")
    if variant is None and set(parts) & set(ABLATION):
        raise ValueError(f"the stage-1 loss ablation ({', '.join(ABLATION)}) runs on the r18 teacher: add "
                         "--variant r18")
    out = Path(out)
    teacher = pretrained.teacher("mini", variant=variant)
    small = {}
    if quick:
        small = dict(max_steps=3, train_length=256, eval_length=20, val_length=100, stage1_epochs=1, stage2_epochs=1)
    for part in parts:
        tic = time.time()
        if part == "codecs":
            run_codecs(out, teacher, limit=100 if quick else None, qualities=(10, 50) if quick else None)
        elif part == "students":
            run_students(out, teacher, chain=BETA_CHAIN[:1] if quick else BETA_CHAIN, progress=progress, **small)
        elif part == "learned":
            run_learned(out, teacher, quick=quick, progress=progress)
        elif part == "crbq":
            run_crbq(out, teacher, channels=CRBQ_CHANNELS[:1] if quick else CRBQ_CHANNELS, progress=progress, **small)
        elif part == "e2e":
            run_e2e(out, teacher, betas=E2E_BETAS[:1] if quick else E2E_BETAS, progress=progress, **small)
        elif part in ABLATION:
            grid = tuple(betas) if betas else ABLATION_BETAS
            run_ablation(out, teacher, part, betas=grid[:1] if quick else grid, progress=progress, **small)
        print(f"sweep part {part}: {time.time() - tic:.0f} s")


__all__ = ["run", "collect", "BETAS", "PARTS"]
