"""One encoder, many tasks: training and measuring detection and segmentation (notebook 04).

* :func:`train_task_teacher` — FPN + task head on the frozen classification teacher (task loss only).
* :func:`train_task_student` — on a shipped classification student's frozen encoder + prior:
  stage 1 trains the decoder by feature distillation from the task teacher's ``layer1`` … ``layer4``
  (DESIGN §3's Σ‖S_j − T_j‖², no rate term: the bits are fixed); stage 2 trains decoder + FPN + head
  with the task loss. The encoder and prior never change, so the payloads stay bit-identical
  (:func:`payload_digest` before and after; the study records both).
* :func:`evaluate_task` — DESIGN §4 for tasks: one image → one bitstream (or JPEG/WebP file), batch 1,
  real bytes; detection mAP@[.5:.95] and mAP@.5 with torchmetrics (pycocotools backend),
  segmentation mIoU (over the 11 classes, background included, as for VOC) and pixel accuracy.
* :func:`run` / ``minist tasks`` — the whole study: both task teachers, task students at
  :data:`BETAS`, JPEG/WebP baselines; :func:`ship` writes ``data/results_tasks_mini.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .data import collate_detection
from .data.synth import FashionOnPhotos, FashionOnPhotosConfig, cached
from .models import tasks as T
from .utils import data_dir, get_device, set_seed

BETAS = (0.02, 0.16, 0.64)
# the shipped task students' budgets (CPU-sized: detection's stage 2 runs at ≈22 scenes/s on one core, the
# segmenter's at ≈50). Against 1 + 2 epochs these gained 1.8–3.1 mAP and 1.3–2.6 mIoU; stage 1's feature
# distillation barely moves after its first epoch, so detection keeps one.
STUDENT_RECIPE = {"detection": dict(stage1_epochs=1, stage2_epochs=4),
                  "segmentation": dict(stage1_epochs=3, stage2_epochs=4)}
JPEG_QUALITIES = (5, 10, 20, 50, 90)
WEBP_QUALITIES = (1, 5, 20, 50, 90)
METRICS = {"detection": ("map", "map_50"), "segmentation": ("miou", "pixel_accuracy")}
RESULTS_FILE = "results_tasks_mini.json"
TEACHER_FILE = "task_teacher_mini_{task}.pt"
STUDENT_FILE = "task_student_mini_{task}_beta{beta:g}.pt"


@dataclass
class TaskTrainConfig:
    """Task training on multi-object Fashion-on-Photos (teacher: ``epochs``; student: stage 1 + stage 2)."""

    task: str = "detection"
    num_classes: int = 11            # 0 = background + the 10 Fashion-MNIST classes
    beta: float | None = None        # None: the task teacher; else the shipped classification student's β
    epochs: int = 5                  # task teacher
    stage1_epochs: int = 1           # task student: feature distillation of the decoder
    stage2_epochs: int = 2           # task student: task loss on decoder + FPN + head
    batch_size: int = 32
    lr: float = 2e-3                 # AdamW, warm-up + cosine
    stage1_lr: float = 1e-3
    weight_decay: float = 1e-4
    image_size: int = 128
    train_length: int = 4_000        # fresh scenes per epoch
    val_length: int = 500
    data_seed: int = 0
    seed: int = 0
    max_steps: int | None = None     # per stage (quick mode, tests)
    device: str | None = None
    out: str = "runs/tasks"
    resume: bool = False             # go on from <out>/<stage>-last.pt, written after every epoch
    preset: str = "mini"
    data_root: str | None = None     # the paper preset: COCO 2017 (detection) or VOCdevkit's parent (segmentation)
    workers: int = 0

    def data_config(self) -> FashionOnPhotosConfig:
        return FashionOnPhotosConfig(size=self.image_size, seed=self.data_seed, train_length=self.train_length,
                                     val_length=self.val_length)

    @classmethod
    def preset_config(cls, preset: str = "mini", **overrides) -> TaskTrainConfig:
        """mini: Fashion-on-Photos scenes. paper: torchvision's Faster R-CNN R50-FPN on COCO 2017 (91 labels) or
        DeepLabv3-R50 on PASCAL VOC 2012 (21 labels), 512-px images. DESIGN gives no task recipe; these are
        starting points (global batch 16, AdamW), not the paper's values."""
        presets = {
            "mini": {},
            "paper": dict(preset="paper", image_size=512, epochs=0, stage1_epochs=2, stage2_epochs=6, batch_size=16,
                          lr=1e-4, stage1_lr=1e-4, workers=8, out="runs/tasks-paper"),
        }
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
        cfg = cls(**{**presets[preset], **overrides})
        if preset == "paper" and "num_classes" not in overrides:
            cfg.num_classes = 91 if cfg.task == "detection" else 21
        return cfg

    def datasets(self):
        """(train, val) of the task: Fashion-on-Photos scenes (mini), COCO 2017 or VOC 2012 (paper)."""
        from .data import load
        if self.preset != "paper":
            return FashionOnPhotos("train", "detection", self.data_config()), val_scenes(self)
        if not self.data_root:
            raise ValueError(f"the paper preset's {self.task} needs data_root=<folder> (--data-root): COCO 2017 for "
                             "detection, the parent of VOCdevkit/ for segmentation (see docs/paper_scale.md)")
        if self.task == "detection":
            return tuple(load("coco", split=s, root=self.data_root, size=self.image_size) for s in ("train", "val"))
        return tuple(load("voc", split=s, task="segmentation", year="2012", root=self.data_root,
                          size=self.image_size) for s in ("train", "val"))


