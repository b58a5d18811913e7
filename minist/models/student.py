"""The Entropic Student (Matsubara, Yang, Levorato & Mandt, WACV 2022): encoder + codec + decoder + tail.

It replaces the teacher's ``stem`` + ``layer1`` (docs/design.md §2) and keeps copies of ``layer2`` … ``head``::

    device:  x ─ encoder ─ z ─ codec.encode ─▶ bytes                  (round + rANS with the factorized prior)
    server:  bytes ─ codec.decode ─ ẑ ─ decoder ─ "layer1" ─ layer2 ─ layer3 ─ layer4 ─ head ─▶ logits

Stage 1 trains encoder, prior and decoder (feature distillation + β·rate, tail frozen); stage 2 freezes encoder and
prior, builds the coding tables, fine-tunes decoder … head with KD on the rounded latent. :meth:`split` gives the
two halves that run apart (:mod:`.halves`). ``codec="8bit"``: CR+BQ; ``end_to_end=True``: Singh et al.'s (no teacher);
``codec="gained"``: one student for every β of a grid (:class:`~minist.models.gained.GainedCodec`).

The rate is an argument wherever bits are made: ``student(x, beta=…)``, ``device_part(x, beta=…)``,
``student.compress(x, beta=…)`` (a float on ``student.codec.grid``; None: its lowest β). A one-rate student's grid
is its one β.
"""

from __future__ import annotations

import copy

import torch
from compressai.models import CompressionModel
from torch import nn

from ..config import BottleneckConfig, TeacherConfig
from .bottleneck import Decoder, Encoder
from .codec import FactorizedCodec
from .crbq import Quantize8Codec
from .gained import GainedCodec
from .halves import TAIL, DevicePart, ServerPart, analysis
from .rates import BetaGrid
from .teacher import Teacher, as_images
from .wire import probe_digest, probe_image

CODECS = {"factorized": FactorizedCodec, "8bit": Quantize8Codec, "gained": GainedCodec}


