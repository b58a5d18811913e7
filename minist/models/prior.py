"""The factorized prior, written out from scratch to *teach* what it is.

Ballé, Minnen, Singh, Hwang & Johnston, "Variational image compression with a
scale hyperprior" (ICLR 2018), appendix 6.1. For each latent channel c the
prior's cumulative distribution is a monotone function of one variable,

    P_c(x) = sigmoid(f_K ∘ … ∘ f_1 (x)),
    f_k(x) = softplus(H_k) · x + b_k                      for the last layer,
    f_k(x) = g(softplus(H_k) · x + b_k),  g(u) = u + tanh(a_k) ⊙ tanh(u)   otherwise,

where softplus keeps the matrices positive (so f is increasing) and the tanh
"factors" bend it. The probability of an integer-spaced value is the mass of
a unit interval around it: p(ẑ) = P(ẑ + ½) − P(ẑ − ½). This is exactly what
``compressai.entropy_models.EntropyBottleneck`` computes; the test
``tests/test_codec.py`` checks that both give the same likelihoods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FactorizedDensity(nn.Module):
    """Per-channel non-parametric density; parameters shaped as in CompressAI."""

    def __init__(self, channels: int, filters=(3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for k in range(len(filters) + 1):
            # softplus(H) starts at 1 / (scale · fan-out): the density starts wide
            init = torch.log(torch.expm1(torch.tensor(1.0 / scale / dims[k + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), float(init))))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    @classmethod
    def from_compressai(cls, eb) -> FactorizedDensity:
        """A prior with the same parameters as a CompressAI ``EntropyBottleneck``."""
        prior = cls(eb.channels, eb.filters)
        prior.load_state_dict({k: v for k, v in eb.state_dict().items()
                               if k.split(".")[0] in ("matrices", "biases", "factors")})
        return prior

    def logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """f_K ∘ … ∘ f_1 (x) for x shaped (C, 1, N): one row of N values per channel."""
        for k, (H, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(H), x) + b           # (C, d_k, N)
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x                                             # (C, 1, N)

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits_cumulative(x))

    def likelihood(self, z_hat: torch.Tensor) -> torch.Tensor:
        """p(ẑ) for a latent (B, C, h, w): the prior's mass on [ẑ − ½, ẑ + ½]."""
        b, c, h, w = z_hat.shape
        x = z_hat.permute(1, 0, 2, 3).reshape(c, 1, -1)     # (C, 1, B·h·w)
        p = self.cdf(x + 0.5) - self.cdf(x - 0.5)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)
