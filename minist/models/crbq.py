"""CR+BQ's latent codec (channel reduction + 8-bit quantisation, the feature-compression baseline of docs/design.md §3).

No prior: each value of the latent is sent as 8 bits, with one affine scale per image in the header. It follows the
latent-codec interface of :mod:`minist.models.codec` (``forward``, ``estimate_bits``, ``encode``, ``decode``, ``grid``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .rates import BetaGrid
from .wire import CODEC_IDS, COMMON, TRAILER, PayloadError, pack, unpack


class Quantize8Codec(nn.Module):
    """CR+BQ's codec: affine 8-bit quantisation per image, raw bytes, no prior: codec id 2.

    Training (stage 1) passes the float latent through untouched; everywhere else the server's view,
    ``dequantize(quantize(z))``, without gradient (the quantiser is applied after training). Fields on the
    wire: lo and step (float32 each)."""

    codec_id, header_bytes = CODEC_IDS["8bit"], COMMON.size + 8 + TRAILER
    _FIELDS = np.dtype(">f4")

    def __init__(self, channels: int, grid: BetaGrid | None = None):
        super().__init__()
        self.channels = channels
        self.grid = grid or BetaGrid.single(0.005)
        self.seal = b""                     # no fingerprint: the header carries lo and step

    def ready(self) -> bool:
        return True

    def aux_loss(self) -> None:
        return None

    def prepare_state(self, state_dict: dict, prefix: str) -> dict:
        return state_dict

    @staticmethod
    def quantize(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) → ``(codes uint8, lo (B,), step (B,))``."""
        lo = z.amin(dim=(1, 2, 3))
        step = ((z.amax(dim=(1, 2, 3)) - lo) / 255).clamp_min(1e-8)
        codes = torch.round((z - lo.view(-1, 1, 1, 1)) / step.view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8)
        return codes, lo, step

    @staticmethod
    def dequantize(codes, lo, step) -> torch.Tensor:
        return codes.float() * step.view(-1, 1, 1, 1) + lo.view(-1, 1, 1, 1)

    def forward(self, z: torch.Tensor, training: bool | None = None, beta=None):
        self.grid.indexes(z.shape[0], beta)
        if training if training is not None else self.training:
            return z, None
        with torch.no_grad():
            return self.dequantize(*self.quantize(z)), None

    def unrounded(self, z: torch.Tensor, beta=None) -> torch.Tensor:
        """The decoder's input with bytes free: the float latent (as in training)."""
        self.grid.indexes(z.shape[0], beta)
        return z

    def estimate_bits(self, z: torch.Tensor, per_position: bool = False, beta=None) -> torch.Tensor:
        self.grid.indexes(z.shape[0], beta)
        bits = torch.full(z[:, 0].shape, 8.0 * z.shape[1])           # C values of 8 bits per latent position
        return bits if per_position else bits.flatten(1).sum(1)

    def encode(self, z: torch.Tensor, beta=None) -> bytes:
        if z.dim() != 4 or z.shape[0] != 1:
            raise ValueError(f"encode takes one latent (1, C, h, w), got {tuple(z.shape)}")
        self.grid.indexes(1, beta)
        codes, lo, step = self.quantize(z.float())
        fields = np.array([float(lo), float(step)], dtype=self._FIELDS).tobytes()
        return pack(self.codec_id, z.shape, fields, codes.cpu().numpy().tobytes())

    def decode(self, data, latent_sizes=None, trusted: bool = False) -> torch.Tensor:
        """The header and length checks are the whole guard: raw codes need no re-encoding check."""
        fields, payload, h, w = unpack(data, self.codec_id, self.channels, 8, latent_sizes)
        lo, step = (float(v) for v in np.frombuffer(fields, dtype=self._FIELDS))
        if not (np.isfinite(lo) and np.isfinite(step) and 0 < step < 1e30):
            raise PayloadError(f"the quantiser's lo = {lo} and step = {step} must be finite, with step > 0")
        if len(payload) != self.channels * h * w:
            raise PayloadError(f"message length {len(payload) + self.header_bytes} B does not match its header "
                               f"({self.header_bytes} + {self.channels * h * w} B)")
        codes = torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).copy()).view(1, self.channels, h, w)
        return self.dequantize(codes, torch.tensor([lo]), torch.tensor([step]))

    def untrusted_decoder(self, latent_sizes):
        return lambda data: self.decode(data, latent_sizes)

    def bundle_tables(self) -> dict:
        raise ValueError("the torch-free device codes with a factorized prior's tables; CR+BQ's 8-bit codes are "
                         "not exported")
