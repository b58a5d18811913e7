"""Latent codecs: what turns the encoder's latent into bytes and back, behind one interface and one wire format.

Every codec is a module with ``forward(z) → (ẑ, likelihoods or None)`` for training, ``encode(z) → bytes`` (one
latent (1, C, h, w) → one message), ``decode(data, latent_sizes=None) → ẑ`` (bad bytes: PayloadError) and
``estimate_bits(z) → (B,)`` (bits per image: Σ −log2 p(ẑ) for a learned prior, what the rate term counts).

:class:`FactorizedCodec` is the Entropic Student's: CompressAI's ``EntropyBottleneck`` (Ballé et al., ICLR 2018,
appendix 6.1; one non-parametric density per channel, ẑ = z + U(−½, ½) in training, rounding around the medians
and rANS with the CDF tables ``update()`` builds at test time). :class:`Quantize8Codec` is CR+BQ's: no prior,
8 bits per value with one affine scale per image, sent raw.

Wire format, all integers big-endian (codec id 1 is byte for byte the first format's version 1)::

    offset  size  field
    0       2     magic b"MN"
    2       1     codec id: 1 = factorized prior + rANS, 2 = 8-bit quantiser
    3       1     C, latent channels
    4       2     h, latent height
    6       2     w, latent width
    8       k     the codec's fields: id 1 the coding tables' fingerprint (4 B: first bytes of a SHA-256);
                  id 2 lo and step (float32 each: value = lo + code · step)
    8+k     n     payload: the rANS stream (id 1), or C·h·w uint8 codes, C-major (id 2)
    8+k+n   4     CRC-32 of everything before it

The 8 + k + 4 header bytes (16 or 20) are ours and reported apart from the payload. A header can lie (the CRC
is public), so :meth:`FactorizedCodec.parse` checks what it can before any decoding: C, the tables, the latent
size against ``latent_sizes``, and the body's length against what rANS can produce (:func:`payload_bounds`).
CompressAI's decoder still trusts the body; bytes from strangers go through
:class:`minist.models.sandbox.SandboxedDecoder` (``ServerPart.decoder_for_strangers``).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn

MAGIC = b"MN"
COMMON = struct.Struct(">2sBBHH")    # magic, codec id, C, h, w
# most bits one symbol can cost: an in-range one ≤ 16 (CompressAI's CDF precision), an out-of-range one the
# 16-bit escape symbol + ≤ 9 four-bit bypass chunks (int32 values)
BYPASS_BITS = 16 + 4 * 9
# |symbol| the format carries. CompressAI's encoder loops forever on symbols near ±2³¹ (its bypass length
# loop shifts a negative number), so larger ones (a NaN or Inf latent, a forged stream) are refused first.
MAX_SYMBOL = 1 << 24


class PayloadError(ValueError):
    """Bytes that this model cannot decode: corrupt, truncated, foreign, or from another model."""


def rate_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Information content Σ −log2 p per image of a batch of likelihoods (B, C, h, w) → (B,) bits."""
    return -torch.log2(likelihoods).flatten(1).sum(1)


