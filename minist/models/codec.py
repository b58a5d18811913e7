"""Latent codecs: what turns the encoder's latent into bytes and back. One interface, one-rate codecs here.

Every latent codec is a module with, for a rate ``beta`` (a float on its grid, or a tensor of grid indices, one
per image; None: the grid's lowest β):

* ``forward(z, training=None, beta=None) → (ẑ, likelihoods or None)``: what the decoder sees, and the prior's
  likelihoods the rate term prices;
* ``estimate_bits(z, per_position=False, beta=None) → (B,)``: Σ −log2 p(ẑ) per image;
* ``unrounded(z, beta=None) → ẑ``: what the decoder would read if the latent were sent exactly (no rounding, no
  bytes): the rate-free ceiling's input (:func:`minist.evaluate.rate_free_accuracy`);
* ``encode(z, beta=None) → bytes``: one latent (1, C, h, w) → one message (:mod:`minist.models.wire`);
* ``decode(data, latent_sizes=None, trusted=False) → ẑ``: refuses bad bytes with ``PayloadError``;
* ``grid``: the :class:`BetaGrid` of rates it codes at. A one-rate codec is a one-point grid (its β).

:class:`FactorizedCodec` is the Entropic Student's: CompressAI's ``EntropyBottleneck`` (Ballé et al., ICLR 2018,
appendix 6.1; one non-parametric density per channel, ẑ = z + U(−½, ½) in training, rounding around the medians
and rANS with the CDF tables ``update()`` builds at test time). :class:`Quantize8Codec` is CR+BQ's: no prior,
8 bits per value with one affine scale per image, sent raw (:mod:`.crbq`). The variable-rate codec is
:mod:`.gained`'s; the grid of rates :mod:`.rates`'.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models.utils import remap_old_keys, update_registered_buffers

from .rates import BetaGrid
from .sandbox import SandboxedDecoder, check_reencodes, refuse_forged_runs
from .wire import (
    CODEC_IDS,
    COMMON,
    MAX_SYMBOL,
    TRAILER,
    PayloadError,
    fingerprint,
    pack,
    payload_bits,
    payload_bounds,
    unpack,
)

CDF_BUFFERS = ["_quantized_cdf", "_offset", "_cdf_length"]


def rate_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Information content Σ −log2 p per image of a batch of likelihoods (B, C, h, w) → (B,) bits."""
    return -torch.log2(likelihoods).flatten(1).sum(1)


