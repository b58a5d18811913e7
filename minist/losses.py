"""The Entropic Student's losses (DESIGN §3; Matsubara et al., WACV 2022, Eqs. 2–4).

Stage 1:  L = Σ_j w_j ‖S_j − T_j‖²  +  β · Σ −log2 p(ẑ)      (sum over the batch)
Stage 2:  L = α · CE(s, y) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))

**β weights the rate term: larger β → fewer bits.** CompressAI's image codecs
use λ the other way round, L = R + λ·D, so there larger λ → *more* bits; the two
are related by β ≈ 1/λ up to the distortion's scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models.entropy import rate_bits

DISTILL_LAYERS = {"layer1": 1.0, "layer2": 1.0, "layer3": 1.0, "layer4": 1.0}


def feature_distillation(student: dict, teacher: dict, weights: dict | None = None) -> torch.Tensor:
    """Σ_j w_j ‖S_j − T_j‖², sum reduction over every element of the batch (the paper's setting)."""
    weights = DISTILL_LAYERS if weights is None else weights
    missing = [k for k in weights if k not in student or k not in teacher]
    if missing:
        raise KeyError(f"features {missing} are missing; student has {sorted(student)}, teacher {sorted(teacher)}")
    return sum(w * F.mse_loss(student[k], teacher[k].detach(), reduction="sum") for k, w in weights.items())


def rate_loss(likelihoods: torch.Tensor, beta: float) -> torch.Tensor:
    """β × total bits of the batch."""
    return beta * rate_bits(likelihoods)


def stage1_loss(student_feats: dict, teacher_feats: dict, likelihoods: torch.Tensor, beta: float,
                weights: dict | None = None) -> dict:
    """Stage-1 objective and its terms: ``{"loss", "distortion", "bits", "rate"}``."""
    distortion = feature_distillation(student_feats, teacher_feats, weights)
    bits = rate_bits(likelihoods)
    return {"loss": distortion + beta * bits, "distortion": distortion, "bits": bits, "rate": beta * bits}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float = 0.5, tau: float = 1.0) -> torch.Tensor:
    """α · CE(s, y) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ)), batch-mean (Hinton et al. 2015)."""
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / tau, dim=1), F.log_softmax(teacher_logits.detach() / tau, dim=1),
                  reduction="batchmean", log_target=True)
    return alpha * ce + (1.0 - alpha) * tau**2 * kl
