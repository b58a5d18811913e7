"""The rates a latent codec accepts: a grid of β, one byte on the wire for a variable-rate message.

A one-rate codec (a per-β student's) is a one-point grid at the β it was trained for; the variable-rate
student's covers β_min … β_min · 2^doublings. Larger β → fewer bits (β prices one bit of one image).
"""

from __future__ import annotations

import math

import torch


class BetaGrid:
    """The rates a codec accepts: β_i = β_min · 2^(i / steps), i = 0 … levels − 1; ``doublings=0``: one β.

    A variable-rate message carries i in one byte. The default grid is the study's β 0.005 … 0.64
    (``minist.experiments.sweep``) at 32 steps per doubling (2.2 % apart): the study's 8 β are i = 0, 32, …, 224."""

    def __init__(self, beta_min: float = 0.005, doublings: int = 7, steps: int = 32):
        if not ((beta_min > 0 or beta_min == 0 and doublings == 0) and doublings >= 0 and steps >= 1
                and doublings * steps < 256):
            raise ValueError(f"a β grid needs β_min > 0 (0 only for one rate) and 0 ≤ doublings · steps < 256 (one "
                             f"byte), got {beta_min}, {doublings}, {steps}")
        self.beta_min, self.doublings, self.steps = float(beta_min), int(doublings), int(steps)
        self.levels = self.doublings * self.steps + 1

    @classmethod
    def single(cls, beta: float) -> BetaGrid:
        """The one rate of a codec trained at ``beta`` (0: a codec with no rate term, CR+BQ's)."""
        return cls(beta, 0, 32)

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
        """The grid index nearest to ``beta`` (in log β); a β off the grid is refused."""
        beta = float(beta)
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"β must be a number ≥ 0, got {beta}")
        if self.levels == 1:
            near = beta > 0 and self.beta_min > 0 and round(self.steps * math.log2(beta / self.beta_min)) == 0
            if beta == self.beta_min or near:
                return 0
            raise ValueError(f"this model codes at β = {self.beta_min:g} only, not {beta:g} (a variable-rate "
                             "student codes at any β of its grid: pretrained.variable_student)")
        i = round(self.steps * math.log2(beta / self.beta_min)) if beta > 0 else -1
        if not 0 <= i < self.levels:
            raise ValueError(f"β = {beta:g} is outside this model's range {self.beta_min:g} … {self.beta_max:g}")
        return i

    def indexes(self, batch: int, beta=None, device=None) -> torch.Tensor:
        """Grid indices (batch,) of ``beta``: None (the lowest β), a float, or a tensor of 1 or ``batch`` indices."""
        if torch.is_tensor(beta):
            idx = beta.long().reshape(-1).to(device)
            if idx.numel() not in (1, batch) or bool(((idx < 0) | (idx >= self.levels)).any()):
                raise ValueError(f"per-image grid indices must be 1 or {batch} values in 0 … {self.levels - 1}")
            return idx.expand(batch) if idx.numel() == 1 else idx
        i = 0 if beta is None else self.index(beta)
        return torch.full((batch,), i, dtype=torch.long, device=device)

    def sample(self, batch: int) -> torch.Tensor:
        """A grid index per image, uniform over the grid (log-uniform in β); a one-point grid draws nothing."""
        if self.levels == 1:
            return torch.zeros(batch, dtype=torch.long)
        return torch.randint(0, self.levels, (batch,))

    def __contains__(self, beta: float) -> bool:
        """Whether ``beta`` is one of the grid's rates (within its rounding)."""
        try:
            return abs(self.beta(self.index(beta)) / float(beta) - 1) < 1e-6
        except ValueError:
            return False

    def to_dict(self) -> dict:
        return {"beta_min": self.beta_min, "doublings": self.doublings, "steps": self.steps}
