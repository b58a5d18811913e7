"""Bottleneck shapes, the student's split, freezing, checkpoints, losses with golden values."""

import pytest
import torch

from minist import losses
from minist.config import BottleneckConfig
from minist.models.bottleneck import Decoder, Encoder
from minist.models.codec import PayloadError
from minist.models.store import load_student, save_student
from minist.models.student import EntropicStudent
from minist.models.teacher import build_teacher


def test_paper_bottleneck_matches_design():
    enc, dec = Encoder(24), Decoder(24, 256)
    assert sum(p.numel() for p in enc.parameters()) == 138_672
    z = enc(torch.rand(1, 3, 224, 224))
    assert z.shape == (1, 24, 55, 55)
    assert dec(z).shape == (1, 256, 56, 56)
    assert all(m.bias is None for m in list(enc) + list(dec) if isinstance(m, torch.nn.Conv2d))


def test_the_paper_bottleneck_is_odd_the_mini_one_is_not():
    """No biases + odd GDN: encoder(−x) = −encoder(x) exactly (sc2bench's); the mini preset's biases break it."""
    x = torch.randn(2, 3, 64, 64)
    paper = BottleneckConfig.preset_config("paper", channels=4, target_channels=8)
    enc, dec = Encoder(4, paper.encoder_widths, paper.bias), Decoder(4, 8, paper.decoder_widths, paper.bias)
    with torch.no_grad():
        assert torch.equal(enc(-x), -enc(x)) and torch.equal(dec(-enc(x)), -dec(enc(x)))
    mini = BottleneckConfig.preset_config("mini")
    enc = Encoder(mini.channels, mini.encoder_widths, mini.bias)
    with torch.no_grad():
        assert not torch.allclose(enc(-x), -enc(x), atol=1e-3)
    assert mini.bias and all(m.bias is not None for m in enc if isinstance(m, torch.nn.Conv2d))


def test_paper_student_builds_on_resnet50():
    s = EntropicStudent(build_teacher("paper"))
    assert s.config == BottleneckConfig(24, 256)
    with pytest.raises(ValueError, match="layer1 width"):
        EntropicStudent(build_teacher("mini"), BottleneckConfig(12, 256))


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    s = EntropicStudent(build_teacher("mini").eval())
    s.update(force=True)
    return s.eval()


def test_split_equals_the_students_own_prediction(student):
    device, server = student.split()
    for _i in range(4):
        x = torch.rand(1, 3, 128, 128)
        payload, bits = device(x, with_rate=True)
        assert payload == device(x) and isinstance(payload, bytes)
        assert bits == pytest.approx(float(student.codec.estimate_bits(student.encode(x))[0]))
        with torch.no_grad():
            assert torch.equal(server(payload), student(x)["logits"])
    with pytest.raises(ValueError, match="one image per message"):
        device(torch.rand(2, 3, 128, 128))
    with pytest.raises(PayloadError):
        server(payload[:-1])


def test_forward_shapes_and_noise_in_training(student):
    x = torch.rand(2, 3, 128, 128)
    o = student(x)
    assert o["latent"].shape == (2, 12, 31, 31) and o["likelihoods"].shape == (2, 12, 31, 31)
    assert {k: tuple(v.shape[1:]) for k, v in o["features"].items()} == {
        "layer1": (32, 32, 32), "layer2": (64, 16, 16), "layer3": (128, 8, 8), "layer4": (256, 4, 4)}
    med = student.codec._get_medians().detach().view(1, -1, 1, 1)
    assert torch.equal(o["latent"], torch.round(student.encode(x) - med) + med)   # eval: rounded
    student.train()
    noisy = student(x)["latent"]
    student.eval()
    assert not torch.equal(noisy, o["latent"])                                     # training: + U(−½, ½)


