"""The Entropic Student (Matsubara, Yang, Levorato & Mandt, WACV 2022).

The student replaces the teacher's ``stem`` + ``layer1`` by encoder → entropy
bottleneck → decoder (DESIGN §2) and keeps copies of the teacher's
``layer2`` … ``head``::

    device:  x ─ encoder ─ z ─ round ─ rANS ─▶ bytes
    server:  bytes ─ rANS⁻¹ ─ ẑ ─ decoder ─ "layer1" ─ layer2 ─ layer3 ─ layer4 ─ head ─▶ logits

Stage 1 trains encoder, prior and decoder with feature distillation + β·rate
(``layer2`` … ``head`` frozen); stage 2 freezes encoder and prior, builds the
coding tables, and fine-tunes decoder … head with KD on the rounded latent.
:meth:`EntropicStudent.split` returns the two halves that really run apart.
"""

from __future__ import annotations

import copy

import torch
from compressai.models import CompressionModel
from compressai.models.utils import remap_old_keys, update_registered_buffers
from torch import nn

from . import entropy
from .bottleneck import BottleneckConfig, Decoder, Encoder
from .sandbox import SandboxedDecoder
from .teacher import Teacher, TeacherConfig, as_images

TAIL = ("layer2", "layer3", "layer4", "head")
CDF_BUFFERS = ["_quantized_cdf", "_offset", "_cdf_length"]


class EntropicStudent(CompressionModel):
    """Encoder + factorized prior + decoder, then the teacher's ``layer2`` … ``head``."""

    header_bytes = entropy.HEADER_BYTES
    #: Singh et al.'s "end-to-end" baseline: no teacher, so layer2 … head train in stage 1 too
    end_to_end = False

    def __init__(self, teacher: Teacher, config: BottleneckConfig | None = None):
        super().__init__()
        tcfg: TeacherConfig = teacher.config
        self.teacher_config = tcfg
        layer1_width = teacher.layer2[0].conv1.in_channels
        self.config = config or BottleneckConfig.preset_config(tcfg.preset, target_channels=layer1_width)
        if self.config.target_channels != layer1_width:
            raise ValueError(f"the decoder must output the teacher's layer1 width {layer1_width}, "
                             f"got target_channels={self.config.target_channels}")
        c, t = self.config.channels, self.config.target_channels
        self.register_buffer("mean", torch.tensor(tcfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tcfg.std).view(1, 3, 1, 1), persistent=False)
        self.encoder = Encoder(c)
        self.entropy_bottleneck = entropy.build_entropy_bottleneck(c)
        self.decoder = Decoder(c, t)
        for name in TAIL:   # copies: training the student never changes the teacher
            setattr(self, name, copy.deepcopy(getattr(teacher, name)))
        self.stage = 1
        self.set_stage(1)

    # ---- forward ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = as_images(x)
        return self.encoder((x - self.mean) / self.std)          # (B, C, H/4 − 1, W/4 − 1)

    def tail(self, h: torch.Tensor, features: dict | None = None) -> torch.Tensor:
        """layer2 … head on the decoder's output; collects each stage's output into ``features``."""
        for name in TAIL:
            h = getattr(self, name)(h)
            if features is not None and name != "head":
                features[name] = h
        return h

    def forward(self, x: torch.Tensor) -> dict:
        """``{"logits", "likelihoods", "features": {layer1 … layer4}, "latent"}`` for images in [0, 1].

        Training (stage 1): ẑ = z + U(−½, ½). Eval, and stage 2: ẑ = round(z − median) + median,
        exactly what the bitstream carries.
        """
        if self.stage == 2:
            with torch.no_grad():
                z_hat, lik = self.entropy_bottleneck(self.encode(x), training=False)
        else:
            z_hat, lik = self.entropy_bottleneck(self.encode(x))
        feats = {"layer1": self.decoder(z_hat)}                  # (B, T, H/4, W/4)
        logits = self.tail(feats["layer1"], feats)
        return {"logits": logits, "likelihoods": lik, "features": feats, "latent": z_hat}

    # ---- stages ----------------------------------------------------------------------------
    def set_stage(self, stage: int) -> EntropicStudent:
        """Freeze what the stage does not train (DESIGN §3). Stage 2 also builds the coding tables."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.stage = stage
        head_trains = stage == 2 or self.end_to_end
        for m in self._bitstream_modules():
            m.requires_grad_(stage == 1)
        self.decoder.requires_grad_(True)
        for name in TAIL:
            getattr(self, name).requires_grad_(head_trains)
        if stage == 2:
            self.update(force=True)
        return self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage == 1 and not self.end_to_end:   # frozen layer2 … head: a fixed perceptual loss, keep BN stats
            for name in TAIL:
                getattr(self, name).eval()
        else:                     # frozen encoder and prior: always quantise, never add noise
            for m in self._bitstream_modules():
                m.eval()
        return self

    def _bitstream_modules(self) -> list[nn.Module]:
        """What makes the bytes, frozen in stage 2: the encoder and the prior (CR+BQ has no prior)."""
        return [m for m in (self.encoder, getattr(self, "entropy_bottleneck", None)) if m is not None]

    # ---- coding ----------------------------------------------------------------------------
    def compress(self, x: torch.Tensor) -> bytes:
        """One image (1, 3, H, W) → the bytes of its message."""
        if x.dim() == 4 and x.shape[0] != 1:
            raise ValueError(f"compress takes one image (1, 3, H, W), got a batch of {x.shape[0]}: "
                             "one image → one bitstream; loop over the batch")
        if not entropy.is_updated(self.entropy_bottleneck):
            raise RuntimeError("call student.update() first: it builds the integer CDF tables rANS needs")
        with torch.no_grad():
            return entropy.compress(self.entropy_bottleneck, self.encode(x))

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        """Bytes of one message → logits (1, num_classes)."""
        z_hat = entropy.decompress(self.entropy_bottleneck, data)
        return self.tail(self.decoder(z_hat))

    def split(self) -> tuple[DevicePart, ServerPart]:
        """The real split: ``server(device(x))`` equals ``self.eval()(x)["logits"]``."""
        if not entropy.is_updated(self.entropy_bottleneck):
            raise RuntimeError("call student.update() first: it builds the integer CDF tables rANS needs")
        return DevicePart(self), ServerPart(self)

    # ---- checkpoints -----------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True):
        """Load weights; the CDF buffers are resized to the checkpoint's (they change with ``update()``)."""
        state_dict = remap_old_keys("entropy_bottleneck", dict(state_dict))   # CompressAI's old names
        if all(f"entropy_bottleneck.{b}" in state_dict for b in CDF_BUFFERS):
            update_registered_buffers(self.entropy_bottleneck, "entropy_bottleneck", CDF_BUFFERS, state_dict,
                                      policy="resize")
        return nn.Module.load_state_dict(self, state_dict, strict=strict)

    @torch.no_grad()
    def latent_size(self, image_size: int) -> tuple[int, int]:
        """(h, w) of the latent the device sends for an ``image_size`` × ``image_size`` image."""
        z = self.encoder(torch.zeros(1, 3, image_size, image_size, device=self.mean.device))
        return int(z.shape[-2]), int(z.shape[-1])

    def device_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters()) + sum(
            p.numel() for p in self.entropy_bottleneck.parameters())


