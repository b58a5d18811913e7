"""The Entropic Student (Matsubara, Yang, Levorato & Mandt, WACV 2022): encoder + codec + decoder + tail.

It replaces the teacher's ``stem`` + ``layer1`` (DESIGN §2) and keeps copies of ``layer2`` … ``head``::

    device:  x ─ encoder ─ z ─ codec.encode ─▶ bytes                  (round + rANS with the factorized prior)
    server:  bytes ─ codec.decode ─ ẑ ─ decoder ─ "layer1" ─ layer2 ─ layer3 ─ layer4 ─ head ─▶ logits

Stage 1 trains encoder, prior and decoder (feature distillation + β·rate, tail frozen); stage 2 freezes encoder and
prior, builds the coding tables, fine-tunes decoder … head with KD on the rounded latent. :meth:`split` gives the
two halves that run apart. ``codec="8bit"``: CR+BQ; ``end_to_end=True``: Singh et al.'s (no teacher);
``codec="gained"``: one student for every β of a grid (:class:`~minist.models.codec.GainedCodec`; the rate is
``student.codec.beta``, or ``beta=`` of :meth:`compress` and of the device half).
"""

from __future__ import annotations

import copy

import torch
from compressai.models import CompressionModel
from compressai.models.utils import remap_old_keys, update_registered_buffers
from torch import nn

from ..config import BottleneckConfig, TeacherConfig
from .bottleneck import Decoder, Encoder
from .codec import FactorizedCodec, GainedCodec, build_codec
from .sandbox import SandboxedDecoder
from .teacher import Teacher, as_images

TAIL = ("layer2", "layer3", "layer4", "head")
CDF_BUFFERS = ["_quantized_cdf", "_offset", "_cdf_length"]


class EntropicStudent(CompressionModel):
    """Encoder + latent codec (a learned factorized prior, or CR+BQ's 8-bit quantiser) + decoder + tail."""

    def __init__(self, teacher: Teacher, config: BottleneckConfig | None = None, codec: str = "factorized",
                 end_to_end: bool = False, grid=None):
        super().__init__()
        tcfg: TeacherConfig = teacher.config
        self.teacher_config, self.codec_name, self.end_to_end = tcfg, codec, end_to_end
        layer1_width = teacher.layer2[0].conv1.in_channels
        self.config = config or BottleneckConfig.preset_config(tcfg.preset, target_channels=layer1_width)
        if self.config.target_channels != layer1_width:
            raise ValueError(f"the decoder must output the teacher's layer1 width {layer1_width}, "
                             f"got target_channels={self.config.target_channels}")
        c, t = self.config.channels, self.config.target_channels
        self.register_buffer("mean", torch.tensor(tcfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tcfg.std).view(1, 3, 1, 1), persistent=False)
        self.encoder = Encoder(c, self.config.encoder_widths, self.config.bias)
        self.codec = GainedCodec(c, grid) if codec == "gained" else build_codec(codec, c)
        self.decoder = Decoder(c, t, self.config.decoder_widths, self.config.bias)
        for name in TAIL:   # copies: training the student never changes the teacher
            setattr(self, name, copy.deepcopy(getattr(teacher, name)))
        self.tune_tail = True   # stage 2 fine-tunes layer2 … head (the paper); False: they stay the teacher's
        self.set_stage(1)

    @property
    def header_bytes(self) -> int:
        return self.codec.header_bytes

    @property
    def variable_rate(self) -> bool:
        """True for a student that encodes at any β of its grid (``codec="gained"``)."""
        return isinstance(self.codec, GainedCodec)

    # ---- forward ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((as_images(x) - self.mean) / self.std)          # (B, C, H/4 − 1, W/4 − 1)

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
        with torch.autocast(x.device.type, enabled=False):      # the device part and the prior stay fp32
            if self.stage == 2:
                with torch.no_grad():
                    z_hat, lik = self.codec(self.encode(x), training=False)
            else:
                z_hat, lik = self.codec(self.encode(x))
        feats = {"layer1": self.decoder(z_hat)}                  # (B, T, H/4, W/4); bf16 under a recipe's autocast
        logits = self.tail(feats["layer1"], feats)
        return {"logits": logits, "likelihoods": lik, "features": feats, "latent": z_hat}

    # ---- stages ----------------------------------------------------------------------------
    def set_stage(self, stage: int) -> EntropicStudent:
        """Freeze what the stage does not train (DESIGN §3). Stage 2 also builds the coding tables."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.stage = stage
        for m in (self.encoder, self.codec):
            m.requires_grad_(stage == 1)
        self.decoder.requires_grad_(True)
        for name in TAIL:
            getattr(self, name).requires_grad_((stage == 2 and self.tune_tail) or self.end_to_end)
        if stage == 2:
            self.update(force=True)
        return self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.end_to_end and (self.stage == 1 or not self.tune_tail):   # a frozen tail keeps its BN stats
            for name in TAIL:
                getattr(self, name).eval()
        if self.stage == 2:     # frozen encoder and prior: always quantise, never add noise
            self.encoder.eval()
            self.codec.eval()
        return self

    def aux_loss(self) -> torch.Tensor | None:
        """The prior's quantile loss (CompressAI), or None for a codec without a prior."""
        return self.codec.loss() if isinstance(self.codec, FactorizedCodec) else None

    # ---- coding ----------------------------------------------------------------------------
    def compress(self, x: torch.Tensor, beta: float | None = None) -> bytes:
        """One image (1, 3, H, W) → the bytes of its message (what ``split()[0]`` sends); ``beta``: the rate of a
        variable-rate student (default ``codec.beta``)."""
        return DevicePart(self)(x, beta=beta)

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        """Bytes of one message → logits (1, num_classes)."""
        return self.tail(self.decoder(self.codec.decode(data)))

    def split(self) -> tuple[DevicePart, ServerPart]:
        """The real split: ``server(device(x))`` equals ``self.eval()(x)["logits"]``."""
        if not self.codec.ready():
            raise RuntimeError("call student.update() first: it builds the integer CDF tables rANS needs")
        return DevicePart(self), ServerPart(self)

    # ---- checkpoints -----------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True):
        """Load weights; the CDF buffers are resized to the checkpoint's (they change with ``update()``).
        Checkpoints from before the codec interface name the prior ``entropy_bottleneck``: renamed here."""
        sd = {("codec." + k[len("entropy_bottleneck."):] if k.startswith("entropy_bottleneck.") else k): v
              for k, v in state_dict.items()}
        if isinstance(self.codec, FactorizedCodec):
            sd = remap_old_keys("codec", sd)   # CompressAI's old names
            if all(f"codec.{b}" in sd for b in CDF_BUFFERS):
                update_registered_buffers(self.codec, "codec", CDF_BUFFERS, sd, policy="resize")
        return nn.Module.load_state_dict(self, sd, strict=strict)

    @torch.no_grad()
    def latent_size(self, image_size: int) -> tuple[int, int]:
        """(h, w) of the latent the device sends for an ``image_size`` × ``image_size`` image."""
        z = self.encoder(torch.zeros(1, 3, image_size, image_size, device=self.mean.device))
        return int(z.shape[-2]), int(z.shape[-1])

    def device_parameters(self) -> int:
        return sum(p.numel() for m in (self.encoder, self.codec) for p in m.parameters())


