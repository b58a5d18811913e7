"""Training loops. This chapter: the teacher (cross-entropy, SGD, warm-up + cosine LR).

Every loop shares the same habits: a tqdm progress bar, evaluation each epoch,
an atomic checkpoint after each epoch (``last.pt``: weights, optimiser,
scheduler, epoch, RNG) so ``resume=True`` continues where a crash stopped, and a
final weights-only checkpoint with metadata (config, data fingerprint, accuracy).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint
from .data.synth import FashionOnPhotos, FashionOnPhotosConfig, cached
from .models.teacher import Teacher, TeacherConfig
from .utils import get_device, set_seed


@dataclass
class TeacherTrainConfig:
    """How the mini teacher is trained (``minist train-teacher`` exposes every field)."""

    preset: str = "mini"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    warmup_epochs: float = 0.5
    image_size: int = 128
    train_length: int = 16_000      # fresh images per epoch
    val_length: int = 2_000
    data_seed: int = 0
    seed: int = 0
    workers: int = 1
    max_steps: int | None = None    # stop early (quick mode, smoke tests); resume goes on at the next epoch
    device: str | None = None
    out: str = "runs/teacher-mini"

    def data_config(self) -> FashionOnPhotosConfig:
        return FashionOnPhotosConfig(size=self.image_size, seed=self.data_seed,
                                     train_length=self.train_length, val_length=self.val_length)


def _no_autocast():
    import contextlib
    return contextlib.nullcontext()


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base LR, then cosine decay to 0, stepped every batch."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset, batch_size: int = 250, device=None, progress: bool = False) -> float:
    """Top-1 accuracy (in %) of ``model`` on a classification dataset of (x, label)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    correct = total = 0
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress or None):
        pred = model(x.to(device)).argmax(1).cpu()
        correct += (pred == y).sum().item()
        total += len(y)
    model.train(was_training)
    return 100.0 * correct / total


RUN_CONTROL = ("max_steps", "workers", "device", "out")   # may change between a run and its resume


def _recipe(cfg: dict) -> dict:
    """The settings that define a run (JSON-normalised: a resumed config comes back from JSON)."""
    return json.loads(json.dumps({k: v for k, v in cfg.items() if k not in RUN_CONTROL}))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def _digest(dataset) -> str | None:
    return dataset.digest() if hasattr(dataset, "digest") else None


def _set_epoch(dataset, epoch: int) -> None:
    if hasattr(dataset, "set_epoch"):      # Fashion-on-Photos renders fresh images every epoch
        dataset.set_epoch(epoch)