class DevicePart(nn.Module):
    """What runs on the device: image (1, 3, H, W) in [0, 1] → bytes."""

    def __init__(self, student: EntropicStudent):
        super().__init__()
        self.encoder = student.encoder
        self.entropy_bottleneck = getattr(student, "entropy_bottleneck", None)   # CR+BQ has none
        self.register_buffer("mean", student.mean.clone(), persistent=False)
        self.register_buffer("std", student.std.clone(), persistent=False)
        self.eval()

    def to_bytes(self, z: torch.Tensor) -> bytes:
        return entropy.compress(self.entropy_bottleneck, z)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> bytes:
        """One image (1, 3, H, W): float in [0, 1], or uint8 (divided by 255); anything else is refused."""
        x = as_images(x)
        if x.shape[0] != 1:
            raise ValueError(f"the device sends one image per message, got a batch of {x.shape[0]}")
        return self.to_bytes(self.encoder((x - self.mean) / self.std))


class ServerPart(nn.Module):
    """What runs on the server: bytes → logits (1, num_classes). Bad bytes raise ``PayloadError``."""

    def __init__(self, student: EntropicStudent):
        super().__init__()
        self.entropy_bottleneck = getattr(student, "entropy_bottleneck", None)
        self.decoder = student.decoder
        self.channels = student.config.channels
        for name in TAIL:
            setattr(self, name, getattr(student, name))
        #: what a server accepts by default: the latent of the training image size (DESIGN §5)
        self.latent_sizes = {student.latent_size(student.teacher_config.image_size)}
        self.eval()

    def from_bytes(self, data: bytes) -> torch.Tensor:
        return entropy.decompress(self.entropy_bottleneck, data)

    def decoder_for_strangers(self, latent_sizes) -> SandboxedDecoder:
        """A ``bytes → ẑ`` for untrusted messages: the sandboxed, re-encoding-checked rANS decoder."""
        return SandboxedDecoder(self.entropy_bottleneck, latent_sizes)

    @torch.no_grad()
    def forward(self, data: bytes, decode=None) -> torch.Tensor:
        h = self.decoder((decode or self.from_bytes)(data))
        for name in TAIL:
            h = getattr(self, name)(h)
        return h
