import pytest
import torch

from minist.models.teacher import STAGES, Teacher, TeacherConfig, build_teacher, from_torchvision_resnet


def test_mini_teacher_stages_and_shapes():
    t = build_teacher("mini").eval()
    x = torch.rand(2, 3, 128, 128)
    f = t.features(x, ("stem", "layer1", "layer2", "layer3", "layer4", "head"))
    assert f["stem"].shape == (2, 32, 32, 32)     # stride 4
    assert f["layer1"].shape == (2, 32, 32, 32)
    assert f["layer2"].shape == (2, 64, 16, 16)
    assert f["layer3"].shape == (2, 128, 8, 8)
    assert f["layer4"].shape == (2, 256, 4, 4)
    assert f["head"].shape == (2, 10)
    assert torch.allclose(t(x), f["head"])
    assert list(STAGES) == [n for n, _ in t.named_children()]


def test_paper_teacher_is_torchvision_resnet50():
    from torchvision.models import resnet50
    ref = resnet50(weights=None).eval()
    t = build_teacher("paper").eval()
    assert sum(p.numel() for p in t.parameters()) == 25_557_032
    t.load_state_dict(from_torchvision_resnet(ref.state_dict()), strict=True)
    x = torch.rand(1, 3, 224, 224)
    f = t.features(x, ("layer1", "head"))
    assert f["layer1"].shape == (1, 256, 56, 56)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(f["head"], ref((x - mean) / std), atol=1e-4)


def test_config_round_trip():
    cfg = TeacherConfig.preset_config("mini", widths=(8, 16, 32, 64), stem_width=8)
    again = TeacherConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert Teacher(again)(torch.rand(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("x, err, match", [
    (torch.rand(3, 128, 128), ValueError, "unsqueeze"),
    (torch.rand(1, 1, 128, 128), ValueError, r"\(B, 3, H, W\)"),
    ((torch.rand(1, 3, 128, 128) * 255).to(torch.int32), TypeError, "float images"),
    (torch.rand(1, 3, 128, 128) * 255, ValueError, "divide by 255"),
    (torch.full((1, 3, 64, 64), float("nan")), ValueError, "NaN or Inf"),
    (torch.rand(1, 3, 16, 16), ValueError, "at least 32"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_bad_images_get_clear_errors(x, err, match):
    with pytest.raises(err, match=match):
        build_teacher("mini")(x)


def test_uint8_images_are_divided_by_255():
    t = build_teacher("mini").eval()
    u8 = (torch.rand(1, 3, 64, 64) * 255).round().to(torch.uint8)
    with torch.no_grad():
        assert torch.equal(t(u8), t(u8.float() / 255))


def test_unknown_preset_and_stage():
    with pytest.raises(ValueError, match="unknown teacher preset"):
        build_teacher("resnet-9000")
    with pytest.raises(ValueError, match="unknown stage"):
        build_teacher("mini").features(torch.rand(1, 3, 64, 64), ("layer7",))


def test_paper_weights_offline_error(monkeypatch):
    import torchvision.models

    from minist.models import teacher as tmod

    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.models, "resnet50", offline)
    with pytest.raises(ConnectionError, match="TORCH_HOME"):
        tmod.load_imagenet_resnet50()