def train_teacher(cfg: TeacherTrainConfig, resume: bool = False, model_config: TeacherConfig | None = None,
                  progress: bool = True, train_set=None, val_set=None) -> tuple[Teacher, dict]:
    """Train the mini teacher on Fashion-on-Photos; returns the model and its metadata.

    ``train_set``/``val_set`` replace Fashion-on-Photos with any classification datasets of
    ``(image in [0, 1], label)`` (e.g. the real photographs of ``imagenette-mini``).
    """
    if cfg.preset != "mini":
        raise ValueError("train_teacher trains the 'mini' preset; the 'paper' teacher is torchvision's "
                         "ImageNet ResNet-50 (minist.models.teacher.load_imagenet_resnet50)")
    set_seed(cfg.seed)
    device = get_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    mcfg = model_config or TeacherConfig.preset_config("mini", image_size=cfg.image_size)
    checkpoint.write_json(out / "config.json", {"train": asdict(cfg), "model": mcfg.to_dict()})
    model = Teacher(mcfg).to(device).to(memory_format=torch.channels_last)

    dcfg = cfg.data_config()
    train_set = train_set if train_set is not None else FashionOnPhotos("train", "classification", dcfg)
    val_set = val_set if val_set is not None else cached("val", "classification", **asdict(dcfg))
    steps_per_epoch = len(train_set) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, int(cfg.warmup_epochs * steps_per_epoch), total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history, start_epoch, step = [], 0, 0

    last = out / "last.pt"
    if resume and last.is_file():
        state = checkpoint.load(last, kind="teacher-train-state")
        if _recipe(state["config"]) != _recipe(asdict(cfg)):
            raise ValueError(f"{last} was made with a different training config; "
                             "start a new run (another --out) or pass the same settings")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]

    t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        _set_epoch(train_set, epoch)
        loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                             num_workers=cfg.workers, persistent_workers=False)
        model.train()
        tic, seen, run_loss = time.time(), 0, 0.0
        bar = tqdm(loader, desc=f"teacher epoch {epoch + 1}/{cfg.epochs}", disable=not progress or None)
        for x, y in bar:
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(y)
            run_loss = 0.9 * run_loss + 0.1 * loss.item() if seen > len(y) else loss.item()
            bar.set_postfix(loss=f"{run_loss:.3f}", lr=f"{sched.get_last_lr()[0]:.3g}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        epoch_seconds = time.time() - tic
        acc = evaluate_accuracy(model, val_set, device=device)
        history.append({"epoch": epoch + 1, "loss": run_loss, "val_accuracy": acc,
                        "seconds": epoch_seconds, "images_per_second": seen / epoch_seconds})
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {run_loss:.3f}  val acc {acc:.2f} %  "
                       f"({seen / epoch_seconds:.0f} img/s)")
        checkpoint.save(last, kind="teacher-train-state", config=asdict(cfg), state_dict=model.state_dict(),
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=_rng_state(),
                        epoch=epoch + 1, step=step, history=history)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break

    meta = {"val_accuracy": history[-1]["val_accuracy"] if history else None,
            "val_set": {"name": getattr(val_set, "name", "fashion-on-photos"), "task": "classification", "split": "val",
                        "config": asdict(dcfg), "sha256": _digest(val_set)},
            "train": asdict(cfg), "history": history, "steps": step,
            "train_seconds": sum(h["seconds"] for h in history), "wall_seconds": time.time() - t0,
            "device": str(device), "torch": str(torch.__version__)}
    save_teacher(out / "teacher.pt", model, meta)
    checkpoint.write_json(out / "history.json", history)
    return model.eval(), meta


def save_teacher(path, model: Teacher, meta: dict) -> Path:
    return checkpoint.save(path, kind="teacher", config=model.config.to_dict(),
                           state_dict=model.to(memory_format=torch.contiguous_format).state_dict(), meta=meta)


def load_teacher(path) -> tuple[Teacher, dict]:
    """A teacher from a weights-only checkpoint, in eval mode, with its metadata."""
    ck = checkpoint.load(path, kind="teacher")
    model = Teacher(TeacherConfig.from_dict(ck["config"]))
    checkpoint.load_weights(model, {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()},
                            path)
    return model.eval(), ck["meta"]


# ---- the Entropic Student: stage 1 (feature distillation + β·rate), stage 2 (KD) ------------------------

