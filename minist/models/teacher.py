"""The teacher: a ResNet with named stages, so the student can take its tail.

Both presets expose the same stages, ``stem`` (stride 4) → ``layer1`` … ``layer4``
→ ``head`` (global average pool + fc), and :meth:`Teacher.features` returns the
outputs of any of them: distillation reads ``layer1`` … ``layer4``, and the
student (docs/design.md §2) replaces ``stem`` + ``layer1`` with its bottleneck.

* ``paper``: torchvision ResNet-50 (He et al. 2016), 224×224 ImageNet images.
* ``mini``: the same layout with one BasicBlock per stage and widths
  32-64-128-256, sized to train on a laptop CPU on 128×128 Fashion-on-Photos.

Models take images in [0, 1] and normalise inside, so codecs, teacher and
student all see the same pixels.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..config import TeacherConfig

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "head")


def _layer(inplanes: int, planes: int, blocks: int, stride: int, block=BasicBlock) -> nn.Sequential:
    """A ResNet stage, as torchvision's ``ResNet._make_layer`` builds it."""
    out = planes * block.expansion
    down = None
    if stride != 1 or inplanes != out:
        down = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, down)]
    layers += [block(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Teacher(nn.Module):
    """A ResNet as named stages; ``forward`` maps images in [0, 1] to logits."""

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        if config.preset == "paper":
            from torchvision.models import resnet50
            r = resnet50(weights=None, num_classes=config.num_classes)
            self.stem = nn.Sequential(OrderedDict(conv1=r.conv1, bn1=r.bn1, relu=r.relu, maxpool=r.maxpool))
            self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
            self.head = nn.Sequential(OrderedDict(avgpool=r.avgpool, flatten=nn.Flatten(1), fc=r.fc))
            return
        w, s = config.widths, config.stem_width
        self.stem = nn.Sequential(OrderedDict(   # stride 4, like ResNet-50's conv1 + maxpool
            conv1=nn.Conv2d(3, s, 5, stride=2, padding=2, bias=False), bn1=nn.BatchNorm2d(s),
            relu=nn.ReLU(inplace=True), maxpool=nn.MaxPool2d(3, stride=2, padding=1)))
        self.layer1 = _layer(s, w[0], config.blocks[0], 1)
        self.layer2 = _layer(w[0], w[1], config.blocks[1], 2)
        self.layer3 = _layer(w[1], w[2], config.blocks[2], 2)
        self.layer4 = _layer(w[2], w[3], config.blocks[3], 2)
        self.head = nn.Sequential(OrderedDict(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),
                                              fc=nn.Linear(w[3], config.num_classes)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():   # zero-init the last BN of each block (Goyal et al. 2017)
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_((m.bn2 if isinstance(m, BasicBlock) else m.bn3).weight)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = as_images(x)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor, names=("layer1", "layer2", "layer3", "layer4", "head")) -> dict:
        """Outputs of the named stages for images ``x`` (B, 3, H, W) in [0, 1]."""
        unknown = set(names) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
        out, h = {}, self.normalize(x)
        last = max(STAGES.index(n) for n in names)
        for name in STAGES[: last + 1]:
            h = getattr(self, name)(h)
            if name in names:
                out[name] = h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x, ("head",))["head"]   # (B, num_classes)


MAX_SIDE = 4096   # larger images are refused, not silently allowed to exhaust memory: resize them first
_SLACK = 1e-3     # resampling may overshoot [0, 1] by rounding; a mistaken scale is far outside


def check_images(x: torch.Tensor) -> None:
    """Raise a clear error unless ``x`` is a float batch (B, 3, H, W) of finite images in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}; "
                         "add a batch dimension with x.unsqueeze(0)")
    if not x.is_floating_point():
        raise TypeError(f"expected float images in [0, 1], got dtype {x.dtype}; use x.float() / 255 "
                        "(or minist.models.teacher.as_images(x), which converts uint8)")
    if x.shape[-1] < 32 or x.shape[-2] < 32:
        raise ValueError(f"images must be at least 32×32 (the teacher downsamples by 32), got {tuple(x.shape[-2:])}")
    if max(x.shape[-2:]) > MAX_SIDE:
        raise ValueError(f"images must be at most {MAX_SIDE} px a side, got {tuple(x.shape[-2:])}: resize them first")
    if x.numel() == 0:
        raise ValueError("empty batch of images")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (lo >= -_SLACK and hi <= 1 + _SLACK):    # also False for NaN
        if not torch.isfinite(x).all():
            raise ValueError("images hold NaN or Inf pixels; pixels must be finite values in [0, 1]")
        hint = ("divide by 255" if hi > 1.5 else "map [−1, 1] to [0, 1] with (x + 1) / 2" if lo < -0.5
                else "clamp them with x.clamp(0, 1)")
        raise ValueError(f"pixels must be in [0, 1]; got min {lo:.4g}, max {hi:.4g}: {hint}")


def as_images(x) -> torch.Tensor:
    """``x`` as float32 images in [0, 1], checked: uint8 (0–255) is divided by 255, float64/16 become float32."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        x = x.float()
    check_images(x)
    return x


def build_teacher(preset: str = "mini", **overrides) -> Teacher:
    return Teacher(TeacherConfig.preset_config(preset, **overrides))


def load_imagenet_resnet50() -> Teacher:
    """The ``paper`` teacher with torchvision's ImageNet weights (``IMAGENET1K_V1``, top-1 76.13 %)."""
    from torchvision.models import ResNet50_Weights, resnet50
    try:
        r = resnet50(weights=ResNet50_Weights.IMAGENET1K_V1)
    except Exception as e:
        raise ConnectionError(
            "Could not get torchvision's ResNet-50 ImageNet weights (they download on first use into "
            f"$TORCH_HOME; error: {e}). Online, run once with internet; offline, copy "
            "resnet50-0676ba61.pth into $TORCH_HOME/hub/checkpoints/.") from e
    t = build_teacher("paper")
    t.load_state_dict(from_torchvision_resnet(r.state_dict()), strict=True)
    return t.eval()


def from_torchvision_resnet(state_dict: dict) -> dict:
    """Rename a torchvision ResNet state dict to the teacher's stages (conv1 → stem.conv1, fc → head.fc)."""
    prefix = {"conv1": "stem.", "bn1": "stem.", "fc": "head."}
    return {prefix.get(k.split(".")[0], "") + k: v for k, v in state_dict.items()}
