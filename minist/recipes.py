"""The training recipes, each a short function on the one engine (:class:`minist.engine.Engine`).

* :func:`train_teacher`: the mini teacher (cross-entropy, SGD + Nesterov, warm-up + cosine);
* :func:`train_stage1`, :func:`train_stage2`: the Entropic Student's two stages (docs/design.md §3), and
  :func:`train_student`, which runs both (or Singh et al.'s single end-to-end stage) and scores the result;
* :func:`train_task_teacher`, :func:`train_task_student`: detection and segmentation on the shared bitstream;
* :func:`train_image_codec`: a learned image codec, the input-compression baseline.

The objectives are :mod:`minist.losses`'; the settings :mod:`minist.config`'s.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from compressai.losses import RateDistortionLoss
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from . import checkpoint, distributed
from .config import (
    BottleneckConfig,
    ImageCodecConfig,
    StudentTrainConfig,
    TaskTrainConfig,
    TeacherConfig,
    TeacherTrainConfig,
)
from .data import collate_detection
from .data.synth import FashionOnPhotos, FashionOnPhotosConfig, cached
from .engine import Engine
from .evaluate import PAYLOAD_IMAGES, evaluate_accuracy, evaluate_student, payload_digest
from .losses import (
    LAYERS,
    distill_weights,
    end_to_end_loss,
    feature_distillation,
    kd_loss,
    pyramid_distillation,
    saliency_weights,
    stage1_loss,
)
from .models import tasks as T
from .models.codec import CDF_BUFFERS, BetaGrid
from .models.image_codecs import build as build_image_codec
from .models.store import load_student, load_teacher, save_image_codec, save_student, save_teacher
from .models.student import EntropicStudent
from .models.teacher import Teacher
from .utils import get_device, resolve_amp, set_seed

METHODS = ("entropic", "crbq", "end-to-end", "variable-rate")
# the rates a variable-rate student is scored at after each epoch (on ``eval_length`` images) and at the end
# (every anchor of its grid, on the whole val set)
VARIABLE_EVAL_BETAS = (0.005, 0.04, 0.32)


# ---- schedules and data ----------------------------------------------------------------------------------
def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base LR, then cosine decay to 0, stepped every batch."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def milestones(optimizer, steps_per_epoch: int, epochs: int, fractions, warmup_steps: int = 0):
    """×0.1 at the given fractions of the stage (rounded to whole epochs), stepped every batch;
    with ``warmup_steps``, a linear warm-up first (useful when a stage starts from trained weights)."""
    at = sorted({max(1, round(f * epochs)) * steps_per_epoch for f in fractions})
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)) * 0.1 ** sum(step >= m for m in at))


def set_epoch(dataset, epoch: int) -> None:
    if hasattr(dataset, "set_epoch"):      # Fashion-on-Photos renders fresh images every epoch
        dataset.set_epoch(epoch)


def loaders(dataset, batch_size: int, seed: int, workers: int = 0, offset: int = 0, collate=None, device=None,
            shuffle: bool = True):
    """``loader_for_epoch(epoch)``: fresh images (or a reshuffle) per epoch, this rank's share under torchrun."""
    def loader(epoch: int):
        set_epoch(dataset, offset + epoch)
        return DataLoader(dataset, batch_size=distributed.per_rank_batch(batch_size), drop_last=True,
                          sampler=distributed.sampler(dataset, seed, offset + epoch, shuffle=shuffle),
                          num_workers=workers, collate_fn=collate,
                          pin_memory=device is not None and device.type == "cuda")
    return loader


def _digest(dataset) -> str | None:
    return dataset.digest() if hasattr(dataset, "digest") else None


# ---- the teacher --------------------------------------------------------------------------------------------
def mixer(alpha: float, num_classes: int):
    """``(x, y) → (x, y)``: with ``alpha`` > 0, half the batches get MixUp(α) or CutMix(α = 1) (torchvision's
    batch transforms; y becomes class probabilities); otherwise the batch unchanged."""
    if alpha <= 0:
        return lambda x, y: (x, y)
    mix = v2.RandomChoice([v2.MixUp(alpha=alpha, num_classes=num_classes), v2.CutMix(alpha=1.0,
                                                                                       num_classes=num_classes)])
    return lambda x, y: mix(x, y) if torch.rand(()) < 0.5 else (x, y)


