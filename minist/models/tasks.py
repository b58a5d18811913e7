"""Detection and segmentation on the teacher's backbone, and on the student's shared bitstream.

The paper's multi-task claim (docs/design.md §2): the encoder and prior trained for
classification at a β are **frozen and shared**; per task, only the server side
(decoder + task network) is retrained. One bitstream then serves every task::

    device:  x ─ encoder ─ rANS ─▶ bytes            (the classification student's, unchanged)
    server:  bytes ─ rANS⁻¹ ─ decoder ─ layer2…4 ─ FPN ─┬─ FCOS head  → boxes
                                                        └─ FCN head   → semantic mask

Both task networks use torchvision's components on a feature pyramid
(``torchvision.ops.FeaturePyramidNetwork``) over ``layer1`` … ``layer4``
(strides 4, 8, 16, 32), as docs/design.md §2 says for FPN models: the decoder's output
feeds the first pyramid level, ``layer2`` … ``layer4`` the others.

* Detection: torchvision's **FCOS** (Tian et al. 2019). Anchor-free, one stage,
  no RoI sampling: the cheapest of torchvision's detectors to train on a CPU, and
  it suits 128-px images whose objects are 28–58 px (levels at strides 4 and 8
  take almost all of them). The head is 64 channels wide (torchvision's default
  is 256, for 800-px COCO images).
* Segmentation: an **FCN head** (torchvision's layout: 3×3 conv, BN, ReLU,
  dropout, 1×1 conv) on the stride-4 pyramid level, upsampled ×4. Its hidden
  width is the FPN's (64), not torchvision's in/4 (16), which held the first
  mini segmenter at 31.4 mIoU. DeepLabv3's atrous trick needs a dilated ResNet, which
  torchvision's BasicBlock (the mini teacher's block) does not support; the FPN's
  top-down path brings ``layer4``'s context to stride 4 instead.

For the mini preset the backbone (``stem`` … ``layer4``) starts as the shipped
classification teacher's; the task teacher retrains ``layer2`` … ``layer4`` with
its FPN and head (``TaskTrainConfig.teacher_tune``; ``stem`` and ``layer1``, the
device's side of the split, stay frozen). A per-β task student keeps those stages
as its teacher left them and trains decoder + FPN + head (≈0.2–0.4 M parameters);
the variable-rate ones retrain the stages too (``stage2_tune``, ≈3 M).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops import FeaturePyramidNetwork

from ..config import IMAGENET_MEAN, IMAGENET_STD
from .halves import analysis
from .teacher import Teacher, check_images

TASKS = ("detection", "segmentation")
LEVELS = ("layer1", "layer2", "layer3", "layer4")
STRIDES = (4, 8, 16, 32)
FPN_CHANNELS = 64


class TeacherFront(nn.Module):
    """The teacher's device-side half: image in [0, 1] → ``layer1`` (normalises inside)."""

    def __init__(self, stem: nn.Module, layer1: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.stem, self.layer1 = stem, layer1

    @classmethod
    def of(cls, teacher: Teacher) -> TeacherFront:
        return cls(copy.deepcopy(teacher.stem), copy.deepcopy(teacher.layer1), teacher.config.mean,
                   teacher.config.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return self.layer1(self.stem((x - self.mean) / self.std))


class RefineBlock(nn.Module):
    """A residual 3×3 block on the decoded ``layer1`` features: ``h + BN(conv(ReLU(BN(conv(h)))))``.

    The classification student's decoder is three 2×2 convolutions: each decoded feature sees a 4×4 patch of the
    latent. A task whose first pyramid level is the decoder's output (detection's stride-4 boxes) may want more
    context there; these blocks give it on the server, the bitstream unchanged. The last BatchNorm's scale starts
    at 0, so a new block is the identity and training starts from the decoder as it was.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class StudentFront(nn.Module):
    """The student's front: image → encoder → round (as the bytes carry it) → decoder (→ ``refine``) ≈ ``layer1``.

    ``encoder`` and ``codec`` are the classification student's *own* modules
    (shared, frozen, always in eval mode); the decoder is this task's, and so are the ``refine`` residual blocks
    after it (:class:`RefineBlock`; none by default).
    """

    def __init__(self, student, refine: int = 0):
        super().__init__()
        if not (isinstance(refine, int) and refine >= 0):
            raise ValueError(f"refine is a number of residual blocks after the decoder (0, 1, 2, …), not {refine!r}")
        self.register_buffer("mean", student.mean.clone(), persistent=False)
        self.register_buffer("std", student.std.clone(), persistent=False)
        self.encoder, self.codec = student.encoder, student.codec
        self.decoder = copy.deepcopy(student.decoder)
        self.refine = nn.Sequential(*(RefineBlock(student.config.target_channels) for _ in range(refine)))
        self.encoder.requires_grad_(False)
        self.codec.requires_grad_(False)

    def server_side(self) -> list[nn.Module]:
        """The front's modules that run on the server and that task training updates: decoder (+ refine)."""
        return [self.decoder] + ([self.refine] if len(self.refine) else [])

    def decode(self, z_hat: torch.Tensor) -> torch.Tensor:
        """ẑ (what the bytes carry) → features in place of the teacher's ``layer1``."""
        return self.refine(self.decoder(z_hat))

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        self.codec.eval()
        return self

    def latent(self, x: torch.Tensor, beta=None) -> torch.Tensor:
        """ẑ at rate ``beta`` (a float on the codec's grid, or a grid index per image; None: its lowest β): what the
        server gets after rANS decoding (round around the medians)."""
        check_images(x)
        with torch.no_grad():
            return self.codec(analysis(self.encoder, self.mean, self.std, x), training=False, beta=beta)[0]

    @torch.no_grad()
    def rate_free(self, x: torch.Tensor, beta=None) -> torch.Tensor:
        """The same weights with bytes free: the decoder (+ ``refine``) on the latent as the codec would hand it over
        if it were sent exactly (``codec.unrounded``), as :func:`minist.evaluate.rate_free_accuracy` does for the
        classifier. A diagnosis, not a bitstream: what rounding to the rate's bytes costs this task."""
        check_images(x)
        return self.decode(self.codec.unrounded(analysis(self.encoder, self.mean, self.std, x), beta=beta))

    def forward(self, x: torch.Tensor, beta=None) -> torch.Tensor:
        """In training each image draws its rate from the codec's grid (a one-rate student's grid has one), so a
        variable-rate student's task decoder learns every β the bitstream can carry."""
        if beta is None and self.training:
            beta = self.codec.grid.sample(x.shape[0]).to(x.device)
        return self.decode(self.latent(x, beta))


class Pyramid(nn.Module):
    """front → ``layer1`` … ``layer4`` → FPN (or none); the ``backbone`` torchvision's task models expect.

    Its outputs are named ``"0"`` … ``"3"`` (stride 4 … 32), as torchvision's FPN backbones name them.
    """

    def __init__(self, front: nn.Module, layers: dict, fpn: nn.Module | None, out_channels: int):
        super().__init__()
        self.front = front
        for name in LEVELS[1:]:
            setattr(self, name, layers[name])
        self.fpn, self.out_channels = fpn, out_channels

    @classmethod
    def of(cls, front: nn.Module, teacher: Teacher, out_channels: int = FPN_CHANNELS) -> Pyramid:
        """The mini layout: the teacher's ``layer2`` … ``layer4`` (copies) and a new FPN over all four levels."""
        fpn = FeaturePyramidNetwork([_width(getattr(teacher, n)) for n in LEVELS], out_channels)
        return cls(front, {n: copy.deepcopy(getattr(teacher, n)) for n in LEVELS[1:]}, fpn, out_channels)

    def stages(self, h: torch.Tensor) -> OrderedDict:
        """``layer1`` output → ``{layer1 … layer4}``."""
        out = OrderedDict(layer1=h)
        for name in LEVELS[1:]:
            h = getattr(self, name)(h)
            out[name] = h
        return out

    def features(self, x: torch.Tensor) -> OrderedDict:
        return self.stages(self.front(x))

    def from_layer1(self, h: torch.Tensor) -> OrderedDict:
        levels = OrderedDict((str(i), v) for i, v in enumerate(self.stages(h).values()))
        return self.fpn(levels) if self.fpn is not None else levels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.from_layer1(self.front(x))


def _width(layer: nn.Sequential) -> int:
    """Output channels of a ResNet stage."""
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class TaskNet(nn.Module):
    """A task network on a :class:`Pyramid`: ``forward(images, targets)`` → losses (train) or predictions (eval).

    Predictions are one dict per image: detection ``{"boxes", "scores", "labels"}`` (torchvision's format),
    segmentation ``{"semantic": (H, W) int64, "logits": (C, H, W)}``.
    """

    task: str = ""

    def __init__(self, backbone: Pyramid, num_classes: int):
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.tuned: tuple[str, ...] = ()     # backbone stages (of layer2 … layer4) task training updates too
        self.teacher_tuned: tuple[str, ...] = ()   # a task student's: the stages its task teacher had tuned

    def forward(self, images, targets=None):
        images = torch.stack(list(images)) if isinstance(images, (list, tuple)) else images
        return self.from_layer1(self.backbone.front(images), tuple(images.shape[-2:]), targets)

    def from_layer1(self, h: torch.Tensor, image_size: tuple[int, int], targets=None):
        """Everything after ``layer1``: what the server runs on the decoder's output."""
        raise NotImplementedError

    def tune(self, stages) -> TaskNet:
        """Task training updates these backbone stages too (names of ``layer2`` … ``layer4``, any order; () none);
        the other stages are frozen."""
        self.tuned = _check_stages(stages)
        for n in LEVELS[1:]:
            getattr(self.backbone, n).requires_grad_(n in self.tuned)
        return self

    def trainable(self) -> list[nn.Module]:
        """What task training updates: the :attr:`tuned` backbone stages (none by default), FPN and head."""
        return [getattr(self.backbone, n) for n in self.tuned] + [m for m in (self.backbone.fpn, self.head)
                                                                    if m is not None]

    def train(self, mode: bool = True):
        super().train(mode)
        for name in ("front",) + LEVELS[1:]:   # frozen parts keep their BatchNorm statistics
            m = getattr(self.backbone, name)
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
        if isinstance(self.backbone.front, StudentFront):
            self.backbone.front.train(mode)
        return self


class Detector(TaskNet):
    """A torchvision detector (FCOS, or Faster R-CNN for the paper preset) on the pyramid.

    Classes: 0 = background, 1 … = the dataset's classes. Images keep their size: the detector's transform
    only batches them (``min_size = max_size`` = the image size, mean 0, std 1: the front normalises).
    """

    task = "detection"

    def __init__(self, backbone: Pyramid, num_classes: int = 11, image_size: int = 128,
                 score_thresh: float = 0.05, detections_per_img: int = 50, head_convs: int = 2, model=None):
        super().__init__(backbone, num_classes)
        if model is None:
            # one anchor point per location, its size = the level's stride (FCOS's regression ranges follow it)
            anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))
            model = FCOS(backbone, num_classes, min_size=image_size, max_size=image_size,
                         image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], anchor_generator=anchors,
                         head=FCOSHead(backbone.out_channels, 1, num_classes, num_convs=head_convs),
                         score_thresh=score_thresh, detections_per_img=detections_per_img)
        self.model = model
        self.head = (model.head if isinstance(model, FCOS)
                     else nn.ModuleDict({"rpn": model.rpn, "roi_heads": model.roi_heads}))

    def forward(self, images, targets=None):
        images = list(images) if not isinstance(images, (list, tuple)) else images
        for x in images:
            check_images(x.unsqueeze(0))
        if targets is not None:   # boxes and labels only (the transform would resize masks too)
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        return self.model(images, targets)

    def from_layer1(self, h: torch.Tensor, image_size: tuple[int, int], targets=None):
        """The detector's eval path on features that came from bytes (no transform: the size is kept)."""
        if targets is not None:
            raise ValueError("from_layer1 runs inference; train through forward(images, targets)")
        sizes = [tuple(image_size)] * h.shape[0]
        images = ImageList(h.new_empty((h.shape[0], 3, *image_size)), sizes)
        features = self.backbone.from_layer1(h)
        if not isinstance(self.model, FCOS):          # two stages: proposals, then RoI heads
            proposals, _ = self.model.rpn(images, features)
            return self.model.roi_heads(features, proposals, sizes)[0]
        feats = list(features.values())
        head = self.model.head(feats)
        anchors = self.model.anchor_generator(images, feats)
        per_level = [f.size(2) * f.size(3) for f in feats]
        split_head = {k: list(v.split(per_level, dim=1)) for k, v in head.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return self.model.postprocess_detections(split_head, split_anchors, sizes)


def fcn_head(in_channels: int, num_classes: int, hidden: int | None = None) -> FCNHead:
    """torchvision's ``FCNHead`` (3×3 conv → BN → ReLU → dropout 0.1 → 1×1 conv) with ``hidden`` channels
    (default: ``in_channels``; torchvision's own is ``in_channels // 4``)."""
    head = FCNHead(in_channels, num_classes)
    hidden = hidden or in_channels
    head[0] = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
    head[1] = nn.BatchNorm2d(hidden)
    head[4] = nn.Conv2d(hidden, num_classes, 1)
    return head


class Segmenter(TaskNet):
    """A segmentation head upsampled to the image (class 0 = background; 255 = "void", not scored).

    mini: an FCN head as wide as the FPN on its stride-4 level (:func:`fcn_head`). paper: DeepLabv3's head on
    ``layer4``.
    """

    task = "segmentation"

    def __init__(self, backbone: Pyramid, num_classes: int = 11, head: nn.Module | None = None):
        super().__init__(backbone, num_classes)
        self.head = head if head is not None else fcn_head(backbone.out_channels, num_classes)

    def logits(self, h: torch.Tensor, image_size) -> torch.Tensor:
        levels = self.backbone.from_layer1(h)
        p = levels["0"] if self.backbone.fpn is not None else levels["3"]
        return F.interpolate(self.head(p), size=tuple(image_size), mode="bilinear", align_corners=False)

    def from_layer1(self, h: torch.Tensor, image_size: tuple[int, int], targets=None):
        logits = self.logits(h, image_size)
        if targets is not None:       # training: pixel-wise cross-entropy on the semantic map
            sem = torch.stack([t["semantic"] for t in targets]).to(logits.device)
            return {"loss_ce": F.cross_entropy(logits, sem, ignore_index=255)}   # 255: VOC's "void"
        return [{"semantic": lg.argmax(0), "logits": lg} for lg in logits]


def build_task_teacher(task: str, teacher: Teacher, num_classes: int = 11, image_size: int | None = None) -> TaskNet:
    """The mini task teacher: the classification teacher's backbone (frozen) + FPN + the task head."""
    _check_task(task)
    backbone = Pyramid.of(TeacherFront.of(teacher), teacher)
    for m in [backbone.front] + [getattr(backbone, n) for n in LEVELS[1:]]:
        m.requires_grad_(False)
    net = (Detector(backbone, num_classes, image_size or teacher.config.image_size) if task == "detection"
           else Segmenter(backbone, num_classes))
    return net.train(False)


def build_paper_task_teacher(task: str, image_size: int = 512, weights: bool = True) -> TaskNet:
    """The paper's task teachers from torchvision (docs/design.md §2; SC2's choice): Faster R-CNN R50-FPN trained on
    COCO 2017 (91 labels) and DeepLabv3-R50 with the 21 PASCAL VOC labels. ``weights=False`` builds them
    untrained (offline, for tests); with ``weights=True`` torchvision downloads them once.

    The ResNet-50 body is split into the stages the student replaces (``stem`` + ``layer1`` → the front)
    and keeps (``layer2`` … ``layer4``); the FPN and heads are torchvision's own.
    """
    from torchvision.models import detection, segmentation
    _check_task(task)
    try:
        if task == "detection":
            w = detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1 if weights else None
            model = detection.fasterrcnn_resnet50_fpn(weights=w, weights_backbone=None, num_classes=91,
                                                      min_size=image_size, max_size=image_size,
                                                      image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
            body, fpn, width = model.backbone.body, model.backbone.fpn, model.backbone.out_channels
        else:
            w = segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1 if weights else None
            model = segmentation.deeplabv3_resnet50(weights=w, weights_backbone=None, num_classes=21, aux_loss=None)
            body, fpn, width = model.backbone, None, 2048
    except Exception as e:
        if not weights:
            raise
        raise ConnectionError(f"could not get torchvision's {task} weights ({e}); they download once into "
                              "$TORCH_HOME with internet (see docs/paper_scale.md)") from e
    stem = nn.Sequential(OrderedDict(conv1=body.conv1, bn1=body.bn1, relu=body.relu, maxpool=body.maxpool))
    backbone = Pyramid(TeacherFront(stem, body.layer1), {n: getattr(body, n) for n in LEVELS[1:]}, fpn, width)
    for m in [backbone.front] + [getattr(backbone, n) for n in LEVELS[1:]]:
        m.requires_grad_(False)
    if task == "detection":
        model.backbone = backbone
        net = Detector(backbone, 91, image_size, model=model)
    else:
        net = Segmenter(backbone, 21, head=model.classifier)
    return net.train(False)


def build_task_student(task_teacher: TaskNet, student, tuned: tuple[str, ...] = (), refine: int = 0) -> TaskNet:
    """A task student: the classification ``student``'s encoder + prior (shared, frozen), a decoder (trainable,
    starting from the student's) and ``refine`` residual blocks after it (:class:`RefineBlock`, trainable), the task
    teacher's ``layer2`` … ``layer4`` (frozen, but for the ``tuned`` ones: the paper retrains "the task network after
    the decoder"), FPN and head (trainable, starting from the task teacher's)."""
    _check_stages(tuned)
    if not student.codec.ready():
        raise RuntimeError("the classification student must have its coding tables (student.update())")
    width = task_teacher.backbone.layer2[0].conv1.in_channels
    if student.config.target_channels != width:
        raise ValueError(f"the student's decoder outputs {student.config.target_channels} channels, the task "
                         f"teacher's layer2 takes {width}: use a student of the same preset")
    net = copy.deepcopy(task_teacher)
    net.backbone.front = StudentFront(student, refine)
    net.tune(tuned)          # the teacher's own tuned stages are copied as trained, and frozen unless named again
    net.teacher_tuned = task_teacher.tuned     # those it does not tune again, it needs as that teacher left them
    return net.train(False)


def _check_stages(stages) -> tuple[str, ...]:
    """Backbone stage names that task training may tune, in the backbone's order."""
    bad = [n for n in stages if n not in LEVELS[1:]]
    if bad or len(set(stages)) != len(stages):
        raise ValueError(f"tuned backbone stages must be distinct names of {LEVELS[1:]}, not {tuple(stages)}")
    return tuple(n for n in LEVELS[1:] if n in stages)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


class TaskServer(nn.Module):
    """The server of one task: bytes → predictions for one image. Bad bytes raise ``PayloadError``."""

    def __init__(self, net: TaskNet):
        super().__init__()
        front = net.backbone.front
        if not isinstance(front, StudentFront):
            raise TypeError("TaskServer needs a task student (its front is the shared encoder + prior)")
        self.net, self.codec, self.front = net, front.codec, front
        self.eval()

    @torch.no_grad()
    def forward(self, data: bytes) -> dict:
        z_hat = self.codec.decode(data)
        h = self.front.decode(z_hat)
        size = (4 * (z_hat.shape[-2] + 1), 4 * (z_hat.shape[-1] + 1))
        return self.net.from_layer1(h, size)[0]
