"""The task-aware stage-1 option (Grad-CAM-weighted distillation) and bf16 training on CPU."""

import pytest
import torch

from minist import losses, pretrained
from minist.config import StudentTrainConfig
from minist.data.synth import FashionOnPhotos
from minist.engine import Engine
from minist.models.student import EntropicStudent
from minist.models.teacher import build_teacher
from minist.recipes import build_student, stage1_optimizers, stage1_step
from minist.utils import fast_bf16, resolve_amp


def test_spatial_weights_of_one_are_the_papers_loss_and_weights_scale_each_position():
    s = {"layer1": torch.rand(2, 4, 8, 8), "layer2": torch.rand(2, 6, 4, 4)}
    t = {"layer1": torch.rand(2, 4, 8, 8), "layer2": torch.rand(2, 6, 4, 4)}
    w = {"layer1": 1.0, "layer2": 0.5}
    plain = losses.feature_distillation(s, t, w)
    assert torch.allclose(losses.feature_distillation(s, t, w, torch.ones(2, 1, 4, 4)), plain)
    left = torch.zeros(2, 1, 8, 8)
    left[..., :4] = 2.0                      # the left half counts double, the right half not at all
    want = 2 * ((s["layer1"] - t["layer1"])[..., :4] ** 2).sum()
    assert torch.allclose(losses.feature_distillation(s, t, {"layer1": 1.0}, left), want)
    assert losses.on_grid(left, (4, 4))[..., :2].eq(2).all() and losses.on_grid(left, (4, 4))[..., 2:].eq(0).all()


def test_saliency_weights_average_one_respect_the_floor_and_find_the_product():
    """On the shipped teacher, Grad-CAM puts more of its weight on the product than the product's area."""
    teacher = pretrained.teacher("mini").float().eval()
    ds = FashionOnPhotos("val", "classification", size=128, val_length=16)
    x = torch.stack([ds[i][0] for i in range(16)])
    y = torch.tensor([ds[i][1] for i in range(16)])
    masks = torch.stack([ds.object_mask(i).float() for i in range(16)])[:, None]
    with torch.no_grad():
        feats = teacher.features(x, losses.LAYERS)
    w = losses.saliency_weights(teacher, feats, y, floor=0.1)
    assert w.shape == (16, 1, 8, 8) and not w.requires_grad
    assert torch.allclose(w.mean(dim=(2, 3)), torch.ones(16, 1), atol=1e-4) and w.min() >= 0.1 - 1e-6
    m = torch.nn.functional.adaptive_avg_pool2d(masks, (8, 8))
    share, area = float((w * m).sum() / w.sum()), float(m.mean())
    assert share > 1.5 * area, (share, area)
    with pytest.raises(ValueError, match="floor"):
        losses.saliency_weights(teacher, feats, y, floor=1.5)
    with pytest.raises(ValueError, match="Grad-CAM"):
        losses.saliency_weights(teacher, feats, y, floor=0.1, at="layer1")


def test_task_aware_stage1_step_trains_and_differs_from_the_papers(tmp_path):
    teacher = build_teacher("mini").eval().requires_grad_(False)
    x, y = torch.rand(4, 3, 128, 128), torch.tensor([0, 1, 2, 3])
    out = {}
    for floor in (None, 0.1):
        torch.manual_seed(0)
        cfg = StudentTrainConfig(beta=0.1, saliency_floor=floor, amp=False)
        s = build_student(cfg, teacher).train()
        opt, aux = stage1_optimizers(s, cfg)
        engine = Engine(s, opt, out=tmp_path, name="t", config={}, aux=aux, progress=False)
        torch.manual_seed(1)
        out[floor] = engine.train_step((x, y), stage1_step(s, teacher, cfg, engine, x.device))
    assert out[None]["bits"] == pytest.approx(out[0.1]["bits"])       # same noise, same latent
    assert out[None]["distortion"] != pytest.approx(out[0.1]["distortion"])


def test_bf16_autocast_leaves_the_device_part_and_the_prior_in_fp32():
    s = EntropicStudent(build_teacher("mini")).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o = s(torch.rand(2, 3, 128, 128))
    assert o["latent"].dtype == torch.float32 and o["likelihoods"].dtype == torch.float32
    assert o["features"]["layer1"].dtype == torch.bfloat16       # the decoder runs in bf16


def test_amp_auto_follows_the_hardware():
    assert resolve_amp(True, "cpu") is True and resolve_amp(False, "cpu") is False
    assert resolve_amp(None, "cpu") == fast_bf16("cpu")
    assert fast_bf16("meta") is False