class DevicePart(nn.Module):
    """What runs on the device: image (1, 3, H, W) in [0, 1] → bytes."""

    def __init__(self, student: EntropicStudent):
        super().__init__()
        self.encoder, self.codec = student.encoder, student.codec
        self.register_buffer("mean", student.mean.clone(), persistent=False)
        self.register_buffer("std", student.std.clone(), persistent=False)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, with_rate: bool = False, beta: float | None = None):
        """One image (1, 3, H, W): float in [0, 1], or uint8 (divided by 255); anything else is refused.
        ``with_rate=True`` returns ``(bytes, estimated bits)``: the prior's Σ −log2 p(ẑ) next to the real bytes.
        ``beta``: the rate of a variable-rate student (default: ``codec.beta``); a one-rate student refuses it."""
        x = as_images(x)
        if x.shape[0] != 1:
            raise ValueError(f"the device sends one image per message, got a batch of {x.shape[0]}")
        rate = {}
        if beta is not None:
            if not isinstance(self.codec, GainedCodec):
                raise ValueError("this student was trained for one β; beta= needs a variable-rate student")
            rate = {"beta": beta}
        z = self.encoder((x - self.mean) / self.std)
        data = self.codec.encode(z, **rate)
        return (data, float(self.codec.estimate_bits(z, **rate)[0])) if with_rate else data


class ServerPart(nn.Module):
    """What runs on the server: bytes → logits (1, num_classes). Bad bytes raise ``PayloadError``."""

    def __init__(self, student: EntropicStudent):
        super().__init__()
        self.codec, self.decoder = student.codec, student.decoder
        for name in TAIL:
            setattr(self, name, getattr(student, name))
        #: what a server accepts by default: the latent of the training image size (DESIGN §5)
        self.latent_sizes = {student.latent_size(student.teacher_config.image_size)}
        self.eval()

    def decoder_for_strangers(self, latent_sizes):
        """A ``bytes → ẑ`` for untrusted messages: the sandboxed, re-encoding-checked rANS decoder (raw 8-bit
        codes need none: the strict header and length checks are the whole guard)."""
        if isinstance(self.codec, FactorizedCodec):
            return SandboxedDecoder(self.codec, latent_sizes)
        return lambda data: self.codec.decode(data, latent_sizes)

    @torch.no_grad()
    def forward(self, data: bytes, decode=None) -> torch.Tensor:
        h = self.decoder((decode or self.codec.decode)(data))
        for name in TAIL:
            h = getattr(self, name)(h)
        return h