def val_scenes(cfg: TaskTrainConfig | None = None):
    """The cached multi-object val scenes every task point is scored on."""
    return cached("val", "detection", **asdict((cfg or TaskTrainConfig()).data_config()))


# ---- training -------------------------------------------------------------------------------------
def _params(modules) -> list:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def _fit(net, modules, loss_of_batch, cfg: TaskTrainConfig, epochs: int, lr: float, tag: str,
         progress: bool, train_set=None, forward: torch.nn.Module | None = None, name: str = "fit") -> list[dict]:
    """AdamW + warm-up/cosine over ``epochs`` of fresh scenes (or ``train_set``); returns the per-epoch history.

    After every epoch rank 0 writes ``<cfg.out>/<name>-last.pt`` (weights, optimiser, schedule, history);
    with ``cfg.resume`` a run goes on from it.
    """
    from . import distributed
    from .train import _set_epoch, warmup_cosine
    device = next(net.parameters()).device
    train = train_set if train_set is not None else FashionOnPhotos("train", "detection", cfg.data_config())
    if len(train) < cfg.batch_size:
        raise ValueError(f"the training set has {len(train)} samples, fewer than one batch of {cfg.batch_size}")
    steps = len(train) // cfg.batch_size
    total = epochs * steps if cfg.max_steps is None else min(epochs * steps, cfg.max_steps)
    opt = torch.optim.AdamW(_params(modules), lr=lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, max(1, total // 20), total)
    # under torchrun: DDP around what the loss calls (the task losses are batch means: no loss scaling)
    model = distributed.wrap(forward or net, find_unused=True)
    progress = progress and distributed.is_main()
    history, step, start = [], 0, 0
    last = Path(cfg.out) / f"{name}-last.pt"
    if cfg.resume and last.is_file():
        state = checkpoint.load(last, kind="task-train-state")
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, step, start = state["history"], state["step"], state["epoch"]
    for epoch in range(start, epochs):
        _set_epoch(train, epoch)
        # Fashion-on-Photos renders new scenes every epoch; a fixed dataset is shuffled (per rank under torchrun)
        loader = torch.utils.data.DataLoader(train, batch_size=distributed.per_rank_batch(cfg.batch_size),
                                             sampler=distributed.sampler(train, cfg.seed, epoch,
                                                                         shuffle=not hasattr(train, "set_epoch")),
                                             collate_fn=collate_detection, drop_last=True, num_workers=cfg.workers)
        net.train()
        tic, seen, run = time.time(), 0, 0.0
        bar = tqdm(loader, desc=f"{tag} {epoch + 1}/{epochs}", leave=False, disable=not progress or None)
        for images, targets in bar:
            images = [x.to(device) for x in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            losses = loss_of_batch(model, images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{tag}: the loss became {loss.item()} at step {step}; "
                                         "lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(images)
            run = 0.9 * run + 0.1 * loss.item() if seen > len(images) else loss.item()
            bar.set_postfix(loss=f"{run:.3f}")
            if step >= total:
                break
        history.append({"epoch": epoch + 1, "loss": run, "images": seen, "seconds": time.time() - tic})
        if progress:
            print(f"{tag} epoch {epoch + 1}/{epochs}: loss {run:.4f}, {seen / history[-1]['seconds']:.1f} images/s",
                  flush=True)
        if distributed.is_main():
            checkpoint.save(last, kind="task-train-state", config=asdict(cfg), state_dict=net.state_dict(),
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(), epoch=epoch + 1, step=step,
                            history=history)
        distributed.barrier()
        if step >= total:
            break
    return history


def train_task_teacher(cfg: TaskTrainConfig, teacher, progress: bool = True, train_set=None):
    """Train FPN + head of a task teacher on the frozen classification ``teacher``; returns ``(net, meta)``.

    ``train_set`` replaces Fashion-on-Photos with any dataset of ``(image, target)`` in the DESIGN §7
    format (e.g. ``minist.data.load("pennfudan", root=...)``; set ``num_classes`` and ``image_size``).
    """
    T._check_task(cfg.task)
    set_seed(cfg.seed)
    net = T.build_task_teacher(cfg.task, teacher, cfg.num_classes, cfg.image_size).to(get_device(cfg.device))
    history = _fit(net, net.trainable(), lambda m, x, y: m(x, y), cfg, cfg.epochs, cfg.lr, f"{cfg.task} teacher",
                   progress, train_set, name=f"{cfg.task}-teacher")
    return net.eval(), {"train": asdict(cfg), "history": history}


def train_task_student(cfg: TaskTrainConfig, task_teacher, student, progress: bool = True, train_set=None,
                       val_set=None):
    """Train a task student on ``student``'s frozen encoder + prior; returns ``(net, meta)``.

    ``meta["payload_digest"]`` holds the SHA-256 of the payloads of the first val images under the
    untouched classification student and under the trained task student: they must be equal.
    """
    from .losses import feature_distillation
    T._check_task(cfg.task)
    set_seed(cfg.seed)
    device = get_device(cfg.device)
    val = val_set if val_set is not None else val_scenes(cfg)
    before = payload_digest(student, val)
    task_teacher = task_teacher.to(device).eval()
    net = T.build_task_student(task_teacher, student).to(device)
    decoder = net.backbone.front.decoder

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
    h1 = _fit(net, [decoder], stage1, cfg, cfg.stage1_epochs, cfg.stage1_lr, f"{tag} stage 1", progress, train_set,
              forward=_Features(net.backbone), name=f"{name}-stage1")
    for m in heads:
        m.requires_grad_(True)
    h2 = _fit(net, [decoder] + net.trainable(), lambda m, x, y: m(x, y), cfg, cfg.stage2_epochs, cfg.lr / 4,
              f"{tag} stage 2", progress, train_set, name=f"{name}-stage2")
    after = payload_digest(net, val)
    if after != before:
        raise RuntimeError("the shared encoder's payloads changed during task training: the encoder or the "
                           "prior was not frozen")
    return net.eval(), {"train": asdict(cfg), "history": {"stage1": h1, "stage2": h2},
                        "payload_digest": {"before": before, "after": after, "images": PAYLOAD_IMAGES}}


PAYLOAD_IMAGES = 50


class _Features(torch.nn.Module):
    """``backbone.features`` as a module's forward, so DDP can wrap stage 1 (feature distillation)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.features(x)


def _device_part(model):
    """The device half that sends ``model``'s bytes: a classification student's, or a task student's (the same
    shared encoder + prior, so the same :class:`~minist.models.student.DevicePart`)."""
    from .models.student import DevicePart
    return DevicePart(model.backbone.front if isinstance(model, T.TaskNet) else model)


def payload_digest(model, dataset, n: int = PAYLOAD_IMAGES) -> str:
    """SHA-256 over the payloads of the first ``n`` images, sent by a student or a task student's front."""
    device_part = _device_part(model)
    h = hashlib.sha256()
    for i in range(min(n, len(dataset))):
        h.update(device_part(dataset[i][0].unsqueeze(0).to(device_part.mean.device)))
    return h.hexdigest()


# ---- checkpoints ----------------------------------------------------------------------------------
def _parts(net) -> dict:
    """The modules a task checkpoint holds: what task training changed (never the shared encoder/prior)."""
    parts = {"fpn": net.backbone.fpn, "head": net.head}
    if isinstance(net.backbone.front, T.StudentFront):
        parts["decoder"] = net.backbone.front.decoder
    return parts


def save_task(path, net, meta: dict, half: bool = True) -> Path:
    sd = {f"{name}.{k}": v for name, m in _parts(net).items() for k, v in m.state_dict().items()}
    kind = "task-student" if "decoder" in _parts(net) else "task-teacher"
    return checkpoint.save(path, kind=kind, config={"task": net.task, "num_classes": net.num_classes},
                           state_dict=sd, meta=meta, half=half)


def _load_parts(net, ck: dict, path) -> None:
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    for name, m in _parts(net).items():
        part = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + ".")}
        try:
            m.load_state_dict(part, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: its {name} does not fit this model ({e})") from e


def load_task_teacher(path, teacher):
    ck = checkpoint.load(path, kind="task-teacher")
    net = T.build_task_teacher(ck["config"]["task"], teacher, ck["config"]["num_classes"])
    _load_parts(net, ck, path)
    return net.eval(), ck["meta"]


def load_task_student(path, task_teacher, student):
    ck = checkpoint.load(path, kind="task-student")
    if ck["config"]["task"] != task_teacher.task:
        raise ValueError(f"{path} is a {ck['config']['task']} student, the task teacher does {task_teacher.task}")
    net = T.build_task_student(task_teacher, student)
    _load_parts(net, ck, path)
    return net.eval(), ck["meta"]


# ---- evaluation -----------------------------------------------------------------------------------
IGNORE = 255


class SegmentationScore:
    """Confusion matrix over classes; mIoU averages the classes that occur (in truth or prediction)."""

    def __init__(self, num_classes: int = 11):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        k = self.num_classes
        truth, pred = truth.reshape(-1).long(), pred.reshape(-1).long().cpu()
        keep = truth != IGNORE            # VOC's 255 = "void" border pixels are not scored
        idx = truth[keep] * k + pred[keep]
        self.confusion += torch.bincount(idx, minlength=k * k).reshape(k, k)

    def compute(self) -> dict:
        c = self.confusion.double()
        inter, union = c.diag(), c.sum(0) + c.sum(1) - c.diag()
        present = union > 0
        iou = inter[present] / union[present]
        return {"miou": 100.0 * float(iou.mean()), "pixel_accuracy": 100.0 * float(inter.sum() / c.sum()),
                "iou_per_class": [round(100.0 * float(v), 2) if p else None
                                  for v, p in zip(inter / union.clamp(min=1), present)]}


def _detection_metric():
    from torchmetrics.detection import MeanAveragePrecision
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")


@torch.no_grad()
def evaluate_task(task: str, predict, dataset, limit: int | None = None, progress: bool = False) -> dict:
    """Score ``predict(x) → (prediction dict, bytes sent or None)`` on multi-object scenes, batch 1.

    Detection: torchmetrics' ``MeanAveragePrecision`` (COCO mAP@[.5:.95], mAP@.5). Segmentation:
    mIoU and pixel accuracy from a confusion matrix. Returns the metrics and the byte sizes.
    """
    from . import distributed
    T._check_task(task)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    seg, pairs, sizes = None, [], []
    mine = distributed.shard(n)          # under torchrun: every world-th scene per rank, batch 1, then gathered
    for i in tqdm(mine, desc=f"{task} eval", leave=False, disable=not (progress and distributed.is_main()) or None):
        x, target = dataset[i]
        pred, nbytes = predict(x)
        if nbytes is not None:
            sizes.append(nbytes)
        if task == "detection":
            pairs.append((i, {k: pred[k].cpu() for k in ("boxes", "scores", "labels")},
                          {"boxes": target["boxes"], "labels": target["labels"]}))
        else:
            seg = seg or SegmentationScore(pred["logits"].shape[0])     # one row/column per class of the model
            seg.update(pred["semantic"], target["semantic"])
    parts = distributed.gather((pairs, sizes, seg.confusion if seg else None))
    sizes = [b for p in parts for b in p[1]]
    if task == "detection":
        metric = _detection_metric()   # in scene order, as one process would (COCO's ranking breaks ties by order)
        for _, pred, target in sorted((q for p in parts for q in p[0]), key=lambda q: q[0]):
            metric.update([pred], [target])
        m = metric.compute()
        scores = {"map": 100.0 * float(m["map"]), "map_50": 100.0 * float(m["map_50"])}
    else:
        confusions = [p[2] for p in parts if p[2] is not None]
        seg = SegmentationScore(len(confusions[0]))
        seg.confusion = sum(confusions)
        scores = seg.compute()
    return {**scores, "n": n, "sizes": sizes}


def teacher_predictor(net, fmt: str | None = None, quality: int | None = None):
    """``predict(x)`` for a task teacher on the raw image, or on its JPEG/WebP decoding (real bytes)."""
    from . import codecs
    device = next(net.parameters()).device

    def predict(x):
        nbytes = None
        if fmt is not None:
            data = codecs.encode(x, fmt, quality)
            x, nbytes = codecs.decode(data), len(data)
        return net([x.to(device)])[0], nbytes
    return predict


def student_predictor(net):
    """``predict(x)`` for a task student through the real split: device bytes → :class:`TaskServer`."""
    device_part, server = _device_part(net), T.TaskServer(net)

    def predict(x):
        data = device_part(x.unsqueeze(0).to(device_part.mean.device))
        return server(data), len(data)
    return predict


# ---- the study ------------------------------------------------------------------------------------
def _point(task: str, method: str, knob: str | None, value, res: dict, hw, **extra) -> dict:
    from .evaluate import size_stats
    row = {"task": task, "method": method, "knob": knob, "value": value,
           **{k: res[k] for k in METRICS[task]}, "n": res["n"]}
    if res["sizes"]:
        s = size_stats(res["sizes"], hw)
        row.update(kb_mean=s["kb_mean"], kb_std=s["kb_std"], bpp=s["bpp"])
    return {**row, **extra}


def _recipe(train: dict) -> dict:
    """The settings of a task student's training that a reader of the results needs."""
    keys = ("stage1_epochs", "stage2_epochs", "train_length", "batch_size", "stage1_lr", "max_steps")
    return {**{k: train[k] for k in keys if k in train}, "stage2_lr": train["lr"] / 4}   # stage 2 runs at lr / 4


def _write(out: Path, name: str, obj: dict) -> dict:
    path = out / "points" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, obj)
    return obj


def _done(out: Path, name: str) -> bool:
    return (out / "points" / f"{name}.json").is_file()


def run(tasks=T.TASKS, betas=BETAS, out: str | Path = "runs/tasks", quick: bool = False, progress: bool = True,
        baselines: bool = True, **recipe) -> Path:
    """Train and score everything for ``tasks``; one JSON per point under ``out/points`` (resumable).

    ``recipe`` overrides :class:`TaskTrainConfig` fields (e.g. ``stage2_epochs=4``)."""
    from . import pretrained
    from .models import entropy
    out = Path(out)
    teacher = pretrained.teacher("mini")
    small = dict(max_steps=3, train_length=64, batch_size=8, val_length=20) if quick else {}
    limit = 20 if quick else None
    for task in tasks:
        T._check_task(task)
        base = TaskTrainConfig(task=task, out=str(out), **{**STUDENT_RECIPE[task], **recipe, **small})
        val = val_scenes(base)
        hw = tuple(val[0][0].shape[-2:])
        tpath = out / TEACHER_FILE.format(task=task)
        if tpath.is_file():
            tnet, tmeta = load_task_teacher(tpath, teacher)
        else:
            tic = time.time()
            tnet, tmeta = train_task_teacher(base, teacher, progress)
            tmeta["train_seconds"] = round(time.time() - tic, 1)
            save_task(tpath, tnet, tmeta)
        if not _done(out, f"{task}-teacher"):
            res = evaluate_task(task, teacher_predictor(tnet), val, limit, progress)
            _write(out, f"{task}-teacher", _point(task, "teacher", None, None, res, hw,
                                                  train_seconds=tmeta.get("train_seconds")))
        for fmt, grid in (("jpeg", JPEG_QUALITIES), ("webp", WEBP_QUALITIES)) if baselines else ():
            for q in (grid[:2] if quick else grid):
                if not _done(out, f"{task}-{fmt}-{q}"):
                    res = evaluate_task(task, teacher_predictor(tnet, fmt, q), val, limit, progress)
                    _write(out, f"{task}-{fmt}-{q}", _point(task, fmt, "quality", q, res, hw))
        for beta in betas:
            name = f"{task}-entropic-{beta:g}"
            if _done(out, name):
                continue
            student = pretrained.student("mini", beta=beta)
            spath = out / STUDENT_FILE.format(task=task, beta=beta)
            if spath.is_file():
                snet, smeta = load_task_student(spath, tnet, student)
            else:
                tic = time.time()
                snet, smeta = train_task_student(TaskTrainConfig(**{**asdict(base), "beta": beta}), tnet, student,
                                                 progress)
                smeta["train_seconds"] = round(time.time() - tic, 1)
                save_task(spath, snet, smeta)
            res = evaluate_task(task, student_predictor(snet), val, limit, progress)
            retrained = sum(p.numel() for m in _parts(snet).values() for p in m.parameters())
            _write(out, name, _point(task, "entropic", "beta", beta, res, hw, header_bytes=entropy.HEADER_BYTES,
                                     payload_digest=smeta["payload_digest"],
                                     device_parameters=student.device_parameters(),
                                     retrained_parameters=retrained, train_seconds=smeta.get("train_seconds"),
                                     recipe=_recipe(smeta["train"]), checkpoint=spath.name))
            print(f"{task} β={beta:g}: " + ", ".join(f"{k} {res[k]:.2f}" for k in METRICS[task]))
    return out


def collect(out: str | Path = "runs/tasks", dest: Path | None = None) -> Path:
    """Merge the points into one results JSON (``data/results_tasks_mini.json`` by default)."""
    out = Path(out)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    if not points:
        raise FileNotFoundError(f"no task points under {out / 'points'}: run `minist tasks` first")
    order = {"teacher": 0, "entropic": 1, "jpeg": 2, "webp": 3}
    points.sort(key=lambda p: (p["task"], order.get(p["method"], 9), p["value"] or 0))
    val = val_scenes()
    doc = {"preset": "mini", "val_set": {"n": len(val), "sha256": val.digest(), "scenes": "multi-object "
                                         "Fashion-on-Photos, 1–4 objects, 128×128"},
           "units": {"kb_mean": "KB per image, 1 KB = 1024 B, headers included", "bpp": "bits per input pixel",
                     "map": "COCO mAP@[.5:.95] in % (torchmetrics, pycocotools)", "map_50": "mAP@.5 in %",
                     "miou": "mean IoU in % over the 11 classes (background included)",
                     "pixel_accuracy": "% of pixels"},
           "made_by": "minist tasks && minist tasks --ship", "torch": torch.__version__, "points": points}
    dest = dest or data_dir() / RESULTS_FILE
    return checkpoint.write_json(dest, doc)


def ship(out: str | Path = "runs/tasks") -> list[Path]:
    """Copy the task teachers and students to ``data/`` (atomically) and write the results JSON there."""
    copied = [checkpoint.atomic_copy(p, data_dir() / p.name) for p in sorted(Path(out).glob("task_*_mini_*.pt"))]
    return copied + [collect(out)]


__all__ = ["TaskTrainConfig", "train_task_teacher", "train_task_student", "evaluate_task", "payload_digest",
           "save_task", "load_task_teacher", "load_task_student", "run", "collect", "ship", "BETAS"]
