"""The CR+BQ baseline: channel reduction + 8-bit bottleneck quantization (DESIGN §3).

The same encoder/decoder as the Entropic Student (Matsubara et al. 2020, "Head
network distillation"; Matsubara & Levorato 2021, "Neural compression and filtering
for edge-assisted real-time object detection"), but no learned prior: the latent is
quantised to 8 bits per value (one affine scale per image) and sent as raw bytes.
The rate is set by the number of channels C, not by β: ``C·h·w`` bytes per image.

Stage 1 trains encoder + decoder by feature distillation alone, on the float latent;
stage 2 freezes the encoder and fine-tunes decoder … head with KD on the *quantised*
latent, exactly what the server receives.

Wire format (version 1), big-endian::

    offset  size  field
    0       2     magic b"MQ"
    2       1     version = 1
    3       1     C
    4       2     h
    6       2     w
    8       4     lo (float32): the value of code 0
    12      4     step (float32): value = lo + code · step
    16      C·h·w codes, uint8, C-major
    end     4     CRC-32 of everything before it
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
from torch import nn

from .entropy import PayloadError
from .student import DevicePart, EntropicStudent, ServerPart

MAGIC = b"MQ"
VERSION = 1
_HEAD = struct.Struct(">2sBBHHff")
HEADER_BYTES = _HEAD.size + 4     # 20


def quantize8(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image affine 8-bit quantisation of (B, C, h, w): ``(codes uint8, lo (B,), step (B,))``."""
    lo = z.amin(dim=(1, 2, 3))
    step = ((z.amax(dim=(1, 2, 3)) - lo) / 255).clamp_min(1e-8)
    codes = torch.round((z - lo.view(-1, 1, 1, 1)) / step.view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8)
    return codes, lo, step


def dequantize8(codes: torch.Tensor, lo: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    return codes.float() * step.view(-1, 1, 1, 1) + lo.view(-1, 1, 1, 1)


def bq_roundtrip(z: torch.Tensor) -> torch.Tensor:
    """What the server sees of ``z`` (no gradient: the quantiser is applied after training)."""
    with torch.no_grad():
        return dequantize8(*quantize8(z))


def pack(z: torch.Tensor) -> bytes:
    """One latent (1, C, h, w) → bytes (header + codes + CRC)."""
    if z.dim() != 4 or z.shape[0] != 1:
        raise ValueError(f"pack takes one latent (1, C, h, w), got {tuple(z.shape)}")
    codes, lo, step = quantize8(z.float())
    _, c, h, w = codes.shape
    body = _HEAD.pack(MAGIC, VERSION, c, h, w, float(lo), float(step)) + codes.cpu().numpy().tobytes()
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes, channels: int, latent_sizes=None) -> torch.Tensor:
    """Bytes from :func:`pack` → the dequantised latent (1, C, h, w); bad bytes raise ``PayloadError``.

    ``latent_sizes``: the (h, w) the caller accepts; ``None`` accepts any.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise PayloadError(f"message too short ({len(data)} B): a CR+BQ message has at least {HEADER_BYTES} B")
    magic, version, c, h, w, lo, step = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise PayloadError(f"not a CR+BQ v{VERSION} message (magic {magic!r}, version {version})")
    if struct.unpack(">I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise PayloadError("CRC mismatch: the message was corrupted or truncated in transit")
    if c != channels:
        raise PayloadError(f"message has C = {c} channels, this model decodes C = {channels}")
    if latent_sizes is not None and (h, w) not in latent_sizes:
        raise PayloadError(f"latent size {h}×{w} is not one this model accepts here ({sorted(latent_sizes)})")
    if not (np.isfinite(lo) and np.isfinite(step) and 0 < step < 1e30):
        raise PayloadError(f"the quantiser's lo = {lo} and step = {step} must be finite, with step > 0")
    n = c * h * w
    if len(data) != HEADER_BYTES + n:
        raise PayloadError(f"message length {len(data)} B does not match its header ({HEADER_BYTES} + {n} B)")
    codes = torch.from_numpy(np.frombuffer(data, dtype=np.uint8, count=n, offset=_HEAD.size).copy())
    return dequantize8(codes.view(1, c, h, w), torch.tensor([lo]), torch.tensor([step]))


class CRBQStudent(EntropicStudent):
    """Encoder → 8-bit codes → decoder → the teacher's ``layer2`` … ``head`` (no entropy model)."""

    header_bytes = HEADER_BYTES

    def __init__(self, teacher, config=None):
        super().__init__(teacher, config)
        del self.entropy_bottleneck

    def forward(self, x: torch.Tensor) -> dict:
        if self.stage == 2:
            with torch.no_grad():
                z = self.encode(x)
        else:
            z = self.encode(x)
        z_hat = z if (self.training and self.stage == 1) else bq_roundtrip(z)
        feats = {"layer1": self.decoder(z_hat)}
        logits = self.tail(feats["layer1"], feats)
        return {"logits": logits, "likelihoods": None, "features": feats, "latent": z_hat}

    def compress(self, x: torch.Tensor) -> bytes:
        if x.dim() == 4 and x.shape[0] != 1:
            raise ValueError(f"compress takes one image (1, 3, H, W), got a batch of {x.shape[0]}")
        with torch.no_grad():
            return pack(self.encode(x))

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        return self.tail(self.decoder(unpack(data, self.config.channels)))

    def split(self):
        return CRBQDevicePart(self), CRBQServerPart(self)

    def load_state_dict(self, state_dict, strict: bool = True):
        return nn.Module.load_state_dict(self, state_dict, strict=strict)

    def device_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())


class CRBQDevicePart(DevicePart):
    """Encoder → 8-bit codes → bytes."""

    def to_bytes(self, z: torch.Tensor) -> bytes:
        return pack(z)


class CRBQServerPart(ServerPart):
    """Bytes → dequantised latent → decoder → layer2 … head."""

    def from_bytes(self, data: bytes) -> torch.Tensor:
        return unpack(data, self.channels)

    def decoder_for_strangers(self, latent_sizes):
        """Raw bytes need no entropy decoder: the strict header and length checks are the whole guard."""
        return lambda data: unpack(data, self.channels, latent_sizes)