@dataclass
class StudentTrainConfig:
    """The two-stage recipe of DESIGN §3, with epochs scaled for the mini setting.

    The paper trains stage 1 for ~200k steps; the mini budget is ~750. In that budget the prior's
    density, which starts wide (CompressAI's ``init_scale=10``), tightens too slowly at lr 1e-3 and
    the rate term barely moves; the prior therefore gets its own, larger learning rate here.
    """

    preset: str = "mini"
    beta: float = 0.02               # weight of the rate term: larger β → fewer bits
    channels: int = 12               # C, latent channels
    stage1_epochs: int = 6
    stage1_batch_size: int = 64
    stage1_lr: float = 2e-3          # Adam (paper: 1e-3)
    stage1_milestones: tuple[float, ...] = (0.5, 0.8)   # ×0.1 at these fractions (paper: epochs 5 and 8 of 10)
    prior_lr: float = 2e-2           # the prior's density parameters (paper: same as stage1_lr; see below)
    aux_lr: float = 2e-2             # the prior's quantile (auxiliary) loss, stepped every iteration
    stage2_epochs: int = 3
    stage2_batch_size: int = 128
    stage2_lr: float = 1e-3          # SGD, momentum 0.9, weight decay 5e-4
    stage2_milestones: tuple[float, ...] = (0.5,)       # ×0.1 at these fractions (paper: epoch 5 of 10)
    alpha: float = 0.5               # 0.5 · CE + 0.5 · τ² · KL
    tau: float = 1.0
    image_size: int = 128
    train_length: int = 8_000        # fresh images per epoch
    val_length: int = 2_000
    eval_length: int = 500           # images scored at real bytes after each epoch
    data_seed: int = 0
    seed: int = 0
    workers: int = 1
    max_steps: int | None = None     # per stage (quick mode, smoke tests)
    device: str | None = None
    out: str = "runs/student-mini"
    method: str = "entropic"         # "entropic", or the baselines "crbq" (CR+BQ) and "end-to-end" (Singh et al.)
    init_from: str | None = None     # warm start: encoder, prior and decoder of this student checkpoint
    eval_stage1: bool = False        # also score the whole val set after stage 1 (the stage-1-only ablation)
    stage1_warmup_steps: int = 0     # linear lr warm-up (for warm starts: Adam's first steps are large)
    amp: bool = False                # bf16 autocast on CUDA for the teacher's forward passes (paper preset)
    data_root: str | None = None     # the paper preset: an ImageNet folder (train/ and val/)

    def data_config(self) -> FashionOnPhotosConfig:
        return FashionOnPhotosConfig(size=self.image_size, seed=self.data_seed,
                                     train_length=self.train_length, val_length=self.val_length)

    @classmethod
    def preset_config(cls, preset: str = "mini", **overrides) -> StudentTrainConfig:
        """The mini recipe, or the paper's (DESIGN §3: ResNet-50 teacher, C = 24, 224 px ImageNet, stage 1
        10 epochs of Adam 1e-3 ×0.1 at epochs 5 and 8, batch 64; stage 2 10 epochs of SGD 1e-3 ×0.1 at epoch 5,
        batch 128). ``batch_size`` is global: ``torchrun`` splits it over the processes."""
        presets = {
            "mini": {},
            "paper": dict(preset="paper", channels=24, stage1_epochs=10, stage1_batch_size=64, stage1_lr=1e-3,
                          stage1_milestones=(0.5, 0.8), prior_lr=1e-3, aux_lr=1e-3, stage2_epochs=10,
                          stage2_batch_size=128, stage2_lr=1e-3, stage2_milestones=(0.5,), image_size=224,
                          val_length=50_000, eval_length=1_000, workers=8, amp=True, out="runs/student-paper"),
        }
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
        return cls(**{**presets[preset], **overrides})

    def check_data(self) -> None:
        """Fail early, with what to do, when the paper preset has no ImageNet folder."""
        if self.preset != "paper":
            return
        if not self.data_root:
            raise ValueError("the paper preset trains on ImageNet: pass data_root=<folder with train/ and val/> "
                             "(--data-root on the command line; see docs/paper_scale.md)")
        for split in ("train", "val"):
            if not (Path(self.data_root).expanduser() / split).is_dir():
                raise FileNotFoundError(f"ImageNet not found: {Path(self.data_root) / split} is not a folder; lay "
                                        "it out as root/train/<wnid>/ and root/val/<wnid>/ (docs/paper_scale.md)")

    def datasets(self):
        """(train, val) for this config: Fashion-on-Photos for mini, ImageNet from ``data_root`` for paper."""
        if self.preset == "paper":
            from .data import load
            self.check_data()
            return (load("imagenet", split="train", root=self.data_root, size=self.image_size),
                    load("imagenet", split="val", root=self.data_root, size=self.image_size))
        dcfg = self.data_config()
        return FashionOnPhotos("train", "classification", dcfg), cached("val", "classification", **asdict(dcfg))


METHODS = ("entropic", "crbq", "end-to-end")


def build_student(cfg: StudentTrainConfig, teacher: Teacher):
    """The model ``cfg.method`` trains: an Entropic Student, a CR+BQ student, or Singh et al.'s end-to-end one."""
    from .models.bottleneck import BottleneckConfig
    from .models.crbq import CRBQStudent
    from .models.student import EntropicStudent
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
    bcfg = BottleneckConfig(channels=cfg.channels, target_channels=teacher.layer2[0].conv1.in_channels)
    if cfg.method == "crbq":
        return CRBQStudent(teacher, bcfg)
    if cfg.method == "end-to-end":      # no teacher: layer2 … head start from random weights and train
        set_seed(cfg.seed)
        student = EntropicStudent(Teacher(teacher.config), bcfg)
        student.end_to_end = True
        return student.set_stage(1)
    return EntropicStudent(teacher, bcfg)