@pytest.mark.parametrize("codec", ["factorized", "gained", "8bit"])
def test_straight_through_decoder_reads_the_sent_latent_and_trains_the_encoder(codec):
    """Stage 1 with ``straight_through``: the decoder reads the latent the bitstream would carry (for every codec),
    the rate keeps the noisy likelihoods, and the encoder still gets a gradient through the rounding."""
    s = EntropicStudent(build_teacher("mini"), codec=codec)
    s.set_stage(1).train()
    s.straight_through = True
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(0)
    o = s(x)
    with torch.no_grad():
        sent = s.codec(s.encode(x), training=False)[0]
    assert torch.allclose(o["latent"], sent, atol=1e-5)
    torch.manual_seed(0)
    s.straight_through = False
    plain = s(x)["likelihoods"]
    assert plain is o["likelihoods"] is None or torch.equal(plain, o["likelihoods"])   # the same noise, the same rate
    o["features"]["layer1"].square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in s.encoder.parameters())


def test_stage_freezing():
    s = EntropicStudent(build_teacher("mini"))
    s.set_stage(1).train()
    assert all(p.requires_grad for p in s.encoder.parameters())
    assert not any(p.requires_grad for p in s.layer3.parameters())
    assert not s.layer2.training                      # frozen BN statistics in stage 1
    s.set_stage(2).train()
    assert not any(p.requires_grad for p in s.encoder.parameters())
    assert not any(p.requires_grad for p in s.codec.parameters())
    assert all(p.requires_grad for p in s.head.parameters()) and s.layer2.training
    assert s.codec._offset.numel() == 12   # update() ran: the tables exist
    x = torch.rand(2, 3, 128, 128)
    a, b = s(x)["latent"], s(x)["latent"]
    assert torch.equal(a, b)                           # stage 2: rounded latent, no noise


def test_checkpoint_resizes_cdf_tables_and_remaps_old_names(student, tmp_path):
    path = save_student(tmp_path / "s.pt", student, meta={"beta": 0.1})
    loaded, meta = load_student(path)
    x = torch.rand(1, 3, 128, 128)
    assert student.compress(x) == loaded.compress(x) and meta["beta"] == 0.1
    # load into a student whose tables already have another size (plain nn.Module loading would fail)
    other = EntropicStudent(build_teacher("mini"))
    with torch.no_grad():
        other.codec.quantiles[:, 0, 0] -= 50
    other.update(force=True)
    assert other.codec._quantized_cdf.shape != student.codec._quantized_cdf.shape
    other.load_state_dict(student.state_dict())
    assert other.eval().compress(x) == student.compress(x)
    # CompressAI < 1.2 named the prior's parameters _matrix0, _bias0, _factor0, and minist before the codec
    # interface named the prior entropy_bottleneck (every shipped checkpoint does)
    old = {k.replace("matrices.0", "_matrix0").replace("biases.0", "_bias0").replace("factors.0", "_factor0")
           .replace("codec.", "entropy_bottleneck.", 1): v for k, v in student.state_dict().items()}
    assert any(k.startswith("entropy_bottleneck.") for k in old)
    assert any("_matrix0" in k for k in old)
    fresh = EntropicStudent(build_teacher("mini"))
    fresh.load_state_dict(old)
    assert fresh.eval().compress(x) == student.compress(x)


def test_compress_needs_update_and_one_image():
    s = EntropicStudent(build_teacher("mini")).eval()
    with pytest.raises(RuntimeError, match="update"):
        s.split()
    s.update()
    with pytest.raises(ValueError, match="one image"):
        s.compress(torch.rand(3, 3, 128, 128))


# ---- losses: golden values computed by hand -----------------------------------------------------

def test_feature_distillation_golden():
    s = {"layer1": torch.tensor([[1.0, 2.0]]), "layer2": torch.tensor([[0.0, 0.0, 3.0]])}
    t = {"layer1": torch.tensor([[0.0, 0.0]]), "layer2": torch.tensor([[1.0, 1.0, 1.0]])}
    # (1 + 4) + (1 + 1 + 4) = 11 with unit weights; 2·5 + 0.5·6 = 13 with weights
    assert losses.feature_distillation(s, t, {"layer1": 1.0, "layer2": 1.0}).item() == 11.0
    assert losses.feature_distillation(s, t, {"layer1": 2.0, "layer2": 0.5}).item() == 13.0
    with pytest.raises(KeyError, match="layer3"):
        losses.feature_distillation(s, t, {"layer3": 1.0})


