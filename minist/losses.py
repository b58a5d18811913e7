"""Every training objective of minist (DESIGN §3; Matsubara et al., WACV 2022, Eqs. 2–4).

Stage 1:      L = Σ_batch [ Σ_j w_j ‖S_j − T_j‖²  +  β · bits ]       (sum over the batch, the paper's)
Stage 2:      L = α · CE(s, y) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))
End-to-end:   L = mean_batch [ CE(s, y) + β · bits ]                    (Singh et al., ICIP 2020)

``bits`` is one image's Σ −log2 p(ẑ). **β is the price of one bit of one image, in units of that image's loss:
larger β → fewer bits.** CompressAI's image codecs use λ the other way round, L = R + λ·D, so there larger λ →
*more* bits; the two are related by β ≈ 1/λ up to the distortion's scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models.codec import rate_bits

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def distill_weights(weights=(1.0, 1.0, 1.0, 1.0)) -> dict:
    """``{"layer1": w_1, …}`` from the per-layer weights of a config (a zero weight drops the layer)."""
    return {k: float(w) for k, w in zip(LAYERS, weights) if w}


def feature_distillation(student: dict, teacher: dict, weights: dict | None = None) -> torch.Tensor:
    """Σ_j w_j ‖S_j − T_j‖², sum reduction over every element of the batch (the paper's setting)."""
    weights = distill_weights() if weights is None else weights
    missing = [k for k in weights if k not in student or k not in teacher]
    if missing:
        raise KeyError(f"features {missing} are missing; student has {sorted(student)}, teacher {sorted(teacher)}")
    return sum(w * F.mse_loss(student[k], teacher[k].detach(), reduction="sum") for k, w in weights.items())


def stage1_loss(student_feats: dict, teacher_feats: dict, likelihoods: torch.Tensor | None, beta: float,
                weights: dict | None = None) -> dict:
    """Stage-1 objective and its batch totals ``{"loss", "distortion", "bits"}`` (no prior, e.g. CR+BQ: bits 0)."""
    distortion = feature_distillation(student_feats, teacher_feats, weights)
    bits = rate_bits(likelihoods).sum() if likelihoods is not None else distortion.new_zeros(())
    return {"loss": distortion + beta * bits, "distortion": distortion, "bits": bits}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float = 0.5, tau: float = 1.0) -> torch.Tensor:
    """α · CE(s, y) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ)), batch-mean (Hinton et al. 2015)."""
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / tau, dim=1), F.log_softmax(teacher_logits.detach() / tau, dim=1),
                  reduction="batchmean", log_target=True)
    return alpha * ce + (1.0 - alpha) * tau**2 * kl


def end_to_end_loss(logits: torch.Tensor, labels: torch.Tensor, likelihoods: torch.Tensor, beta: float) -> dict:
    """Singh et al.'s objective, no teacher: ``{"loss", "ce", "bits"}`` per image (batch means)."""
    ce = F.cross_entropy(logits, labels)
    bits = rate_bits(likelihoods).mean()
    return {"loss": ce + beta * bits, "ce": ce, "bits": bits}