def warm_start(student, path) -> None:
    """Copy encoder, prior (density parameters, not coding tables) and decoder from a student checkpoint."""
    from .models.student import CDF_BUFFERS
    ck = checkpoint.load(path, kind="student")
    if ck["config"]["bottleneck"] != student.config.to_dict():
        raise ValueError(f"{path} has bottleneck {ck['config']['bottleneck']}, this student "
                         f"{student.config.to_dict()}: warm starts need the same C and T")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    for name in ("encoder", "entropy_bottleneck", "decoder"):
        module = getattr(student, name, None)
        if module is None:
            continue
        part = {k[len(name) + 1:]: v for k, v in sd.items()
                if k.startswith(name + ".") and k.rsplit(".", 1)[-1] not in CDF_BUFFERS}
        missing, unexpected = module.load_state_dict(part, strict=False)
        if unexpected or any(not m.startswith("_") for m in missing):
            raise ValueError(f"{path}: {name} does not match (missing {missing}, unexpected {unexpected})")


def _milestone_scheduler(optimizer, steps_per_epoch: int, epochs: int, fractions, warmup_steps: int = 0):
    """×0.1 at the given fractions of the stage (rounded to whole epochs), stepped every batch;
    with ``warmup_steps``, a linear warm-up first (useful when a stage starts from trained weights)."""
    milestones = sorted({max(1, round(f * epochs)) * steps_per_epoch for f in fractions})
    if not warmup_steps:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) * 0.1 ** sum(step >= m for m in milestones)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def stage1_optimizers(student, cfg: StudentTrainConfig, coded: bool = True):
    """Adam for encoder + decoder (``stage1_lr``) and the prior's density (``prior_lr``); a second Adam for the
    prior's quantiles (the auxiliary loss, ``aux_lr``). CR+BQ has no prior: ``(opt, None)``."""
    prior = [p for n, p in student.named_parameters()
             if n.startswith("entropy_bottleneck.") and not n.endswith("quantiles")]
    nets = [p for n, p in student.named_parameters() if p.requires_grad and not n.startswith("entropy_bottleneck.")]
    groups = [{"params": nets, "lr": cfg.stage1_lr}]
    if coded:
        groups.append({"params": prior, "lr": cfg.prior_lr})
    aux_opt = torch.optim.Adam([student.entropy_bottleneck.quantiles], lr=cfg.aux_lr) if coded else None
    return torch.optim.Adam(groups), aux_opt


def stage1_objective(model, teacher: Teacher, x: torch.Tensor, beta: float, amp=None, coded: bool = True):
    """Stage 1's loss for one (per-rank) batch and its per-image terms: Σ_j ‖S_j − T_j‖² + β·bits (DESIGN §3).

    ``model`` is the student (or DDP around it); the teacher runs without gradients, under ``amp`` if given.
    The loss is a batch *sum*, multiplied by the world size under DDP (:func:`minist.distributed.loss_scale`).
    CR+BQ (``coded=False``) has no rate term.
    """
    from . import distributed
    from .losses import feature_distillation, stage1_loss
    with torch.no_grad(), (amp or _no_autocast()):
        t_feats = teacher.features(x, ("layer1", "layer2", "layer3", "layer4"))
    t_feats = {k: v.float() for k, v in t_feats.items()}
    o = model(x)
    if coded:
        parts = stage1_loss(o["features"], t_feats, o["likelihoods"], beta)
    else:                                           # CR+BQ: feature distillation alone
        d = feature_distillation(o["features"], t_feats)
        parts = {"loss": d, "distortion": d, "bits": torch.zeros(())}
    logs = {"distortion": parts["distortion"].item() / len(x), "bits": parts["bits"].item() / len(x)}
    return parts["loss"] * distributed.loss_scale(), logs