def train_teacher(cfg: TeacherTrainConfig, resume: bool = False, model_config: TeacherConfig | None = None,
                  progress: bool = True, train_set=None, val_set=None) -> tuple[Teacher, dict]:
    """Train the mini teacher on Fashion-on-Photos (or ``train_set``/``val_set`` of (image in [0, 1], label))."""
    if cfg.preset != "mini":
        raise ValueError("train_teacher trains the 'mini' preset; the 'paper' teacher is torchvision's "
                         "ImageNet ResNet-50 (minist.models.teacher.load_imagenet_resnet50)")
    set_seed(cfg.seed)
    device, out, t0 = get_device(cfg.device), Path(cfg.out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    layout = {} if cfg.blocks is None else {"blocks": tuple(cfg.blocks)}
    mcfg = model_config or TeacherConfig.preset_config("mini", image_size=cfg.image_size, **layout)
    model, parent = Teacher(mcfg), None
    if cfg.init is not None:            # fine-tune: a fresh schedule on trained weights
        model, parent = load_teacher(cfg.init)
        mcfg = model.config
    checkpoint.write_json(out / "config.json", {"train": asdict(cfg), "model": mcfg.to_dict()})
    model = model.float().to(device).to(memory_format=torch.channels_last)
    dcfg = cfg.data_config()
    train_set = train_set if train_set is not None else FashionOnPhotos("train", "classification", dcfg)
    val_set = val_set if val_set is not None else cached("val", "classification", **asdict(dcfg))
    steps = len(train_set) // cfg.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    engine = Engine(model, opt, warmup_cosine(opt, int(cfg.warmup_epochs * steps), cfg.epochs * steps), out=out,
                    name="teacher", config={**asdict(cfg), "model": mcfg.to_dict()}, max_steps=cfg.max_steps,
                    amp=resolve_amp(cfg.amp, device), progress=progress)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    mix = mixer(cfg.mixup, mcfg.num_classes)

    def step(batch):
        x, y = mix(batch[0].to(device), batch[1].to(device))     # y: class indices, or mixed class probabilities
        x = x.contiguous(memory_format=torch.channels_last)
        with engine.autocast():
            loss = loss_fn(model(x).float(), y)
        return loss, {"loss": loss.item()}

    history = engine.run(cfg.epochs, loaders(train_set, cfg.batch_size, cfg.seed, cfg.workers, offset=cfg.epoch_offset),
                         step,
                         evaluate=lambda e: {"val_accuracy": evaluate_accuracy(model, val_set, device=device)},
                         resume=resume, tag="teacher")
    meta = {"val_accuracy": history[-1]["val_accuracy"] if history else None,
            "val_set": {"name": getattr(val_set, "name", "fashion-on-photos"), "task": "classification",
                        "split": "val", "config": asdict(dcfg), "sha256": _digest(val_set)},
            "train": asdict(cfg), "history": history, "steps": engine.step,
            "train_seconds": sum(h["seconds"] for h in history), "wall_seconds": time.time() - t0,
            "device": str(device), "torch": str(torch.__version__)}
    if parent is not None:      # the run it continues (and that run's own parent): the whole training, recorded
        meta["parent"] = {k: parent.get(k) for k in ("val_accuracy", "train", "history", "train_seconds", "parent")}
        meta["total_train_seconds"] = meta["train_seconds"] + parent.get("total_train_seconds",
                                                                         parent.get("train_seconds", 0.0))
    save_teacher(out / "teacher.pt", model, meta)
    checkpoint.write_json(out / "history.json", history)
    return model.eval(), meta


# ---- the Entropic Student (and the CR+BQ and end-to-end baselines) -----------------------------------------
def build_student(cfg: StudentTrainConfig, teacher: Teacher) -> EntropicStudent:
    """The model ``cfg.method`` trains: an Entropic Student, a CR+BQ student, or Singh et al.'s end-to-end one."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
    bcfg = cfg.bottleneck(teacher.layer2[0].conv1.in_channels)
    if cfg.method == "end-to-end":      # no teacher: layer2 … head start from random weights and train
        set_seed(cfg.seed)
        return EntropicStudent(Teacher(teacher.config), bcfg, end_to_end=True)
    return EntropicStudent(teacher, bcfg, codec=METHOD_CODECS.get(cfg.method, "factorized"), grid=rate_grid(cfg))


# the latent codec each method trains; its grid of rates comes from ``rate_grid``
METHOD_CODECS = {"crbq": "8bit", "variable-rate": "gained"}


def rate_grid(cfg: StudentTrainConfig) -> BetaGrid:
    """The rates the student is trained for: one β (``cfg.beta``), or a variable-rate student's grid from
    ``cfg.beta`` up (default 7 doublings at 32 steps each; ``rate_grid`` = (β_min, doublings, steps) overrides)."""
    if cfg.rate_grid is not None:
        if cfg.method != "variable-rate" or len(cfg.rate_grid) != 3:
            raise ValueError(f"rate_grid is (β_min, doublings, steps) of a variable-rate student, got {cfg.rate_grid} "
                             f"for method {cfg.method!r}")
        return BetaGrid(cfg.rate_grid[0], int(cfg.rate_grid[1]), int(cfg.rate_grid[2]))
    return BetaGrid(cfg.beta) if cfg.method == "variable-rate" else BetaGrid.single(cfg.beta)


def sample_rates(student: EntropicStudent, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rates of one batch: a grid index per image, uniform over the student's grid (log-uniform in β; a
    one-rate student: its β), and their β (batch,) for the loss. Pass the indices as ``student(x, beta=…)``."""
    grid = student.codec.grid
    idx = grid.sample(batch).to(student.mean.device)
    return idx, grid.beta(idx.float())