def build_codec(name: str, channels: int, grid: BetaGrid | None = None) -> nn.Module:
    """A latent codec by name (``CODECS``), coding at the rates of ``grid`` (None: the codec's default)."""
    if name not in CODECS:
        raise ValueError(f"unknown latent codec {name!r}; choose one of {sorted(CODECS)}")
    return CODECS[name](channels, grid)


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
        self.codec = build_codec(codec, c, grid)
        self.decoder = Decoder(c, t, self.config.decoder_widths, self.config.bias)
        for name in TAIL:   # copies: training the student never changes the teacher
            setattr(self, name, copy.deepcopy(getattr(teacher, name)))
        self.tune_tail = True   # stage 2 fine-tunes layer2 … head (the paper); False: they stay the teacher's
        self.straight_through = False   # stage 1: the decoder reads the sent (rounded) latent, gradient passed straight
        self.set_stage(1)

    @property
    def header_bytes(self) -> int:
        return self.codec.header_bytes

    # ---- forward ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return analysis(self.encoder, self.mean, self.std, as_images(x))    # (B, C, H/4 − 1, W/4 − 1)

    def tail(self, h: torch.Tensor, features: dict | None = None) -> torch.Tensor:
        """layer2 … head on the decoder's output; collects each stage's output into ``features``."""
        for name in TAIL:
            h = getattr(self, name)(h)
            if features is not None and name != "head":
                features[name] = h
        return h

    def forward(self, x: torch.Tensor, beta=None) -> dict:
        """``{"logits", "likelihoods", "features": {layer1 … layer4}, "latent"}`` for images in [0, 1] at rate
        ``beta`` (a float on ``codec.grid``, or a tensor of grid indices, one per image; None: the lowest β).

        Training (stage 1): ẑ = z + U(−½, ½). Eval, and stage 2: ẑ = round(z − median) + median,
        exactly what the bitstream carries. Stage 1 with ``straight_through``: the rate still prices the noisy
        latent, but the decoder reads the rounded one, its gradient passed through the rounding as if it were
        the identity (Minnen & Singh 2020's "mixed" quantisation): the encoder learns what rounding keeps.
        """
        with torch.autocast(x.device.type, enabled=False):      # the device part and the prior stay fp32
            if self.stage == 2:
                with torch.no_grad():
                    z_hat, lik = self.codec(self.encode(x), training=False, beta=beta)
            else:
                z = self.encode(x)
                z_hat, lik = self.codec(z, beta=beta)
                if self.straight_through and self.training:
                    with torch.no_grad():
                        z_sent = self.codec(z, training=False, beta=beta)[0]
                    z_free = self.codec.unrounded(z, beta=beta)
                    z_hat = z_free + (z_sent - z_free).detach()
        feats = {"layer1": self.decoder(z_hat)}                  # (B, T, H/4, W/4); bf16 under a recipe's autocast
        logits = self.tail(feats["layer1"], feats)
        return {"logits": logits, "likelihoods": lik, "features": feats, "latent": z_hat}

    # ---- stages ----------------------------------------------------------------------------
    def set_stage(self, stage: int) -> EntropicStudent:
        """Freeze what the stage does not train (docs/design.md §3). Stage 2 also builds the coding tables."""
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
        return self.codec.aux_loss()

    # ---- coding ----------------------------------------------------------------------------
    def update(self, force: bool = False) -> bool:
        """Build the coding tables (CompressAI's ``update``) and seal the fingerprint with the encoder's probe."""
        updated = super().update(force=force)
        self.seal()
        return updated

    @torch.no_grad()
    def seal(self) -> None:
        """Let the message fingerprint cover the encoder: its rounded latent of the fixed probe image."""
        probe = torch.from_numpy(probe_image()).to(self.mean.device)
        with torch.autocast(probe.device.type, enabled=False):
            self.codec.seal = probe_digest(self.encode(probe))

    def compress(self, x: torch.Tensor, beta: float | None = None) -> bytes:
        """One image (1, 3, H, W) → the bytes of its message at ``beta`` (what ``split()[0]`` sends)."""
        return DevicePart(self)(x, beta=beta)

    @torch.no_grad()
    def decompress(self, data: bytes, latent_sizes=None, trusted: bool = False) -> torch.Tensor:
        """Bytes of one message → logits (1, num_classes); checked as the server half checks them."""
        return ServerPart(self, latent_sizes)(data, trusted=trusted)

    def split(self, latent_sizes=None) -> tuple[DevicePart, ServerPart]:
        """The real split: ``server(device(x))`` equals ``self.eval()(x)["logits"]``. The server half accepts
        ``latent_sizes`` (default: the training image size's)."""
        if not self.codec.ready():
            raise RuntimeError("call student.update() first: it builds the integer CDF tables rANS needs")
        return DevicePart(self), ServerPart(self, latent_sizes)

    # ---- checkpoints -----------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True):
        """Load weights; the CDF buffers are resized to the checkpoint's (they change with ``update()``).
        Checkpoints from before the codec interface name the prior ``entropy_bottleneck``: renamed here."""
        sd = {("codec." + k[len("entropy_bottleneck."):] if k.startswith("entropy_bottleneck.") else k): v
              for k, v in state_dict.items()}
        result = nn.Module.load_state_dict(self, self.codec.prepare_state(sd, "codec"), strict=strict)
        if self.codec.ready():
            self.seal()
        return result

    @torch.no_grad()
    def latent_size(self, image_size: int) -> tuple[int, int]:
        """(h, w) of the latent the device sends for an ``image_size`` × ``image_size`` image."""
        z = self.encoder(torch.zeros(1, 3, image_size, image_size, device=self.mean.device))
        return int(z.shape[-2]), int(z.shape[-1])

    def device_parameters(self) -> int:
        return sum(p.numel() for m in (self.encoder, self.codec) for p in m.parameters())