def payload_bounds(symbols: int) -> tuple[int, int]:
    """Fewest and most bytes CompressAI's rANS writes for ``symbols`` symbols (32-bit words, 8-byte flush)."""
    return 8, 8 + 4 * (-(-symbols * BYPASS_BITS // 32) + 1)


def pack(codec_id: int, z_shape, fields: bytes, payload: bytes) -> bytes:
    """Header + codec fields + payload + CRC-32 for one latent of shape (1, C, h, w)."""
    _, c, h, w = z_shape
    if not (0 < h < 65536 and 0 < w < 65536):
        raise ValueError(f"latent size {h}×{w} does not fit the wire format")
    body = COMMON.pack(MAGIC, codec_id, c, h, w) + fields + payload
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data, codec_id: int, channels: int, fields: int, latent_sizes=None) -> tuple[bytes, bytes, int, int]:
    """Check the common header and CRC of a message for this codec; return (fields, payload, h, w)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < COMMON.size + fields + 4:
        raise PayloadError(f"message too short ({len(data)} bytes; a header alone is {COMMON.size + fields + 4}):"
                           " truncated?")
    magic, cid, c, h, w = COMMON.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"not a minist message (magic {magic!r}, expected {MAGIC!r})")
    if cid != codec_id:
        raise PayloadError(f"message is for codec {cid}, this model decodes codec {codec_id} (another kind of model,"
                           " or a newer minist)")
    if zlib.crc32(data[:-4]) != struct.unpack_from(">I", data, len(data) - 4)[0]:
        raise PayloadError("checksum mismatch: the message is corrupt or truncated")
    if c != channels:
        raise PayloadError(f"message has {c} latent channels, this model {channels}: made by another model")
    if h == 0 or w == 0:
        raise PayloadError(f"empty latent size {h}×{w}")
    if latent_sizes is not None and (h, w) not in latent_sizes:
        accepted = ", ".join(f"{a}×{b}" for a, b in sorted(latent_sizes))
        raise PayloadError(f"latent size {h}×{w} is not one this model accepts here ({accepted})")
    return data[COMMON.size:COMMON.size + fields], data[COMMON.size + fields:-4], h, w


class FactorizedCodec(EntropyBottleneck):
    """The factorized prior of DESIGN §2 (filters (3, 3, 3, 3), tail mass 1e-9) + rANS: codec id 1."""

    codec_id, header_bytes = 1, COMMON.size + 4 + 4

    def __init__(self, channels: int):
        super().__init__(channels, filters=(3, 3, 3, 3), tail_mass=1e-9)

    def ready(self) -> bool:
        return self._offset.numel() > 0

    def _check_ready(self) -> None:
        if not self.ready():
            raise RuntimeError("the entropy model has no coding tables yet: call update() first")

    def fingerprint(self) -> bytes:
        """4 bytes that change whenever the coding tables (CDFs, offsets, medians) change."""
        self._check_ready()
        h = hashlib.sha256()
        for t in (self._quantized_cdf, self._offset, self._cdf_length, self._get_medians().detach().float()):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()[:4]

    @torch.no_grad()
    def estimate_bits(self, z: torch.Tensor, per_position: bool = False) -> torch.Tensor:
        """Σ −log2 p(ẑ) per image (B,), or per latent position (B, h, w)."""
        bits = -torch.log2(self(z, training=False)[1])
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

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> bytes:
        if z.dim() != 4 or z.shape[0] != 1:
            raise ValueError(f"encode takes one latent (1, C, h, w), got {tuple(z.shape)}: one image → one bitstream")
        self._check_ready()
        if z.shape[1] != self.channels:
            raise ValueError(f"latent has {z.shape[1]} channels, the entropy model {self.channels}")
        return pack(self.codec_id, z.shape, self.fingerprint(), self.payload_of(z))

    def parse(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int]]:
        """Check a message against this model; return its rANS payload and latent size, or raise PayloadError."""
        fp, payload, h, w = unpack(data, self.codec_id, self.channels, 4, latent_sizes)
        if fp != self.fingerprint():
            raise PayloadError("message was made with different coding tables (another model, β or checkpoint)")
        lo, hi = payload_bounds(self.channels * h * w)
        if not lo <= len(payload) <= hi or len(payload) % 4:
            raise PayloadError(f"a {self.channels}×{h}×{w} latent codes to {lo}…{hi} bytes in 4-byte words, "
                               f"this body has {len(payload)}: forged or corrupt")
        return payload, (h, w)

    # a one-rate codec is a variable-rate one with a single table set, key 0 (what the sandbox relies on)
    def parse_rate(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int], int]:
        return (*self.parse(data, latent_sizes), 0)

    def tables(self, key: int = 0) -> FactorizedCodec:
        return self

    def output(self, z_hat: torch.Tensor, key: int = 0) -> torch.Tensor:
        return z_hat

    @torch.no_grad()
    def decode(self, data, latent_sizes=None) -> torch.Tensor:
        """One message → ẑ (1, C, h, w) = round(z − median) + median. In this process: for your own messages."""
        self._check_ready()
        payload, hw = self.parse(data, latent_sizes)
        return super().decompress([payload], hw)


class Quantize8Codec(nn.Module):
    """CR+BQ's codec: affine 8-bit quantisation per image, raw bytes, no prior: codec id 2.

    Training (stage 1) passes the float latent through untouched; everywhere else the server's view,
    ``dequantize(quantize(z))``, without gradient (the quantiser is applied after training)."""

    codec_id, header_bytes = 2, COMMON.size + 8 + 4
    _FIELDS = struct.Struct(">ff")

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def ready(self) -> bool:
        return True

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

    def forward(self, z: torch.Tensor, training: bool | None = None):
        if training if training is not None else self.training:
            return z, None
        with torch.no_grad():
            return self.dequantize(*self.quantize(z)), None

    def estimate_bits(self, z: torch.Tensor, per_position: bool = False) -> torch.Tensor:
        bits = torch.full(z[:, 0].shape, 8.0 * z.shape[1])           # C values of 8 bits per latent position
        return bits if per_position else bits.flatten(1).sum(1)

    def encode(self, z: torch.Tensor) -> bytes:
        if z.dim() != 4 or z.shape[0] != 1:
            raise ValueError(f"encode takes one latent (1, C, h, w), got {tuple(z.shape)}")
        codes, lo, step = self.quantize(z.float())
        return pack(self.codec_id, z.shape, self._FIELDS.pack(float(lo), float(step)), codes.cpu().numpy().tobytes())

    def decode(self, data, latent_sizes=None) -> torch.Tensor:
        fields, payload, h, w = unpack(data, self.codec_id, self.channels, self._FIELDS.size, latent_sizes)
        lo, step = self._FIELDS.unpack(fields)
        if not (np.isfinite(lo) and np.isfinite(step) and 0 < step < 1e30):
            raise PayloadError(f"the quantiser's lo = {lo} and step = {step} must be finite, with step > 0")
        if len(payload) != self.channels * h * w:
            raise PayloadError(f"message length {len(payload) + self.header_bytes} B does not match its header "
                               f"({self.header_bytes} + {self.channels * h * w} B)")
        codes = torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).copy()).view(1, self.channels, h, w)
        return self.dequantize(codes, torch.tensor([lo]), torch.tensor([step]))




# ---- one model for every rate ------------------------------------------------------------------------------
class BetaGrid:
    """The rates a variable-rate student accepts: β_i = β_min · 2^(i / steps), i = 0 … levels − 1.

    The message carries i in one byte. The default grid is the study's β 0.005 … 0.64 (``minist.experiments.sweep``)
    at 32 steps per doubling (2.2 % apart), so the study's 8 β are exactly i = 0, 32, …, 224."""

    def __init__(self, beta_min: float = 0.005, doublings: int = 7, steps: int = 32):
        if not (beta_min > 0 and doublings >= 1 and steps >= 1 and doublings * steps < 256):
            raise ValueError(f"a β grid needs β_min > 0 and doublings · steps < 256 (one byte), got {beta_min}, "
                             f"{doublings}, {steps}")
        self.beta_min, self.doublings, self.steps = float(beta_min), int(doublings), int(steps)
        self.levels = self.doublings * self.steps + 1

    @property
    def beta_max(self) -> float:
        return self.beta(self.levels - 1)

    @property
    def anchors(self) -> list[float]:
        """The β with their own learned gains (one per doubling); every β between is interpolated."""
        return [self.beta_min * 2.0 ** k for k in range(self.doublings + 1)]

    def beta(self, index):
        """β of grid index ``index`` (an int, or a tensor of them)."""
        return self.beta_min * 2.0 ** (index / self.steps)

    def index(self, beta: float) -> int:
        """The grid index nearest to ``beta`` (in log β); a β outside the grid is refused."""
        beta = float(beta)
        if not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"β must be a positive number, got {beta}")
        i = round(self.steps * math.log2(beta / self.beta_min))
        if not 0 <= i < self.levels:
            raise ValueError(f"β = {beta:g} is outside this model's range {self.beta_min:g} … {self.beta_max:g}")
        return i

    def to_dict(self) -> dict:
        return {"beta_min": self.beta_min, "doublings": self.doublings, "steps": self.steps}


