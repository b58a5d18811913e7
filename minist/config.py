"""Every setting in one place: the models' architectures and the training recipes, each with its presets.

* :class:`TeacherConfig`, :class:`BottleneckConfig`: architectures (stored in every checkpoint).
* :class:`TeacherTrainConfig`, :class:`StudentTrainConfig`, :class:`TaskTrainConfig`, :class:`ImageCodecConfig`:
  recipes. ``preset_config("mini" | "paper", **overrides)`` gives a preset with your changes on top; the command
  line exposes every field as a flag (``minist train-student --help``).

**What β multiplies, everywhere:** the estimated bits of one image, Σ −log2 p(ẑ), added to that image's loss
(stage 1: its distillation error Σ_j w_j ‖S_j − T_j‖²; end-to-end: its cross-entropy). Stage 1 sums the
per-image losses over the batch as the paper does, which scales the whole loss, not the balance β sets.
Larger β → fewer bits. CompressAI's image codecs use λ the other way round (larger λ → more bits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch.utils.data import Subset

from .data import load
from .data.synth import FashionOnPhotos, FashionOnPhotosConfig, cached

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _names(csv: str | None) -> tuple[str, ...]:
    """ "layer2, layer3" → ("layer2", "layer3"); "" or None → ()."""
    return tuple(n.strip() for n in (csv or "").split(",") if n.strip())


def _preset(cls, presets: dict, preset: str, overrides: dict):
    if preset not in presets:
        what = {"TeacherConfig": "teacher", "BottleneckConfig": "bottleneck"}.get(cls.__name__, cls.__name__)
        raise ValueError(f"unknown {what} preset {preset!r}; choose one of {sorted(presets)}")
    return cls(**{**presets[preset], **overrides})


# ---- architectures -------------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    """Architecture of a teacher. ``widths``/``blocks`` are per stage (layer1 … layer4).

    mini: ResNet-18's layout (two BasicBlocks per stage) at a quarter of its widths, 2.80 M parameters and
    296.5 MFLOPs at 128 px, so the mini device encoder costs 0.139 of it, as in the paper (0.14)."""

    preset: str = "mini"
    num_classes: int = 10
    image_size: int = 128
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_width: int = 32
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    @classmethod
    def preset_config(cls, preset: str, **overrides) -> TeacherConfig:
        return _preset(cls, {"mini": {}, "paper": dict(preset="paper", num_classes=1000, image_size=224,
                                                      widths=(256, 512, 1024, 2048), blocks=(3, 4, 6, 3),
                                                      stem_width=64)}, preset, overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TeacherConfig:
        return cls(**{k: tuple(v) if k in ("widths", "blocks", "mean", "std") else v for k, v in d.items()})


@dataclass
class BottleneckConfig:
    """``channels`` = C (latent channels), ``target_channels`` = T (the teacher's layer1 width); the hidden widths
    of encoder and decoder (None: the paper's 4C, 2C and 2T, T) and whether the convolutions have biases.
    The defaults are the paper's (a checkpoint's stored config may predate a field). The mini preset's
    encoder is lighter than 4C, 2C (24, 16: 41.1 MFLOPs, 0.139 of the mini teacher) and has biases."""

    channels: int = 12
    target_channels: int = 32
    encoder_widths: tuple[int, ...] | None = None
    decoder_widths: tuple[int, ...] | None = None
    bias: bool = False

    @classmethod
    def preset_config(cls, preset: str, **overrides) -> BottleneckConfig:
        return _preset(cls, {"mini": dict(channels=12, target_channels=32, encoder_widths=(24, 16), bias=True),
                             "paper": dict(channels=24, target_channels=256)}, preset, overrides)

    @classmethod
    def from_dict(cls, d: dict) -> BottleneckConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict:
        return asdict(self)


# ---- recipes ---------------------------------------------------------------------------------------------------
@dataclass
class TeacherTrainConfig:
    """How the mini teacher is trained: SGD + Nesterov, warm-up + cosine, label smoothing. The shipped teacher
    is this run (20 epochs) and two more cosine cycles on fresh images (``init``, ``epoch_offset``; data/README.md)."""

    preset: str = "mini"
    blocks: tuple[int, ...] | None = None   # BasicBlocks per stage; None: the preset's (TeacherConfig)
    epochs: int = 20
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
    init: str | None = None         # fine-tune from this teacher checkpoint (its layout wins over ``blocks``)
    epoch_offset: int = 0           # first training-stream epoch: a continuation sees images it has not seen
    amp: bool | None = None         # bf16 autocast, weights fp32; None: where it is fast (utils.fast_bf16)
    mixup: float = 0.0              # > 0: half the batches are mixed, MixUp(α = mixup) or CutMix(α = 1)
                                    # (torchvision.transforms.v2); the real-photo teacher's regulariser

    def data_config(self) -> FashionOnPhotosConfig:
        return FashionOnPhotosConfig(size=self.image_size, seed=self.data_seed,
                                     train_length=self.train_length, val_length=self.val_length)


@dataclass
class StudentTrainConfig:
    """The two-stage recipe of docs/design.md §3, with epochs scaled for the mini setting.

    The mini recipe's deviations from the paper, each measured in data/README.md's ablation table: stage 1
    distils ``layer2`` … ``layer4`` only (not ``layer1``), runs 8 epochs with one ×0.1 drop at 75 %, and
    stage 2 fine-tunes the decoder alone (the tail stays the teacher's, so a shipped student stores no copy).

    The paper trains stage 1 for ~200k steps; the mini budget is ~750. In that budget the prior's
    density, which starts wide (CompressAI's ``init_scale=10``), tightens too slowly at lr 1e-3 and
    the rate term barely moves; the prior therefore gets its own, larger learning rate here.
    """

    preset: str = "mini"
    beta: float = 0.005              # the price of one bit of one image (module docstring): larger β → fewer bits
    channels: int | None = None      # C, latent channels; None: the preset's (BottleneckConfig)
    encoder_widths: tuple[int, ...] | None = (24, 16)   # the device encoder's hidden widths (mini: 0.139 of the
                                                        # teacher's FLOPs); None: the preset's (paper: 4C, 2C)
    decoder_widths: tuple[int, ...] | None = None       # the server decoder's hidden widths; None: the preset's
                                                        # (2T, T); wider: the ceiling study's decoder arm
    distill_weights: tuple[float, ...] = (0.0, 1.0, 1.0, 1.0)   # w_j of layer1 … layer4 in stage 1 (paper: 1 each;
                                                                # mini: layer2 … 4, data/README.md's ablation)
    saliency_floor: float | None = None   # task-aware stage 1: weight each position's error by the teacher's
                                          # Grad-CAM (losses.saliency_weights), background down to this floor;
                                          # None: every position the same (the paper)
    stage1_epochs: int = 8
    stage1_batch_size: int = 64
    stage1_lr: float = 2e-3          # Adam (paper: 1e-3)
    stage1_milestones: tuple[float, ...] = (0.75,)      # ×0.1 at these fractions (paper: epochs 5 and 8 of 10)
    prior_lr: float = 2e-2           # the prior's density parameters (paper: same as stage1_lr; see above)
    aux_lr: float = 2e-2             # the prior's quantile (auxiliary) loss, stepped every iteration
    stage2_epochs: int = 2
    stage2_batch_size: int = 128
    stage2_lr: float = 1e-3          # SGD, momentum 0.9, weight decay 5e-4
    stage2_milestones: tuple[float, ...] = (0.5,)       # ×0.1 at these fractions (paper: epoch 5 of 10)
    stage2_tail: bool = False        # True: stage 2 also fine-tunes layer2 … head (paper); mini: the decoder only
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
    method: str = "entropic"         # "entropic", "variable-rate" (one student for every β of a grid), or the
                                     # baselines "crbq" (CR+BQ) and "end-to-end" (Singh et al.)
    mixup: float = 0.0               # stage 1: > 0 mixes each batch, x = λ x + (1 − λ) x[perm], λ ~ Beta(mixup, mixup);
                                     # teacher and student see the same mixed view (Beyer et al.'s "consistent")
    straight_through: bool = False   # stage 1: the decoder reads the rounded latent, its gradient straight through
                                     # the rounding; the rate keeps the noise (Minnen & Singh 2020, "mixed")
    rate_warmup_steps: int = 0       # stage 1: the rate term's weight rises linearly from 0 over these steps
                                     # (0: none, the shipped recipes')
    rate_grid: tuple[float, ...] | None = None   # variable-rate: (β_min, doublings, steps per doubling) of its
                                                 # grid (models.codec.BetaGrid); None: 0.005 … 0.64, 32 steps
    init_from: str | None = None     # warm start: encoder, prior and decoder of this student checkpoint
    eval_stage1: bool = False        # also score the whole val set after stage 1 (the stage-1-only ablation)
    stage1_warmup_steps: int = 0     # linear lr warm-up (for warm starts: Adam's first steps are large)
    amp: bool | None = None          # bf16 autocast for teacher, decoder and tail (encoder and prior stay fp32);
                                     # None: where it is fast (utils.fast_bf16: CUDA, or a CPU with AMX/AVX-512 bf16)
    data_root: str | None = None     # the paper preset: an ImageNet folder (train/ and val/)

    def data_config(self) -> FashionOnPhotosConfig:
        return FashionOnPhotosConfig(size=self.image_size, seed=self.data_seed,
                                     train_length=self.train_length, val_length=self.val_length)

    @classmethod
    def preset_config(cls, preset: str = "mini", **overrides) -> StudentTrainConfig:
        """The mini recipe, or the paper's (docs/design.md §3: ResNet-50 teacher, C = 24, 224 px ImageNet, stage 1
        10 epochs of Adam 1e-3 ×0.1 at epochs 5 and 8, batch 64; stage 2 10 epochs of SGD 1e-3 ×0.1 at epoch 5,
        batch 128). ``batch_size`` is global: ``torchrun`` splits it over the processes."""
        return _preset(cls, {"mini": {}, "paper": dict(
            preset="paper", encoder_widths=None, distill_weights=(1.0, 1.0, 1.0, 1.0), stage1_epochs=10,
            stage1_batch_size=64, stage1_lr=1e-3, stage1_milestones=(0.5, 0.8), prior_lr=1e-3, aux_lr=1e-3,
            stage2_epochs=10, stage2_tail=True, stage2_batch_size=128, stage2_lr=1e-3, stage2_milestones=(0.5,),
            image_size=224, val_length=50_000, eval_length=1_000, workers=8, amp=True,
            out="runs/student-paper")}, preset, overrides)

    def bottleneck(self, target_channels: int) -> BottleneckConfig:
        over = {} if self.channels is None else {"channels": self.channels}
        if self.encoder_widths is not None:
            over["encoder_widths"] = tuple(self.encoder_widths)
        if self.decoder_widths is not None:
            over["decoder_widths"] = tuple(self.decoder_widths)
        return BottleneckConfig.preset_config(self.preset, target_channels=target_channels, **over)

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
            self.check_data()
            return (load("imagenet", split="train", root=self.data_root, size=self.image_size),
                    load("imagenet", split="val", root=self.data_root, size=self.image_size))
        dcfg = self.data_config()
        return FashionOnPhotos("train", "classification", dcfg), cached("val", "classification", **asdict(dcfg))


@dataclass
class TaskTrainConfig:
    """Task training on multi-object Fashion-on-Photos (teacher: ``epochs``; student: stage 1 + stage 2)."""

    task: str = "detection"
    num_classes: int = 11            # 0 = background + the 10 Fashion-MNIST classes
    beta: float | None = None        # None: the task teacher; else the shipped classification student's β
    # task teacher (FPN + head): the students continue from it, so a short teacher flatters every student ÷ teacher
    # ratio: 5 → 21 epochs gave 53.2 → 62.7 mAP and 49.3 → 52.8 mIoU on the 500 val scenes
    epochs: int = 21
    # task teacher: backbone stages it trains too, comma-separated ("" or None: none, the classification teacher's
    # stay frozen). A student whose stage 2 tunes stages its teacher kept frozen is compared with a weaker network
    # than itself, and the variable-rate task students tune layer2 … layer4 (task_study.VARIABLE_RECIPE): so do the
    # teachers. On the 500 val scenes 71.54 mAP and 63.78 mIoU, against 62.72 and 52.8 frozen
    teacher_tune: str | None = "layer2,layer3,layer4"
    stage1_epochs: int = 1           # task student: feature distillation of the decoder
    stage2_epochs: int = 2           # task student: task loss on decoder + FPN + head
    # task student: + γ × the FPN levels' error to the task teacher's in stage 2 (None: the task loss alone; None,
    # not 0, so the checkpoints of runs made before the option resume: a recipe drops its None fields)
    stage2_distill: float | None = None
    # task student: backbone stages stage 2 also trains, comma-separated ("layer2,layer3,layer4"; None: none, the
    # task teacher's stay frozen). The paper retrains the whole task network after the decoder
    stage2_tune: str | None = None
    # task student: residual 3×3 blocks after the decoder, on the server (the bitstream is unchanged; None: none,
    # so older runs resume)
    refine_blocks: int | None = None
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

    def tuned(self) -> tuple[str, ...]:
        """:attr:`stage2_tune` as stage names ("" or None: none)."""
        return _names(self.stage2_tune)

    def teacher_tuned(self) -> tuple[str, ...]:
        """:attr:`teacher_tune` as stage names ("" or None: none)."""
        return _names(self.teacher_tune)

    @classmethod
    def preset_config(cls, preset: str = "mini", **overrides) -> TaskTrainConfig:
        """mini: Fashion-on-Photos scenes. paper: torchvision's Faster R-CNN R50-FPN on COCO 2017 (91 labels) or
        DeepLabv3-R50 on PASCAL VOC 2012 (21 labels), 512-px images. docs/design.md gives no task recipe; these are
        starting points (global batch 16, AdamW), not the paper's values."""
        cfg = _preset(cls, {"mini": {}, "paper": dict(
            preset="paper", image_size=512, epochs=0, teacher_tune=None, stage1_epochs=2, stage2_epochs=6,
            batch_size=16, lr=1e-4, stage1_lr=1e-4, workers=8, out="runs/tasks-paper")}, preset, overrides)
        if preset == "paper" and "num_classes" not in overrides:
            cfg.num_classes = 91 if cfg.task == "detection" else 21
        return cfg

    def val_scenes(self):
        """The cached multi-object val scenes every task point is scored on (mini)."""
        return cached("val", "detection", **asdict(self.data_config()))

    def datasets(self):
        """(train, val) of the task: Fashion-on-Photos scenes (mini), COCO 2017 or VOC 2012 (paper)."""
        if self.preset != "paper":
            return FashionOnPhotos("train", "detection", self.data_config()), self.val_scenes()
        if not self.data_root:
            raise ValueError(f"the paper preset's {self.task} needs data_root=<folder> (--data-root): COCO 2017 for "
                             "detection, the parent of VOCdevkit/ for segmentation (see docs/paper_scale.md)")
        if self.task == "detection":
            return tuple(load("coco", split=s, root=self.data_root, size=self.image_size) for s in ("train", "val"))
        return tuple(load("voc", split=s, task="segmentation", year="2012", root=self.data_root,
                          size=self.image_size) for s in ("train", "val"))


@dataclass
class ImageCodecConfig:
    """A learned image codec (input-compression baseline) trained with CompressAI's R + λ·255²·MSE."""

    arch: str = "factorized"        # "factorized" (Ballé 2018) or "hyperprior" (Minnen 2018, mean-scale)
    N: int = 64
    M: int = 96
    lmbda: float = 0.013            # CompressAI's λ: larger → more bits
    epochs: int = 2
    batch_size: int = 16
    crop: int = 64
    lr: float = 1e-3
    aux_lr: float = 1e-3
    train_length: int = 6000
    image_size: int = 128
    data_seed: int = 0
    seed: int = 0
    init_from: str | None = None    # warm start from another λ's checkpoint (same arch, N, M)
    max_steps: int | None = None
    device: str | None = None
    out: str = "runs/codec"


def mini_val_set(limit: int | None = None):
    """The cached Fashion-on-Photos val set every mini result is scored on (docs/design.md §4), or its first
    ``limit``."""
    val = cached("val", "classification", **asdict(StudentTrainConfig().data_config()))
    return val if limit is None else Subset(val, range(min(limit, len(val))))


def mini_test_set(limit: int | None = None):
    """The cached Fashion-on-Photos test split (10,000 images, for reporting: no choice sees it;
    :mod:`minist.experiments.test_study`), or its first ``limit``."""
    test = cached("test", "classification", **asdict(StudentTrainConfig().data_config()))
    return test if limit is None else Subset(test, range(min(limit, len(test))))