def test_rate_golden():
    lik = torch.tensor([[0.5, 0.25], [0.125, 1.0]])     # image 0: 1 + 2 bits, image 1: 3 + 0 bits
    parts = losses.stage1_loss({"layer1": torch.ones(2, 2)}, {"layer1": torch.zeros(2, 2)}, lik, beta=0.5,
                               weights={"layer1": 1.0})
    assert parts["bits"].item() == 6.0 and parts["distortion"].item() == 4.0 and parts["loss"].item() == 7.0
    # end-to-end: batch means, β on the bits of one image: CE(0 logits over 2 classes) = ln 2, 3 bits per image
    e2e = losses.end_to_end_loss(torch.zeros(2, 2), torch.tensor([0, 1]), lik, beta=0.5)
    assert e2e["bits"].item() == 3.0 and e2e["loss"].item() == pytest.approx(float(torch.log(torch.tensor(2.0))) + 1.5)
    assert losses.distill_weights((1, 0, 2, 0.5)) == {"layer1": 1.0, "layer3": 2.0, "layer4": 0.5}


def test_kd_loss_golden():
    s = torch.tensor([[2.0, 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    y = torch.tensor([0])
    ce = torch.log(1 + torch.exp(torch.tensor(-2.0)))               # −log softmax(s)[0]
    ps = torch.softmax(s, 1)
    kl = (0.5 * torch.log(0.5 / ps)).sum()                        # KL(uniform ‖ softmax(s))
    assert torch.allclose(losses.kd_loss(s, t, y, alpha=0.5, tau=1.0), 0.5 * ce + 0.5 * kl)
    assert torch.allclose(losses.kd_loss(s, t, y, alpha=1.0), ce)
    # τ² scaling: with τ = 2 the KL term is 4 · KL(softmax(t/2) ‖ softmax(s/2))
    ps2 = torch.softmax(s / 2, 1)
    kl2 = (0.5 * torch.log(0.5 / ps2)).sum()
    assert torch.allclose(losses.kd_loss(s, t, y, alpha=0.0, tau=2.0), 4 * kl2)


def test_crbq_is_the_same_student_with_the_8bit_codec():
    s = EntropicStudent(build_teacher("mini").eval(), BottleneckConfig(2, 32), codec="8bit").eval()
    device, server = s.split()
    x = torch.rand(1, 3, 128, 128)
    msg = device(x)
    assert len(msg) == s.header_bytes + 2 * 31 * 31 and s.header_bytes == 20 and s.aux_loss() is None
    with torch.no_grad():
        assert torch.allclose(server(msg), s(x)["logits"], atol=1e-5)
    assert s.device_parameters() == sum(p.numel() for p in s.encoder.parameters())


def test_end_to_end_trains_the_encoder_through_the_task_loss():
    """Singh et al.: CE + β·rate with no teacher; the CE must reach the encoder through the noisy latent."""
    teacher = build_teacher("mini")
    s = EntropicStudent(teacher, end_to_end=True).train()
    assert s.encoder.training and s.codec.training and s.layer2.training
    o = s(torch.rand(2, 3, 128, 128))
    torch.nn.functional.cross_entropy(o["logits"], torch.tensor([0, 1])).backward()
    assert s.encoder[0].weight.grad.abs().sum() > 0


def test_bits_on_object_weights_each_position_by_the_mask(student):
    """A mask covering everything gets every bit; an empty one none; the product's mask something in between."""
    from minist.data.synth import FashionOnPhotos
    from minist.evaluate import bits_on_object
    ds = FashionOnPhotos("val", "classification", size=128, val_length=4)
    full = bits_on_object(student, ds, lambda i: torch.ones(128, 128, dtype=torch.bool))
    none = bits_on_object(student, ds, lambda i: torch.zeros(128, 128, dtype=torch.bool))
    real = bits_on_object(student, ds, ds.object_mask)
    assert full["bits_on_object"] == pytest.approx(100.0) and none["bits_on_object"] == 0.0
    assert 0 < real["bits_on_object"] < 100 and 5 < real["object_area"] < 70 and real["n"] == 4
    image, label, mask = ds.render(2, with_mask=True)
    assert (image == ds.render(2)[0]).all() and label == ds.render(2)[1] and mask.any()