class _ScaledTables(FactorizedCodec):
    """The coding tables of one grid rate: the base density of z, read on the bins of u = g ⊙ z (bin width 1/g).

    Its ``_logits_cumulative(u) = base._logits_cumulative(u / g)``, its quantiles the base's times g, so
    CompressAI's own ``update()``, ``compress()`` and ``decompress()`` work on u unchanged."""

    def __init__(self, base: GainedCodec, gain: torch.Tensor):
        super().__init__(base.channels)
        self._base = [base]                       # a plain list: not a submodule, no parameters shared twice
        self.register_buffer("_gain", gain.detach().reshape(-1, 1, 1).clone(), persistent=False)
        with torch.no_grad():
            self.quantiles.copy_(base.quantiles.detach() * self._gain)
        self.requires_grad_(False)
        self.update(force=True)

    def _logits_cumulative(self, inputs, stop_gradient: bool):
        return self._base[0]._logits_cumulative(inputs / self._gain, stop_gradient=True)


class GainedCodec(FactorizedCodec):
    """A factorized prior and rANS for every β of a :class:`BetaGrid`: codec id 3 (the variable-rate student).

    Gain units (Cui et al., CVPR 2021), read as per-channel quantisation steps of *one* density: at rate β the
    device sends ``u = round(g(β) ⊙ z)`` (around the medians), the server gives the decoder ``ẑ = g'(β) ⊙ û``.
    The prior is the density p_z of the unscaled latent; the mass of a symbol is that of its bin in z,

        P(û) = F_z((û + ½) / g) − F_z((û − ½) / g),

    so one density serves every step size (a large g: fine bins, many bits; a small g: coarse bins, few bits).
    log g and log g' are learned at the grid's anchors (one per doubling of β) and interpolated linearly in
    log β between them: g(β) = g_k^(1 − t) · g_{k+1}^t (Cui et al.'s exponential interpolation). ``beta``, an
    attribute, is the rate forward and encode use (a float, or a tensor of grid indices: one per image).

    Its messages carry the grid index after the fingerprint (fields: 4 B fingerprint of prior and gains, 1 B
    index); ``decode`` takes the rate from the message, so one server decodes any mix of rates.
    """

    codec_id, header_bytes = 3, COMMON.size + 5 + 4

    def __init__(self, channels: int, grid: BetaGrid | None = None):
        super().__init__(channels)
        self.grid = grid or BetaGrid()
        k = self.grid.doublings + 1
        slope = torch.arange(k, dtype=torch.float32).view(-1, 1) * -0.35      # start: coarser bins as β grows
        self.log_gain = nn.Parameter(slope.repeat(1, channels))               # (anchors, C)
        self.log_inv_gain = nn.Parameter(-slope.repeat(1, channels))          # ẑ starts as û / g (z's units)
        self.beta: float | torch.Tensor = self.grid.beta_min
        self._tables: dict[int, _ScaledTables] = {}
        self._fp: bytes | None = None

    # ---- rates --------------------------------------------------------------------------------
    def indexes(self, batch: int, beta=None) -> torch.Tensor:
        """Grid indices (batch,) of ``beta`` (default: ``self.beta``): a float, or a tensor of indices."""
        beta = self.beta if beta is None else beta
        if torch.is_tensor(beta):
            idx = beta.long().reshape(-1).to(self.log_gain.device)
            if idx.numel() not in (1, batch) or bool(((idx < 0) | (idx >= self.grid.levels)).any()):
                raise ValueError(f"per-image grid indices must be 1 or {batch} values in 0 … {self.grid.levels - 1}")
            return idx.expand(batch) if idx.numel() == 1 else idx
        return torch.full((batch,), self.grid.index(beta), dtype=torch.long, device=self.log_gain.device)

    def gains(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, g') for grid indices (B,) → two (B, C) tensors, interpolated between the anchors in log β."""
        k = torch.div(idx, self.grid.steps, rounding_mode="floor").clamp(max=self.grid.doublings - 1)
        t = ((idx - k * self.grid.steps).float() / self.grid.steps).unsqueeze(1)
        lerp = lambda p: (1 - t) * p[k] + t * p[k + 1]                          # noqa: E731
        return torch.exp(lerp(self.log_gain)), torch.exp(lerp(self.log_inv_gain))

    def betas_of(self, idx: torch.Tensor) -> torch.Tensor:
        return self.grid.beta(idx.float())

    # ---- training and the server's view -------------------------------------------------------------
    def forward(self, z: torch.Tensor, training: bool | None = None, beta=None):
        """(ẑ for the decoder, likelihoods) at ``beta`` (default ``self.beta``): noise in training, rounding around
        the medians else."""
        training = self.training if training is None else training
        g, gi = (t[:, :, None, None] for t in self.gains(self.indexes(z.shape[0], beta)))
        u = z * g
        if training:
            u_hat = u + torch.empty_like(u).uniform_(-0.5, 0.5)
        else:
            m = self._get_medians().reshape(1, -1, 1, 1) * g
            u_hat = torch.round(u - m) + m
        lik = self._mass(u_hat, g)
        return u_hat * gi, lik

    def _mass(self, u_hat: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """P(û) = F_z((û + ½)/g) − F_z((û − ½)/g) per element, (B, C, h, w)."""
        b, c, h, w = u_hat.shape
        flat = lambda t: t.permute(1, 0, 2, 3).reshape(c, 1, -1)              # noqa: E731
        g = g.expand_as(u_hat)
        lower = self._logits_cumulative(flat((u_hat - 0.5) / g), stop_gradient=False)
        upper = self._logits_cumulative(flat((u_hat + 0.5) / g), stop_gradient=False)
        lik = self.likelihood_lower_bound(torch.sigmoid(upper) - torch.sigmoid(lower))
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def estimate_bits(self, z: torch.Tensor, per_position: bool = False, beta=None) -> torch.Tensor:
        bits = -torch.log2(self(z, training=False, beta=beta)[1])
        return bits.sum(1) if per_position else bits.flatten(1).sum(1)

    # ---- coding tables, one set per grid rate, built when first used --------------------------------------
    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        self._tables, self._fp = {}, None
        return super().update(force=force, update_quantiles=update_quantiles)

    def tables(self, index: int) -> _ScaledTables:
        """The rANS tables of grid rate ``index`` (cached; ≈ a few ms to build)."""
        self._check_ready()
        if index not in self._tables:
            with torch.no_grad():
                g, _ = self.gains(torch.tensor([index], device=self.log_gain.device))
            self._tables[index] = _ScaledTables(self, g[0])
        return self._tables[index]

    def fingerprint(self) -> bytes:
        """4 bytes of the prior, its quantiles and the gains: another model's messages are refused."""
        self._check_ready()
        if self._fp is None:
            h = hashlib.sha256()
            for t in (*self.parameters(), self._get_medians()):
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            self._fp = h.digest()[:4]
        return self._fp

    @torch.no_grad()
    def encode(self, z: torch.Tensor, beta=None) -> bytes:
        """One latent (1, C, h, w) → one message at ``beta`` (default ``self.beta``, snapped to the grid)."""
        if z.dim() != 4 or z.shape[0] != 1:
            raise ValueError(f"encode takes one latent (1, C, h, w), got {tuple(z.shape)}: one image → one bitstream")
        if z.shape[1] != self.channels:
            raise ValueError(f"latent has {z.shape[1]} channels, the entropy model {self.channels}")
        i = int(self.indexes(1, beta)[0])
        g, _ = self.gains(torch.tensor([i], device=z.device))
        payload = self.tables(i).payload_of(z * g[0].view(1, -1, 1, 1))
        return pack(self.codec_id, z.shape, self.fingerprint() + bytes([i]), payload)

    def message_beta(self, data) -> float:
        """The β a message was sent at (its header checked as :meth:`parse` does)."""
        return float(self.grid.beta(self.parse_rate(data)[2]))

    def parse(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int]]:
        return self.parse_rate(data, latent_sizes)[:2]

    def parse_rate(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int], int]:
        """Check a message against this model: its rANS payload, latent size and grid index, or PayloadError."""
        fields, payload, h, w = unpack(data, self.codec_id, self.channels, 5, latent_sizes)
        if fields[:4] != self.fingerprint():
            raise PayloadError("message was made by another variable-rate model (its prior or gains differ)")
        index = fields[4]
        if index >= self.grid.levels:
            raise PayloadError(f"rate index {index} is outside this model's grid 0 … {self.grid.levels - 1} "
                               f"(β {self.grid.beta_min:g} … {self.grid.beta_max:g}): forged or from another model")
        lo, hi = payload_bounds(self.channels * h * w)
        if not lo <= len(payload) <= hi or len(payload) % 4:
            raise PayloadError(f"a {self.channels}×{h}×{w} latent codes to {lo}…{hi} bytes in 4-byte words, "
                               f"this body has {len(payload)}: forged or corrupt")
        return payload, (h, w), index

    def output(self, u_hat: torch.Tensor, index: int) -> torch.Tensor:
        """The decoder's input from the decoded symbols' values û at grid rate ``index``: ẑ = g' ⊙ û."""
        _, gi = self.gains(torch.tensor([index], device=u_hat.device))
        return u_hat * gi[0].view(1, -1, 1, 1)

    @torch.no_grad()
    def decode(self, data, latent_sizes=None) -> torch.Tensor:
        """One message at any grid rate → ẑ (1, C, h, w). In this process: for your own messages."""
        self._check_ready()
        payload, hw, index = self.parse_rate(data, latent_sizes)
        return self.output(EntropyBottleneck.decompress(self.tables(index), [payload], hw), index)


CODECS = {"factorized": FactorizedCodec, "8bit": Quantize8Codec, "gained": GainedCodec}


def build_codec(name: str, channels: int) -> nn.Module:
    if name not in CODECS:
        raise ValueError(f"unknown latent codec {name!r}; choose one of {sorted(CODECS)}")
    return CODECS[name](channels)


def payload_bits(data: bytes, header_bytes: int = FactorizedCodec.header_bytes) -> int:
    """Bits of the payload alone (without our header and trailer)."""
    return 8 * (len(data) - header_bytes)