def warm_start(student: EntropicStudent, path) -> None:
    """Copy encoder, prior (density parameters, not coding tables) and decoder from a student checkpoint.

    A checkpoint without bottleneck biases (the paper's, and students made before the mini preset had them)
    warm-starts a biased student with zero biases: it starts out computing exactly the checkpoint's function."""
    ck = checkpoint.load(path, kind="student")
    have, want = BottleneckConfig.from_dict(ck["config"]["bottleneck"]), student.config
    shape = lambda c: (c.channels, c.target_channels, c.encoder_widths, c.decoder_widths)   # noqa: E731
    if shape(have) != shape(want):
        raise ValueError(f"{path} has bottleneck {ck['config']['bottleneck']}, this student "
                         f"{want.to_dict()}: warm starts need the same C, T and widths")
    sd = {k.replace("entropy_bottleneck.", "codec.", 1): v.float() if v.is_floating_point() else v
          for k, v in ck["state_dict"].items()}
    for name in ("encoder", "codec", "decoder"):
        module = getattr(student, name)
        part = {k[len(name) + 1:]: v for k, v in sd.items()
                if k.startswith(name + ".") and k.rsplit(".", 1)[-1] not in CDF_BUFFERS}
        missing, unexpected = module.load_state_dict(part, strict=False)
        zeroed = [m for m in missing if m.endswith(".bias") and name != "codec" and not have.bias]
        with torch.no_grad():
            for m in zeroed:
                module.get_parameter(m).zero_()
        if unexpected or any(not m.startswith("_") and m not in zeroed for m in missing):
            raise ValueError(f"{path}: {name} does not match (missing {missing}, unexpected {unexpected})")


def stage1_optimizers(student: EntropicStudent, cfg: StudentTrainConfig):
    """Adam for encoder + decoder (``stage1_lr``) and the prior's density (``prior_lr``), and the auxiliary
    ``(Adam on the prior's quantiles (aux_lr), loss)`` for the engine; CR+BQ has no prior: ``(opt, None)``."""
    gains = ("codec.log_gain", "codec.log_inv_gain")      # a variable-rate student's gains learn at the nets' rate
    prior = [p for n, p in student.named_parameters() if n.startswith("codec.") and not n.endswith("quantiles")
             and n not in gains]
    nets = [p for n, p in student.named_parameters() if p.requires_grad and (not n.startswith("codec.") or n in gains)]
    if student.aux_loss() is None:
        return torch.optim.Adam([{"params": nets, "lr": cfg.stage1_lr}]), None
    opt = torch.optim.Adam([{"params": nets, "lr": cfg.stage1_lr}, {"params": prior, "lr": cfg.prior_lr}])
    return opt, (torch.optim.Adam([student.codec.quantiles], lr=cfg.aux_lr), student.aux_loss)


