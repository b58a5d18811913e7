"""One model for every rate: the gained codec of the variable-rate student (codec id 3).

Gain units (Cui et al., CVPR 2021, "Asymmetric Gained Deep Image Compression with Continuous Rate Adaptation"),
read as per-channel quantisation steps of *one* factorized density. At rate β the device sends
``u = round(g(β) ⊙ z)`` (around the medians) and the server gives the decoder ``ẑ = g'(β) ⊙ û``::

    z (1, C, h, w) ─ ⊙ g(β) ─ round ─ rANS with the tables of β ─▶ bytes (header: fingerprint, grid index of β)
    bytes ─ rANS ─ û ─ ⊙ g'(β) ─▶ ẑ for the decoder

Fields on the wire: the fingerprint (4 B: prior, gains and encoder) and the grid index i of β (1 B).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .codec import FactorizedCodec
from .rates import BetaGrid
from .wire import CODEC_IDS, COMMON, TRAILER, PayloadError, fingerprint, pack, unpack


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
    """A factorized prior and rANS for every β of a :class:`~.codec.BetaGrid`: codec id 3 (the variable-rate student).

    The prior is the density p_z of the unscaled latent; the mass of a symbol is that of its bin in z,

        P(û) = F_z((û + ½) / g) − F_z((û − ½) / g),

    so one density serves every step size (a large g: fine bins, many bits; a small g: coarse bins, few bits).
    log g and log g' are learned at the grid's anchors (one per doubling of β) and interpolated linearly in
    log β between them: g(β) = g_k^(1 − t) · g_{k+1}^t (Cui et al.'s exponential interpolation). The rate is an
    argument (``beta``: a float, or a tensor of grid indices, one per image); ``decode`` takes it from the message,
    so one server decodes any mix of rates.
    """

    codec_id, header_bytes = CODEC_IDS["gained"], COMMON.size + 5 + TRAILER

    def __init__(self, channels: int, grid: BetaGrid | None = None):
        super().__init__(channels, grid or BetaGrid())
        k = self.grid.doublings + 1
        slope = torch.arange(k, dtype=torch.float32).view(-1, 1) * -0.35      # start: coarser bins as β grows
        self.log_gain = nn.Parameter(slope.repeat(1, channels))               # (anchors, C)
        self.log_inv_gain = nn.Parameter(-slope.repeat(1, channels))          # ẑ starts as û / g (z's units)
        self._tables: dict[int, _ScaledTables] = {}
        self._fp: bytes | None = None

    # ---- rates --------------------------------------------------------------------------------
    def gains(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, g') for grid indices (B,) → two (B, C) tensors, interpolated between the anchors in log β."""
        k = torch.div(idx, self.grid.steps, rounding_mode="floor").clamp(max=max(self.grid.doublings - 1, 0))
        t = ((idx - k * self.grid.steps).float() / self.grid.steps).unsqueeze(1)
        upper = (k + 1).clamp(max=self.grid.doublings)
        lerp = lambda p: (1 - t) * p[k] + t * p[upper]                          # noqa: E731
        return torch.exp(lerp(self.log_gain)), torch.exp(lerp(self.log_inv_gain))

    # ---- training and the server's view -------------------------------------------------------------
    def forward(self, z: torch.Tensor, training: bool | None = None, beta=None):
        """(ẑ for the decoder, likelihoods) at ``beta``: noise in training, rounding around the medians else."""
        training = self.training if training is None else training
        idx = self.grid.indexes(z.shape[0], beta, self.log_gain.device)
        g, gi = (t[:, :, None, None] for t in self.gains(idx))
        u = z * g                                                              # (B, C, h, w)
        if training:
            u_hat = u + torch.empty_like(u).uniform_(-0.5, 0.5)
        else:
            m = self._get_medians().reshape(1, -1, 1, 1) * g
            u_hat = torch.round(u - m) + m
        lik = self._mass(u_hat, g)
        return u_hat * gi, lik

    def unrounded(self, z: torch.Tensor, beta=None) -> torch.Tensor:
        """The decoder's input with bytes free: g'(β) · g(β) · z, the server's ẑ = g'(β) · û with û = g(β) · z
        unrounded."""
        g, gi = (t[:, :, None, None] for t in self.gains(self.grid.indexes(z.shape[0], beta, self.log_gain.device)))
        return z * g * gi

    def _mass(self, u_hat: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """P(û) = F_z((û + ½)/g) − F_z((û − ½)/g) per element, (B, C, h, w)."""
        b, c, h, w = u_hat.shape
        flat = lambda t: t.permute(1, 0, 2, 3).reshape(c, 1, -1)              # noqa: E731
        g = g.expand_as(u_hat)
        lower = self._logits_cumulative(flat((u_hat - 0.5) / g), stop_gradient=False)
        upper = self._logits_cumulative(flat((u_hat + 0.5) / g), stop_gradient=False)
        lik = self.likelihood_lower_bound(torch.sigmoid(upper) - torch.sigmoid(lower))
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

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

    @torch.no_grad()
    def all_gains(self) -> torch.Tensor:
        """g at every grid index, (levels, C) float32: what the device multiplies the latent by."""
        return self.gains(torch.arange(self.grid.levels, device=self.log_gain.device))[0].float()

    def fingerprint(self) -> bytes:
        """4 bytes of the density's coding tables, the gains at every rate and the encoder (a device computes the
        same from its bundle): another model's messages are refused."""
        self._check_ready()
        if self._fp is None:
            self._fp = fingerprint((self._quantized_cdf, self._offset, self._cdf_length,
                                    self._get_medians().detach().float(), self.all_gains()), self.seal)
        return self._fp

    @property
    def seal(self) -> bytes:
        return self.__dict__.get("_seal", b"")

    @seal.setter
    def seal(self, value: bytes) -> None:
        self.__dict__["_seal"], self.__dict__["_fp"] = value, None

    @torch.no_grad()
    def encode(self, z: torch.Tensor, beta=None) -> bytes:
        """One latent (1, C, h, w) → one message at ``beta`` (snapped to the grid; None: its lowest β)."""
        self._check_latent(z)
        i = int(self.grid.indexes(1, beta)[0])
        g, _ = self.gains(torch.tensor([i], device=z.device))
        payload = self.tables(i).payload_of(z * g[0].view(1, -1, 1, 1))
        return pack(self.codec_id, z.shape, self.fingerprint() + bytes([i]), payload)

    def parse_rate(self, data, latent_sizes=None) -> tuple[bytes, tuple[int, int], int]:
        """Check a message against this model: its rANS payload, latent size and grid index, or PayloadError."""
        fields, payload, h, w = unpack(data, self.codec_id, self.channels, 5, latent_sizes)
        if fields[:4] != self.fingerprint():
            raise PayloadError("message was made by another variable-rate model (its encoder, prior or gains differ)")
        index = fields[4]
        if index >= self.grid.levels:
            raise PayloadError(f"rate index {index} is outside this model's grid 0 … {self.grid.levels - 1} "
                               f"(β {self.grid.beta_min:g} … {self.grid.beta_max:g}): forged or from another model")
        self.check_body(payload, h, w)
        return payload, (h, w), index

    def bundle_tables(self) -> dict:
        """The density's tables (what the fingerprint covers) and, for every grid rate i, its rANS tables, medians
        (m · g_i) and gains g_i: ``rate_cdfs`` (levels, C, L) padded with zeros, the rest (levels, C)."""
        out = super().bundle_tables()
        sets = [self.tables(i) for i in range(self.grid.levels)]
        width = max(t._quantized_cdf.shape[1] for t in sets)
        cdfs = np.zeros((len(sets), self.channels, width), dtype=np.int32)
        for i, t in enumerate(sets):
            cdfs[i, :, :t._quantized_cdf.shape[1]] = t._quantized_cdf.cpu().numpy()
        return {**out, "rate_cdfs": cdfs,
                "rate_lengths": np.stack([t._cdf_length.cpu().numpy() for t in sets]).astype(np.int32),
                "rate_offsets": np.stack([t._offset.cpu().numpy() for t in sets]).astype(np.int32),
                "rate_medians": np.stack([t._get_medians().detach().reshape(-1).cpu().numpy()
                                          for t in sets]).astype(np.float32),
                "gains": self.all_gains().cpu().numpy().astype(np.float32)}

    def message_beta(self, data) -> float:
        """The β a message was sent at (its header checked as :meth:`parse_rate` does)."""
        return float(self.grid.beta(self.parse_rate(data)[2]))

    def output(self, u_hat: torch.Tensor, index: int) -> torch.Tensor:
        """The decoder's input from the decoded symbols' values û at grid rate ``index``: ẑ = g' ⊙ û."""
        _, gi = self.gains(torch.tensor([index], device=u_hat.device))
        return u_hat * gi[0].view(1, -1, 1, 1)
