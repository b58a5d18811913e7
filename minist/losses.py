"""Every training objective of minist (docs/design.md §3; Matsubara et al., WACV 2022, Eqs. 2–4).

Stage 1:      L = Σ_batch [ Σ_j w_j ‖S_j − T_j‖²  +  β · bits ]       (sum over the batch, the paper's)
  task-aware: L = Σ_batch [ Σ_j w_j Σ_p a(p) ‖S_j(p) − T_j(p)‖²  +  β · bits ]   (a: the teacher's Grad-CAM,
              mean 1 per image, background down to a floor; :func:`saliency_weights`; not in the paper)
Stage 2:      L = α · CE(s, y) + (1 − α) · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))
End-to-end:   L = mean_batch [ CE(s, y) + β · bits ]                    (Singh et al., ICIP 2020)
Task stage 2: L = task loss + γ · Σ_l ‖P_l − P*_l‖² / ‖P*_l‖²   (P: the FPN levels the head reads, P*: the task
              teacher's on the same scenes; γ unset is the plain recipe; :func:`pyramid_distillation`; not in the paper)

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


def feature_distillation(student: dict, teacher: dict, weights: dict | None = None,
                         spatial: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_j w_j ‖S_j − T_j‖², sum reduction over every element of the batch (the paper's setting).

    ``spatial`` (B, 1, h, w): a weight per image position (:func:`saliency_weights`), resampled to each layer's
    grid and multiplied into its squared error; None: every position counts the same (the paper)."""
    weights = distill_weights() if weights is None else weights
    missing = [k for k in weights if k not in student or k not in teacher]
    if missing:
        raise KeyError(f"features {missing} are missing; student has {sorted(student)}, teacher {sorted(teacher)}")
    if spatial is None:
        return sum(w * F.mse_loss(student[k], teacher[k].detach(), reduction="sum") for k, w in weights.items())
    return sum(w * (F.mse_loss(student[k], teacher[k].detach(), reduction="none")
                    * on_grid(spatial, student[k].shape[-2:])).sum() for k, w in weights.items())


def pyramid_distillation(student: dict, teacher: dict) -> torch.Tensor:
    """Σ_l ‖S_l − T_l‖² / ‖T_l‖² over the levels of two feature pyramids (the error relative to the teacher's own
    energy, so levels of any scale count alike, and γ = 1 weighs it like one more task-loss term)."""
    if list(student) != list(teacher):
        raise KeyError(f"the pyramids' levels differ: student {list(student)}, teacher {list(teacher)}")
    # feature_distillation with each level weighted by 1 / its energy
    return feature_distillation(student, teacher, {k: 1 / t.detach().pow(2).sum().clamp_min(1e-12)
                                                   for k, t in teacher.items()})


def on_grid(weights: torch.Tensor, size) -> torch.Tensor:
    """A (B, 1, h, w) weight map on another grid: bilinear up, area-averaged down (the mean stays ≈ the same)."""
    size = tuple(int(s) for s in size)
    if tuple(weights.shape[-2:]) == size:
        return weights
    if size[0] >= weights.shape[-2]:
        return F.interpolate(weights, size=size, mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(weights, size)


def saliency_weights(teacher, teacher_feats: dict, labels: torch.Tensor, floor: float,
                     at: str = "layer3", power: float = 2.0) -> torch.Tensor:
    """Where the teacher looks for the true class: Grad-CAM (Selvaraju et al., ICCV 2017) at ``at``, as weights.

    cam = ReLU(Σ_c α_c A_c)^power, α_c = mean over positions of ∂ logit_y / ∂ A_c; then a = floor + (1 − floor) ·
    cam / mean(cam), so every image's weights average 1 (β keeps its meaning) and no position drops below ``floor``.
    On 64 val images of the shipped mini teacher the products cover 19.7 % of the area and hold 44 % of the plain
    map's weight at layer3 (39 % at layer4, 33 % at layer2); squared (``power=2``, the default) 57 %, cubed 64 %
    (``python tests/helpers/saliency_share.py``; the 89.10 % teacher before it: 46, 61, 68 %).
    FrankenSplit (Furutanpey et al., 2024) weights its head distillation by the teacher's saliency likewise.
    Returns (B, 1, h, w) on ``at``'s grid, without gradient."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"the saliency floor must lie in [0, 1], got {floor}")
    if at not in LAYERS[1:]:
        raise ValueError(f"Grad-CAM is taken at one of {LAYERS[1:]}, got {at!r}")
    with torch.enable_grad():
        a = teacher_feats[at].detach().float().requires_grad_(True)
        h = a
        for name in LAYERS[LAYERS.index(at) + 1:] + ("head",):
            h = getattr(teacher, name)(h)
        (grad,) = torch.autograd.grad(h.float().gather(1, labels.view(-1, 1)).sum(), a)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a.detach()).sum(dim=1, keepdim=True)) ** power
    mean = cam.mean(dim=(2, 3), keepdim=True)
    cam = torch.where(mean > 0, cam / mean.clamp_min(1e-12), torch.ones_like(cam))   # no evidence: uniform
    return floor + (1.0 - floor) * cam


def stage1_loss(student_feats: dict, teacher_feats: dict, likelihoods: torch.Tensor | None, beta,
                weights: dict | None = None, spatial: torch.Tensor | None = None) -> dict:
    """Stage-1 objective and its batch totals ``{"loss", "distortion", "bits"}`` (no prior, e.g. CR+BQ: bits 0).
    ``beta``: one number, or one per image (B,) (a variable-rate student: Σ_i β_i · bits_i).
    ``spatial``: the task-aware per-position weights (:func:`saliency_weights`), or None (the paper's loss)."""
    distortion = feature_distillation(student_feats, teacher_feats, weights, spatial)
    if likelihoods is None:
        zero = distortion.new_zeros(())
        return {"loss": distortion, "distortion": distortion, "bits": zero}
    bits = rate_bits(likelihoods)
    return {"loss": distortion + (beta * bits).sum(), "distortion": distortion, "bits": bits.sum()}


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