def stage1_step(model, teacher: Teacher, cfg: StudentTrainConfig, engine: Engine, device, student=None):
    """Stage 1's ``step(batch)``: Σ_j w_j ‖S_j − T_j‖² + β·bits over the batch (:func:`minist.losses.stage1_loss`).

    ``model`` is the student (or DDP around it); the teacher runs without gradients, under the engine's autocast.
    The loss is a batch *sum*, multiplied by the world size under DDP (:func:`minist.distributed.loss_scale`)."""
    weights = distill_weights(cfg.distill_weights)
    student = student if student is not None else getattr(model, "module", model)

    def step(batch):
        x = batch[0].to(device, non_blocking=True)
        if cfg.mixup > 0:          # one mixed view for teacher and student: feature matching needs no labels
            lam = float(torch.distributions.Beta(cfg.mixup, cfg.mixup).sample())
            x = lam * x + (1 - lam) * x[torch.randperm(len(x), device=x.device)]
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), engine.autocast():
            t_feats = teacher.features(x, LAYERS)
        spatial = None
        if cfg.saliency_floor is not None:     # task-aware: where the teacher looks for the true class
            with engine.autocast():
                spatial = saliency_weights(teacher, t_feats, batch[1].to(device), cfg.saliency_floor)
        idx, beta = sample_rates(student, len(x))       # β per image (a one-rate student: its β)
        with engine.autocast():          # decoder and tail; encoder and prior run in fp32 inside (student.forward)
            o = model(x, beta=idx)
        if cfg.rate_warmup_steps:          # the rate's price rises from 0 (against an early collapse to the medians)
            beta = beta * min(1.0, (engine.step + 1) / cfg.rate_warmup_steps)
        parts = stage1_loss({k: v.float() for k, v in o["features"].items()},
                            {k: v.float() for k, v in t_feats.items()}, o["likelihoods"], beta, weights, spatial)
        logs = {"distortion": parts["distortion"].item() / len(x), "bits": parts["bits"].item() / len(x)}
        return parts["loss"] * distributed.loss_scale(), logs
    return step


def end_to_end_step(model, cfg: StudentTrainConfig, device):
    """Singh et al.'s ``step(batch)``: CE + β · bits per image, no teacher."""
    def step(batch):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        o = model(x)
        parts = end_to_end_loss(o["logits"], y, o["likelihoods"], cfg.beta)
        return parts["loss"], {"ce": parts["ce"].item(), "bits": parts["bits"].item()}
    return step


# what stage 1 never reads: a finished stage 1 resumes under another stage 2 (the ceiling study's stage-2 arms)
STAGE2_FIELDS = ("stage2_epochs", "stage2_batch_size", "stage2_lr", "stage2_milestones", "stage2_tail", "alpha", "tau",
                 "eval_stage1")


def _student_engine(student, opt, sched, cfg, name, progress: bool, aux=None) -> Engine:
    return Engine(student, opt, sched, out=cfg.out, name=name, config=asdict(cfg), aux=aux, max_steps=cfg.max_steps,
                  amp=resolve_amp(cfg.amp, student.mean.device), progress=progress,
                  ignore=STAGE2_FIELDS if name == "stage1" else ())


def _real_bytes(student, eval_set):
    """After each epoch: real bytes on ``eval_set`` at the grid's ``VARIABLE_EVAL_BETAS`` (one β: its own)."""
    betas = [b for b in VARIABLE_EVAL_BETAS if b in student.codec.grid] or student.codec.grid.anchors[:1]

    def evaluate(_epoch):
        student.update(force=True)
        res = {f"beta{b:g}": evaluate_student(student, eval_set, beta=b) for b in betas}
        return next(iter(res.values())) if len(res) == 1 else res
    return evaluate


def train_stage1(student: EntropicStudent, teacher: Teacher, cfg: StudentTrainConfig, train_set, eval_set,
                 resume: bool = False, progress: bool = True, callback=None) -> list[dict]:
    """Stage 1: encoder, prior and decoder learn to rebuild the teacher's features at β's price per bit
    (Singh et al.'s end-to-end baseline: the whole network learns the labels). Returns the history."""
    device = student.mean.device
    student.set_stage(1)
    model = distributed.wrap(student)      # DDP registers the parameters this stage trains
    opt, aux = stage1_optimizers(student, cfg)
    steps = len(train_set) // cfg.stage1_batch_size
    sched = milestones(opt, steps, cfg.stage1_epochs, cfg.stage1_milestones, cfg.stage1_warmup_steps)
    engine = _student_engine(student, opt, sched, cfg, "stage1", progress, aux)
    step = end_to_end_step(model, cfg, device) if student.end_to_end else stage1_step(model, teacher, cfg, engine,
                                                                                       device)
    return engine.run(cfg.stage1_epochs, loaders(train_set, cfg.stage1_batch_size, cfg.seed, cfg.workers, 0,
                                                 device=device), step, _real_bytes(student, eval_set), resume,
                      "stage 1", callback and (lambda s, logs: callback(1, s, logs)), {"stage": 1})