def train_student(cfg: StudentTrainConfig, teacher: Teacher, resume: bool = False, progress: bool = True,
                  callback=None, final_eval: bool = True, train_set=None, val_set=None):
    """Train an Entropic Student from ``teacher``; returns ``(student, meta)`` with real-byte results.

    ``callback(stage, step, logs)``, if given, sees every step's loss terms (per image), e.g. to plot them.
    ``final_eval=False`` skips scoring the whole val set at the end (``meta["val"]`` is then the last
    per-epoch evaluation on ``eval_length`` images). ``train_set``/``val_set`` replace Fashion-on-Photos.
    """
    import torch.nn.functional as F

    from . import distributed
    from .evaluate import evaluate_student
    from .losses import kd_loss
    from .models.entropy import rate_bits
    if cfg.beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {cfg.beta}")
    ctx = distributed.init(cfg.device)      # under torchrun: join the group; else one process
    set_seed(cfg.seed)
    device = ctx.device
    main = ctx.main                          # checkpoints, files and logs come from rank 0 only
    progress = progress and main
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        checkpoint.write_json(out / "config.json", asdict(cfg))
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = build_student(cfg, teacher)
    if cfg.init_from:
        warm_start(student, cfg.init_from)
    student = student.to(device)
    if ctx.world > 1:
        torch.manual_seed(cfg.seed + ctx.rank)    # each rank its own stage-1 noise (weights are already equal)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else _no_autocast()
    coded = cfg.method != "crbq"        # a learned prior, a rate term and coding tables

    dcfg = cfg.data_config()
    if train_set is None or val_set is None:
        default_train, default_val = cfg.datasets()
        train_set = train_set if train_set is not None else default_train
        val_set = val_set if val_set is not None else default_val
    step = max(1, len(val_set) // max(cfg.eval_length, 1))     # spread over the set: folders are sorted by class
    eval_set = torch.utils.data.Subset(val_set, range(0, len(val_set), step)[:cfg.eval_length])

    stages = [(1, cfg.stage1_epochs, cfg.stage1_batch_size), (2, cfg.stage2_epochs, cfg.stage2_batch_size)]
    if cfg.method == "end-to-end":       # one stage: CE + β·rate, everything trains
        stages = stages[:1]
    history, done = [], 0          # ``done``: epochs finished over both stages
    last = out / "last.pt"
    state = None
    if resume and last.is_file():
        state = checkpoint.load(last, kind="student-train-state")
        if _recipe(state["config"]) != _recipe(asdict(cfg)):
            raise ValueError(f"{last} was made with a different training config; "
                             "start a new run (another --out) or pass the same settings")
        history, done = state["history"], state["epoch"]

    t0 = time.time()
    for stage, epochs, batch_size in stages:
        first = done - (cfg.stage1_epochs if stage == 2 else 0)
        if first >= epochs:
            continue
        if state is not None:             # resuming: the weights of the last finished epoch
            student.load_state_dict(state["state_dict"])
        student.set_stage(stage)
        model = distributed.wrap(student)    # DDP registers the parameters this stage trains
        steps = len(train_set) // batch_size
        local_batch = distributed.per_rank_batch(batch_size)
        if stage == 1:
            opt, aux_opt = stage1_optimizers(student, cfg, coded)
            sched = _milestone_scheduler(opt, steps, epochs, cfg.stage1_milestones, cfg.stage1_warmup_steps)
        else:
            opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=cfg.stage2_lr,
                                  momentum=0.9, weight_decay=5e-4)
            aux_opt = None
            sched = _milestone_scheduler(opt, steps, epochs, cfg.stage2_milestones)
        if state is not None:
            torch.set_rng_state(state["rng"]["torch"])
            if state["stage"] == stage:   # mid-stage: the optimiser and schedule go on too
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                if aux_opt is not None:
                    aux_opt.load_state_dict(state["aux_optimizer"])
        state = None

        for epoch in range(max(first, 0), epochs):
            _set_epoch(train_set, done)
            loader = torch.utils.data.DataLoader(train_set, batch_size=local_batch, drop_last=True,
                                                 sampler=distributed.sampler(train_set, cfg.seed, done),
                                                 num_workers=cfg.workers, pin_memory=device.type == "cuda")
            student.train()
            tic, seen, terms = time.time(), 0, {}
            bar = tqdm(loader, desc=f"stage {stage} epoch {epoch + 1}/{epochs}", disable=not progress or None)
            for step, (x, y) in enumerate(bar):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if stage == 1 and cfg.method == "end-to-end":     # Singh et al.: CE + β · bits per image
                    o = model(x)
                    ce = F.cross_entropy(o["logits"], y)
                    bits = rate_bits(o["likelihoods"]) / len(x)
                    loss = ce + cfg.beta * bits
                    logs = {"ce": ce.item(), "bits": bits.item()}
                elif stage == 1:
                    loss, logs = stage1_objective(model, teacher, x, cfg.beta, amp, coded)
                else:
                    with torch.no_grad(), amp:
                        t_logits = teacher(x).float()
                    o = model(x)     # fp32: ẑ must be rounded exactly as compress() rounds it
                    loss = kd_loss(o["logits"], t_logits, y, cfg.alpha, cfg.tau)
                    logs = {"kd": loss.item()}
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if aux_opt is not None:
                    aux = student.aux_loss()
                    aux_opt.zero_grad(set_to_none=True)
                    aux.backward()
                    aux_opt.step()
                    logs["aux"] = aux.item()
                seen += len(x)
                for k, v in logs.items():
                    terms.setdefault(k, []).append(v)
                if callback is not None:
                    callback(stage, step, logs)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
                if cfg.max_steps is not None and step + 1 >= cfg.max_steps:
                    break
            seconds = time.time() - tic
            student.update(force=True)
            res = evaluate_student(student, eval_set, progress=False)
            done += 1
            rec = {"stage": stage, "epoch": epoch + 1, "seconds": seconds, "images_per_second": seen / seconds,
                   **{f"train_{k}": sum(v) / len(v) for k, v in terms.items()}, **res}
            history.append(rec)
            if progress:
                tqdm.write(f"stage {stage} epoch {epoch + 1}: accuracy {res['accuracy']:.2f} % at "
                           f"{res['kb_mean']:.3f} KB ({res['bpp']:.3f} bpp), {seen / seconds:.0f} img/s")
            if main:
                checkpoint.save(last, kind="student-train-state", config=asdict(cfg),
                                state_dict=student.state_dict(), optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(),
                                aux_optimizer=aux_opt.state_dict() if aux_opt else {}, rng=_rng_state(),
                                stage=stage, epoch=done, history=history)
            distributed.barrier()
        if main and stage == 1 and cfg.method != "end-to-end" and epochs > first:
            save_student(out / "stage1.pt", student, {"stage": 1, "config": asdict(cfg)})   # warm starts use it
        if stage == 1 and cfg.eval_stage1 and cfg.method != "end-to-end":
            student.eval()
            blob = json.dumps(evaluate_student(student, val_set, progress=progress)).encode()
            if main:
                checkpoint.atomic_write_bytes(out / "stage1_val.json", lambda f, b=blob: f.write(b))

    student.set_stage(2)
    student.eval()
    final = evaluate_student(student, val_set, progress=progress) if final_eval else history[-1]
    meta = {"beta": cfg.beta, "method": cfg.method, "val": final,
            "val_set": {"config": asdict(dcfg), "sha256": _digest(val_set)},
            "train": asdict(cfg), "history": history, "device": str(device), "torch": str(torch.__version__),
            "train_seconds": sum(h["seconds"] for h in history), "wall_seconds": time.time() - t0}
    distributed.barrier()
    if (out / "stage1_val.json").is_file():
        meta["stage1_val"] = json.loads((out / "stage1_val.json").read_text())
    if main:
        save_student(out / "student.pt", student, meta)
        checkpoint.write_json(out / "history.json", history)
    distributed.barrier()
    return student, meta


def save_student(path, student, meta: dict, half: bool = False) -> Path:
    """A weights-only student checkpoint (CDF tables included) with its configs and metadata."""
    config = {"teacher": student.teacher_config.to_dict(), "bottleneck": student.config.to_dict()}
    return checkpoint.save(path, kind="student", config=config, state_dict=student.state_dict(), meta=meta, half=half)


def load_student(path):
    """A student from :func:`save_student`, in eval mode (stage 2, tables loaded), with its metadata."""
    from .models.bottleneck import BottleneckConfig
    from .models.student import EntropicStudent
    ck = checkpoint.load(path, kind="student")
    teacher = Teacher(TeacherConfig.from_dict(ck["config"]["teacher"]))
    student = EntropicStudent(teacher, BottleneckConfig(**ck["config"]["bottleneck"]))
    weights = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    checkpoint.load_weights(student, weights, path)
    student.stage = 2
    for name in ("encoder", "entropy_bottleneck"):
        getattr(student, name).requires_grad_(False)
    return student.eval(), ck["meta"]