class FactorizedCodec(EntropyBottleneck):
    """The factorized prior of docs/design.md §2 (filters (3, 3, 3, 3), tail mass 1e-9) + rANS, at one β: codec id 1.

    Fields on the wire: the fingerprint (4 B). ``seal`` is the encoder's probe digest (:func:`.wire.probe_digest`),
    set by the student whenever its tables are built or loaded, so the fingerprint covers the encoder too."""

    codec_id, header_bytes = CODEC_IDS["factorized"], COMMON.size + 4 + TRAILER

    def __init__(self, channels: int, grid: BetaGrid | None = None):
        super().__init__(channels, filters=(3, 3, 3, 3), tail_mass=1e-9)
        self.grid = grid or BetaGrid.single(0.005)
        self.seal = b""

    def ready(self) -> bool:
        return self._offset.numel() > 0

    def _check_ready(self) -> None:
        if not self.ready():
            raise RuntimeError("the entropy model has no coding tables yet: call update() first")

    def fingerprint(self) -> bytes:
        """4 bytes that change whenever the coding tables (CDFs, offsets, medians) or the encoder change."""
        self._check_ready()
        return fingerprint((self._quantized_cdf, self._offset, self._cdf_length,
                            self._get_medians().detach().float()), self.seal)

    def aux_loss(self) -> torch.Tensor:
        """The prior's quantile loss (CompressAI's), stepped every iteration of stage 1."""
        return self.loss()

    def prepare_state(self, state_dict: dict, prefix: str) -> dict:
        """Resize the CDF buffers to a checkpoint's (they change with ``update()``); CompressAI's old names."""
        sd = remap_old_keys(prefix, state_dict)
        if all(f"{prefix}.{b}" in sd for b in CDF_BUFFERS):
            update_registered_buffers(self, prefix, CDF_BUFFERS, sd, policy="resize")
        return sd

    def forward(self, z: torch.Tensor, training: bool | None = None, beta=None):
        if beta is not None:
            self.grid.indexes(z.shape[0], beta)        # refuses a β this codec was not trained for
        return super().forward(z, training)

    def unrounded(self, z: torch.Tensor, beta=None) -> torch.Tensor:
        """The decoder's input with bytes free: z itself (ẑ is z rounded around the medians)."""
        self.grid.indexes(z.shape[0], beta)            # refuses a β this codec was not trained for
        return z

    @torch.no_grad()
    def estimate_bits(self, z: torch.Tensor, per_position: bool = False, beta=None) -> torch.Tensor:
        """Σ −log2 p(ẑ) per image (B,), or per latent position (B, h, w)."""
        bits = -torch.log2(self(z, training=False, beta=beta)[1])
        return bits.sum(1) if per_position else bits.flatten(1).sum(1)

    def check_symbols(self, z: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``z`` is finite and its symbols fit (``|round(z − median)| < 2²⁴``)."""
        if not torch.isfinite(z).all():
            raise ValueError("the latent holds NaN or Inf values (were the pixels finite and in [0, 1]?)")
        dev = (z - self._get_medians().detach().reshape(1, -1, 1, 1)).abs().max()
        if float(dev) >= MAX_SYMBOL:
            raise ValueError(f"the latent reaches {float(dev):.3g} from its medians, over the format's {MAX_SYMBOL}")

    def payload_of(self, z: torch.Tensor) -> bytes:
        """The rANS payload our encoder writes for one latent (1, C, h, w) (no header)."""
        self.check_symbols(z)
        return super().compress(z)[0]

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.dim() != 4 or z.shape[0] != 1:
            raise ValueError(f"encode takes one latent (1, C, h, w), got {tuple(z.shape)}: one image → one bitstream")
        self._check_ready()
        if z.shape[1] != self.channels:
            raise ValueError(f"latent has {z.shape[1]} channels, the entropy model {self.channels}")

    @torch.no_grad()
    def encode(self, z: torch.Tensor, beta=None) -> bytes:
        self._check_latent(z)
        self.grid.indexes(1, beta)
        return pack(self.codec_id, z.shape, self.fingerprint(), self.payload_of(z))

    def parse_rate(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int], int]:
        """Check a message against this model: its rANS payload, latent size and table set (0: the one rate)."""
        fp, payload, h, w = unpack(data, self.codec_id, self.channels, 4, latent_sizes)
        if fp != self.fingerprint():
            raise PayloadError("message was made by another model (its encoder or coding tables differ)")
        self.check_body(payload, h, w)
        return payload, (h, w), 0

    def check_body(self, payload: bytes, h: int, w: int) -> None:
        lo, hi = payload_bounds(self.channels * h * w)
        if not lo <= len(payload) <= hi or len(payload) % 4:
            raise PayloadError(f"a {self.channels}×{h}×{w} latent codes to {lo}…{hi} bytes in 4-byte words, "
                               f"this body has {len(payload)}: forged or corrupt")

    def tables(self, key: int = 0) -> FactorizedCodec:
        """The rANS tables of table set ``key`` (a one-rate codec has one)."""
        return self

    def output(self, z_hat: torch.Tensor, key: int = 0) -> torch.Tensor:
        """The decoder's input from the decoded symbols' values (a one-rate codec: unchanged)."""
        return z_hat

    @torch.no_grad()
    def decode(self, data, latent_sizes=None, trusted: bool = False) -> torch.Tensor:
        """One message → ẑ (1, C, h, w) = round(z − median) + median, in this process.

        Unless ``trusted``, the symbols are re-encoded and a payload that is not exactly our encoder's is refused
        (as the sandbox does); for strangers' bytes use :meth:`untrusted_decoder` (a separate process)."""
        self._check_ready()
        payload, hw, key = self.parse_rate(data, latent_sizes)
        if not trusted:
            refuse_forged_runs(payload)
        coder = self.tables(key)
        z_hat = EntropyBottleneck.decompress(coder, [payload], hw)
        if not trusted:
            check_reencodes(coder, z_hat, payload)
        return self.output(z_hat, key)

    def bundle_tables(self) -> dict:
        """The arrays a torch-free device codes with (``minist export``): CDFs, lengths, offsets, medians."""
        self._check_ready()
        return {"cdfs": self._quantized_cdf.cpu().numpy().astype(np.int32),
                "lengths": self._cdf_length.cpu().numpy().astype(np.int32),
                "offsets": self._offset.cpu().numpy().astype(np.int32),
                "medians": self._get_medians().detach().reshape(-1).cpu().numpy().astype(np.float32)}

    def untrusted_decoder(self, latent_sizes) -> SandboxedDecoder:
        """``bytes → ẑ`` for messages from strangers: rANS in a separate, capped process, then the re-encode check."""
        return SandboxedDecoder(self, latent_sizes)


__all__ = ["BetaGrid", "FactorizedCodec", "PayloadError", "rate_bits", "payload_bits", "CDF_BUFFERS"]