def train_stage2(student: EntropicStudent, teacher: Teacher, cfg: StudentTrainConfig, train_set, eval_set,
                 resume: bool = False, progress: bool = True, callback=None) -> list[dict]:
    """Stage 2: encoder and prior frozen, coding tables built; decoder … head learn from the teacher's logits
    and the labels (KD) on the rounded latent, exactly what the bytes carry. Returns the history."""
    device = student.mean.device
    student.set_stage(2)
    model = distributed.wrap(student)
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=cfg.stage2_lr, momentum=0.9,
                          weight_decay=5e-4)
    sched = milestones(opt, len(train_set) // cfg.stage2_batch_size, cfg.stage2_epochs, cfg.stage2_milestones)
    engine = _student_engine(student, opt, sched, cfg, "stage2", progress)

    def step(batch):
        x = batch[0].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = batch[1].to(device, non_blocking=True)
        with torch.no_grad(), engine.autocast():
            t_logits = teacher(x).float()
        idx, _ = sample_rates(student, len(x))    # a variable-rate student: the decoder learns every rate
        with engine.autocast():          # ẑ is rounded in fp32 inside, exactly as compress() does
            logits = model(x, beta=idx)["logits"].float()
        loss = kd_loss(logits, t_logits, y, cfg.alpha, cfg.tau)
        return loss, {"kd": loss.item()}
    return engine.run(cfg.stage2_epochs, loaders(train_set, cfg.stage2_batch_size, cfg.seed, cfg.workers,
                                                 cfg.stage1_epochs, device=device), step,
                      _real_bytes(student, eval_set), resume, "stage 2",
                      callback and (lambda s, logs: callback(2, s, logs)), {"stage": 2})


def train_student(cfg: StudentTrainConfig, teacher: Teacher, resume: bool = False, progress: bool = True,
                  callback=None, final_eval: bool = True, train_set=None, val_set=None):
    """Train a student from ``teacher`` (stage 1, then stage 2); returns ``(student, meta)`` with real-byte results.

    ``callback(stage, step, logs)`` sees every step's loss terms (per image), e.g. to plot them.
    ``final_eval=False`` skips scoring the whole val set (``meta["val"]`` is then the last per-epoch evaluation
    on ``eval_length`` images). ``train_set``/``val_set`` replace Fashion-on-Photos.
    """
    if cfg.beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {cfg.beta}")
    if cfg.mixup > 0 and cfg.saliency_floor is not None:
        raise ValueError("mixup and the task-aware (saliency) loss do not mix: a mixed image has no one true class")
    ctx = distributed.init(cfg.device)      # under torchrun: join the group; else one process
    set_seed(cfg.seed)
    out, t0 = Path(cfg.out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    if ctx.main:
        checkpoint.write_json(out / "config.json", asdict(cfg))
    teacher = teacher.to(ctx.device).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    student = build_student(cfg, teacher)
    student.tune_tail, student.straight_through = cfg.stage2_tail, cfg.straight_through
    if cfg.init_from:
        warm_start(student, cfg.init_from)
    student = student.to(ctx.device).to(memory_format=torch.channels_last)    # faster convolutions on CPU and GPU
    if ctx.world > 1:
        torch.manual_seed(cfg.seed + ctx.rank)    # each rank its own stage-1 noise (weights are already equal)
    if train_set is None or val_set is None:
        default_train, default_val = cfg.datasets()
        train_set = train_set if train_set is not None else default_train
        val_set = val_set if val_set is not None else default_val
    every = max(1, len(val_set) // max(cfg.eval_length, 1))     # spread over the set: folders are sorted by class
    eval_set = torch.utils.data.Subset(val_set, range(0, len(val_set), every)[:cfg.eval_length])

    history = train_stage1(student, teacher, cfg, train_set, eval_set, resume, progress and ctx.main, callback)
    if not student.end_to_end:
        if ctx.main:
            save_student(out / "stage1.pt", student, {"stage": 1, "config": asdict(cfg)})   # warm starts use it
        if cfg.eval_stage1 and not (resume and (out / "stage1_val.json").is_file()):
            blob = json.dumps(evaluate_student(student, val_set, progress=progress)).encode()
            if ctx.main:
                checkpoint.atomic_write_bytes(out / "stage1_val.json", lambda f, b=blob: f.write(b))
        history = history + train_stage2(student, teacher, cfg, train_set, eval_set, resume, progress and ctx.main,
                                          callback)
    student.set_stage(2)
    student.eval()
    for model in (student, teacher):        # back to the layout a loaded checkpoint has: the same numbers
        model.to(memory_format=torch.contiguous_format)
    # every anchor of the grid on the whole val set (a one-rate student: its β); ``val``: the lowest β's
    by_beta = {f"{b:g}": evaluate_student(student, val_set, progress=progress, beta=b)
               for b in (student.codec.grid.anchors if final_eval else ())}
    final = by_beta[next(iter(by_beta))] if by_beta else history[-1]
    meta = {"beta": cfg.beta, "method": cfg.method, "val": final, **({"val_by_beta": by_beta} if by_beta else {}),
            "val_set": {"config": asdict(cfg.data_config()), "sha256": _digest(val_set)},
            "train": asdict(cfg), "history": history, "device": str(ctx.device), "torch": str(torch.__version__),
            "train_seconds": sum(h["seconds"] for h in history), "wall_seconds": time.time() - t0}
    distributed.barrier()
    if (out / "stage1_val.json").is_file():
        meta["stage1_val"] = json.loads((out / "stage1_val.json").read_text())
    if ctx.main:
        save_student(out / "student.pt", student, meta)
        checkpoint.write_json(out / "history.json", history)
    distributed.barrier()
    return student, meta


# ---- shipping in fp16 (data/ stays small) --------------------------------------------------------------------
@torch.no_grad()
def _round_to_half(model: torch.nn.Module) -> None:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.copy_(t.half().float())


def ship_half(src, dest, val_set=None, progress: bool = False, teacher=None) -> dict:
    """Store the teacher or student checkpoint ``src`` at ``dest`` with fp16 weights, re-scored *as stored*
    (a student's coding tables are rebuilt from its rounded prior, its bytes and accuracy measured again on the
    val set it records); the fp32 results stay in ``meta`` as ``*_fp32``. ``teacher``: a compact student's
    (default: the shipped one with its recorded digest). Returns the new metadata."""
    kind = checkpoint.load(src)["kind"]
    if kind not in ("teacher", "student"):
        raise ValueError(f"{src} is a {kind} checkpoint; ship_half stores teachers and students")
    model, meta = load_teacher(src) if kind == "teacher" else load_student(src, teacher)
    _round_to_half(model)
    val_set = val_set if val_set is not None else cached("val", "classification", **meta["val_set"]["config"])
    if _digest(val_set) != meta["val_set"]["sha256"]:
        raise ValueError(f"the val set rendered here differs from the one {src} was scored on; see data/README.md")
    if kind == "teacher":
        meta = {**meta, "val_accuracy_fp32": meta["val_accuracy"], "stored": "fp16",
                "val_accuracy": evaluate_accuracy(model, val_set)}
    else:
        model.update(force=True)
        by_beta = {f"{b:g}": evaluate_student(model, val_set, progress=progress, beta=b)   # every anchor, as stored
                   for b in model.codec.grid.anchors}
        meta = {**meta, "val_fp32": meta["val"], "val_by_beta_fp32": meta.get("val_by_beta"), "stored": "fp16",
                "val_by_beta": by_beta, "val": by_beta[f"{model.codec.grid.beta_min:g}"]}
    staged = Path(src).with_suffix(".fp16.pt")      # beside the run; then into place, its SHA-256 recorded
    (save_teacher if kind == "teacher" else save_student)(staged, model, meta, half=True)
    checkpoint.atomic_copy(staged, dest)
    return meta


# ---- tasks (notebook 04) ------------------------------------------------------------------------------------
class _Features(torch.nn.Module):
    """``backbone.features`` as a module's forward, so DDP can wrap stage 1 (feature distillation)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.features(x)


TASK_STAGE2_FIELDS = ("stage2_epochs", "stage2_distill", "stage2_tune")    # a task student's stage 1 reads none


def _fit_task(net, modules, loss_of_batch, cfg: TaskTrainConfig, epochs: int, lr: float, tag: str, progress: bool,
              train_set=None, forward: torch.nn.Module | None = None, name: str = "fit",
              ignore: tuple[str, ...] = ()) -> list[dict]:
    """AdamW + warm-up/cosine over ``epochs`` of fresh scenes (or ``train_set``) on the engine; the history.
    ``ignore``: config fields this fit does not read (a resumed run may differ in them)."""
    device = next(net.parameters()).device
    train = train_set if train_set is not None else FashionOnPhotos("train", "detection", cfg.data_config())
    if len(train) < cfg.batch_size:
        raise ValueError(f"the training set has {len(train)} samples, fewer than one batch of {cfg.batch_size}")
    total = epochs * (len(train) // cfg.batch_size)
    total = total if cfg.max_steps is None else min(total, cfg.max_steps)
    opt = torch.optim.AdamW([p for m in modules for p in m.parameters() if p.requires_grad], lr=lr,
                            weight_decay=cfg.weight_decay)
    engine = Engine(net, opt, warmup_cosine(opt, max(1, total // 20), total), out=cfg.out, name=name,
                    config=asdict(cfg), max_steps=total, progress=progress, ignore=ignore)
    # under torchrun: DDP around what the loss calls (the task losses are batch means: no loss scaling)
    model = distributed.wrap(forward or net, find_unused=True)
    loader = loaders(train, cfg.batch_size, cfg.seed, cfg.workers, collate=collate_detection,
                     shuffle=not hasattr(train, "set_epoch"))     # fresh scenes every epoch need no reshuffle

    def step(batch):
        images = [x.to(device) for x in batch[0]]
        targets = [{k: v.to(device) for k, v in t.items()} for t in batch[1]]
        losses = loss_of_batch(model, images, targets)
        loss = sum(losses.values())
        return loss, {"loss": loss.item()}
    return engine.run(epochs, loader, step, resume=cfg.resume, tag=tag)


def train_task_teacher(cfg: TaskTrainConfig, teacher, progress: bool = True, train_set=None):
    """Train FPN + head (+ the backbone stages ``cfg.teacher_tune``) of a task teacher on the classification
    ``teacher``'s frozen backbone; returns ``(net, meta)``.

    ``train_set`` replaces Fashion-on-Photos with any dataset of ``(image, target)`` in the docs/design.md §7
    format (e.g. ``minist.data.load("pennfudan", root=...)``; set ``num_classes`` and ``image_size``).
    """
    T._check_task(cfg.task)
    set_seed(cfg.seed)
    net = T.build_task_teacher(cfg.task, teacher, cfg.num_classes, cfg.image_size).tune(cfg.teacher_tuned())
    net = net.to(get_device(cfg.device))
    history = _fit_task(net, net.trainable(), lambda m, x, y: m(x, y), cfg, cfg.epochs, cfg.lr,
                        f"{cfg.task} teacher", progress, train_set, name=f"{cfg.task}-teacher")
    return net.eval(), {"train": asdict(cfg), "history": history}


def train_task_student(cfg: TaskTrainConfig, task_teacher, student, progress: bool = True, train_set=None,
                       val_set=None):
    """Train a task student on ``student``'s frozen encoder + prior; returns ``(net, meta)``.

    Stage 1 trains the decoder by feature distillation from the task teacher's ``layer1`` … ``layer4`` (no rate
    term: the bits are fixed); stage 2 trains decoder + FPN + head (+ the backbone stages ``cfg.stage2_tune``
    names) with the task loss, plus ``cfg.stage2_distill`` × the FPN levels' relative error to the task teacher's
    on the same scenes (:func:`pyramid_distillation`).
    ``meta["payload_digest"]`` holds the SHA-256 of the first val images' payloads before and after: they must
    be equal.
    """
    T._check_task(cfg.task)
    if cfg.stage2_distill is not None and not cfg.stage2_distill >= 0:
        raise ValueError(f"stage2_distill (γ) must be ≥ 0 or unset, not {cfg.stage2_distill}")
    if cfg.stage2_distill and task_teacher.backbone.fpn is None:     # before any training, not after stage 1
        raise ValueError("stage2_distill imitates the task teacher's FPN levels, and this task net has no FPN "
                         "(the paper preset's DeepLabv3): leave stage2_distill unset")
    net = T.build_task_student(task_teacher, student, cfg.tuned(), cfg.refine_blocks or 0)   # checks names first
    set_seed(cfg.seed)
    device = get_device(cfg.device)
    val = val_set if val_set is not None else cfg.val_scenes()
    before = payload_digest(student, val)
    task_teacher = task_teacher.to(device).eval()
    net = net.to(device)
    decoder = net.backbone.front.server_side()      # the decoder (+ its refine blocks)

    def stage1(features, images, _targets):  # decoder ≈ the teacher's layer1, judged through layer2 … layer4 too
        x = torch.stack(images)
        with torch.no_grad():
            target = task_teacher.backbone.features(x)
        return {"distillation": feature_distillation(features(x), target) / len(images)}   # per image

    tag = f"{cfg.task} student" + ("" if cfg.beta is None else f" β={cfg.beta:g}")
    name = f"{cfg.task}-student" + ("" if cfg.beta is None else f"-beta{cfg.beta:g}")
    heads = net.trainable()
    for m in heads:                          # stage 1 trains the decoder alone
        m.requires_grad_(False)
    h1 = _fit_task(net, decoder, stage1, cfg, cfg.stage1_epochs, cfg.stage1_lr, f"{tag} stage 1", progress,
                   train_set, forward=_Features(net.backbone), name=f"{name}-stage1", ignore=TASK_STAGE2_FIELDS)
    for m in heads:
        m.requires_grad_(True)
    seen = {}                                # the student's FPN levels of the step, for the pyramid imitation

    def stage2(model, images, targets):      # the task loss, + γ × the FPN levels' error to the teacher's
        losses = model(images, targets)
        if not cfg.stage2_distill:
            return losses
        with torch.no_grad():
            target = task_teacher.backbone(torch.stack(images))
        return {**losses, "pyramid": cfg.stage2_distill * pyramid_distillation(seen["levels"], target)}

    hook = (net.backbone.fpn.register_forward_hook(lambda _m, _x, out: seen.update(levels=out))
            if cfg.stage2_distill else None)
    try:
        h2 = _fit_task(net, decoder + net.trainable(), stage2, cfg, cfg.stage2_epochs, cfg.lr / 4,
                       f"{tag} stage 2", progress, train_set, name=f"{name}-stage2")
    finally:
        if hook is not None:
            hook.remove()
    after = payload_digest(net, val)
    if after != before:
        raise RuntimeError("the shared encoder's payloads changed during task training: the encoder or the "
                           "prior was not frozen")
    return net.eval(), {"train": asdict(cfg), "history": {"stage1": h1, "stage2": h2},
                        "payload_digest": {"before": before, "after": after, "images": PAYLOAD_IMAGES}}


# ---- learned image codecs (the input-compression baseline) --------------------------------------------------
def train_image_codec(cfg: ImageCodecConfig, progress: bool = True):
    """Train one codec at one λ with CompressAI's ``R + λ·255²·MSE`` on random crops; writes ``<out>/codec.pt``.

    Random ``crop``×``crop`` crops of the 128×128 training images (the models are fully convolutional;
    CompressAI trains on crops too) make a step 4× cheaper."""
    set_seed(cfg.seed)
    device, out, tic = get_device(cfg.device), Path(cfg.out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    model = build_image_codec(cfg.arch, cfg.N, cfg.M)
    if cfg.init_from:
        ck = checkpoint.load(cfg.init_from, kind="image-codec")
        if (ck["config"]["arch"], ck["config"]["N"], ck["config"]["M"]) != (cfg.arch, cfg.N, cfg.M):
            raise ValueError(f"{cfg.init_from} is a {ck['config']['arch']} N={ck['config']['N']} "
                             f"M={ck['config']['M']} codec; warm starts need the same architecture")
        model.load_state_dict(ck["state_dict"])
    model = model.to(device).train()
    crit = RateDistortionLoss(lmbda=cfg.lmbda)
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    engine = Engine(model, torch.optim.Adam(main, lr=cfg.lr), out=out, name="codec", config=asdict(cfg),
                    aux=(torch.optim.Adam(aux, lr=cfg.aux_lr), model.aux_loss), clip_grad=1.0,
                    max_steps=cfg.max_steps, progress=progress)
    data = FashionOnPhotos("train", "classification", FashionOnPhotosConfig(
        size=cfg.image_size, seed=cfg.data_seed, train_length=cfg.train_length))

    def loader(epoch: int):
        set_epoch(data, epoch)
        return DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True)

    def step(batch):
        x = batch[0]
        if cfg.crop < cfg.image_size:      # one random crop position per batch
            i, j = torch.randint(0, cfg.image_size - cfg.crop + 1, (2,)).tolist()
            x = x[..., i:i + cfg.crop, j:j + cfg.crop]
        parts = crit(model(x.to(device)), x.to(device))
        return parts["loss"], {"loss": parts["loss"].item(), "bpp": parts["bpp_loss"].item(),
                               "mse": parts["mse_loss"].item()}
    history = engine.run(cfg.epochs, loader, step, tag=f"{cfg.arch} λ={cfg.lmbda:g}")
    model.update(force=True)
    model.eval()
    meta = {"config": asdict(cfg), "history": history, "train_images": engine.step * cfg.batch_size,
            "train_seconds": time.time() - tic}
    save_image_codec(out / "codec.pt", model, asdict(cfg), meta)
    checkpoint.write_json(out / "history.json", history)
    return model, meta
