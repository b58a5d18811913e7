"""The rate–distortion study: baselines' bitstreams, the sweep's bookkeeping, the shipped results, the explorer."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from minist import checkpoint, image_formats, pretrained, rd
from minist.config import ImageCodecConfig, StudentTrainConfig, TeacherConfig
from minist.config import mini_val_set as val_set
from minist.evaluate import evaluate_student
from minist.experiments import sweep
from minist.models import image_codecs
from minist.models.codec import PayloadError
from minist.models.crbq import Quantize8Codec
from minist.models.store import load_image_codec, load_student
from minist.models.student import EntropicStudent
from minist.models.teacher import Teacher
from minist.recipes import train_image_codec, train_student, warm_start
from minist.utils import data_dir

TINY = TeacherConfig.preset_config("mini", widths=(8, 16, 16, 16), stem_width=8, image_size=64)


# ---- CR+BQ ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, match", [
    (lambda d: d[:30], "length|checksum"), (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "checksum"),
    (lambda d: b"XX" + d[2:], "not a minist message"), (lambda d: d[:5], "too short"),
    (lambda d: "text", "expected bytes")])
def test_crbq_bad_bytes_raise(damage, match):
    data = Quantize8Codec(2).encode(torch.randn(1, 2, 7, 7))
    with pytest.raises(PayloadError, match=match):
        Quantize8Codec(2).decode(damage(data))
    with pytest.raises(PayloadError, match="2 latent channels, this model 3"):
        Quantize8Codec(3).decode(data)


# ---- training the baselines, warm starts -------------------------------------------------------------
def _tiny_cfg(tmp_path, name, **kw):
    base = dict(channels=4, stage1_epochs=1, stage2_epochs=1, stage1_batch_size=8, stage2_batch_size=8,
                image_size=64, train_length=16, val_length=6, eval_length=4, workers=0, out=str(tmp_path / name))
    return StudentTrainConfig(**{**base, **kw})


def test_baselines_train_and_warm_start(tmp_path):
    torch.manual_seed(0)
    teacher = Teacher(TINY).eval()
    s, meta = train_student(_tiny_cfg(tmp_path, "ent", eval_stage1=True), teacher, progress=False)
    assert meta["stage1_val"]["n"] == 6 and (tmp_path / "ent" / "stage1.pt").is_file()
    # warm start: encoder, prior and decoder come from the checkpoint, layer2 … head from the teacher
    ws, _ = train_student(_tiny_cfg(tmp_path, "ws", init_from=str(tmp_path / "ent" / "stage1.pt"),
                                    stage1_warmup_steps=2, max_steps=1, beta=0.5), teacher, progress=False)
    first, _ = load_student(tmp_path / "ent" / "stage1.pt", teacher)
    assert not torch.equal(ws.encoder[0].weight, first.encoder[0].weight)      # trained on from there
    with pytest.raises(ValueError, match="same C, T and widths"):
        warm_start(EntropicStudent(teacher, type(s.config)(channels=2, target_channels=8), codec="8bit"),
                   tmp_path / "ent" / "stage1.pt")

    crbq, cmeta = train_student(_tiny_cfg(tmp_path, "crbq", method="crbq", channels=2), teacher, progress=False)
    assert cmeta["val"]["header_bytes"] == crbq.header_bytes == 20 and crbq.codec_name == "8bit"
    assert cmeta["val"]["bytes_mean"] == 20 + 2 * 15 * 15
    assert cmeta["val"]["payload_to_estimate"] == 1.0          # raw codes: the estimate is exact
    assert load_student(tmp_path / "crbq" / "student.pt", teacher)[0].codec_name == "8bit"

    e2e, emeta = train_student(_tiny_cfg(tmp_path, "e2e", method="end-to-end", beta=1e-3), teacher,
                               progress=False)
    assert [h["stage"] for h in emeta["history"]] == [1]          # one stage, CE + β·rate
    assert "train_ce" in emeta["history"][0] and emeta["method"] == "end-to-end"
    assert not torch.equal(e2e.layer4[0].conv1.weight, teacher.layer4[0].conv1.weight)   # no teacher weights
    with pytest.raises(ValueError, match="unknown method"):
        train_student(_tiny_cfg(tmp_path, "bad", method="magic"), teacher, progress=False)


# ---- input codecs --------------------------------------------------------------------------------
def test_codec_header_sizes():
    x = torch.rand(3, 128, 128)
    j, w = image_formats.encode(x, "jpeg", 10), image_formats.encode(x, "webp", 10)
    assert 250 < image_formats.header_size(j, "jpeg") < 400
    assert j[-2:] == b"\xff\xd9"
    assert image_formats.header_size(w, "webp") == 30
    with pytest.raises(ValueError):
        image_formats.header_size(b"garbage!" * 4, "jpeg")


@pytest.mark.parametrize("arch", ["factorized", "hyperprior"])
def test_learned_codec_wire_format(arch):
    torch.manual_seed(0)
    m = image_codecs.build(arch, 16, 24).eval()
    m.update(force=True)
    x = torch.rand(3, 64, 64)
    enc = m.compress(x.unsqueeze(0))
    data = image_codecs.encode(m, x.unsqueeze(0))
    assert data[:3] == b"MN" + bytes([image_codecs.CODEC_IDS[arch]])       # minist's magic and a codec id
    assert len(data) == image_codecs.header_bytes(m) + sum(len(s[0]) for s in enc["strings"])
    with pytest.raises(PayloadError, match="checksum"):
        image_codecs.decode(m, data[:-1] + bytes([data[-1] ^ 1]))
    other = "hyperprior" if arch == "factorized" else "factorized"
    with pytest.raises(PayloadError, match="codec"):
        image_codecs.decode(image_codecs.build(other, 16, 24), data)
    x_hat, n = image_codecs.roundtrip(m, x)
    assert n == len(data) and x_hat.shape == x.shape
    ref = m.decompress(enc["strings"], enc["shape"])["x_hat"].clamp(0, 1)[0]
    assert torch.equal(x_hat, ref)


# ---- sweep bookkeeping and shipped results ---------------------------------------------------------
def test_sweep_codec_points_and_collect(tmp_path):
    teacher = pretrained.teacher("mini")
    rows = sweep.run_codecs(tmp_path, teacher, limit=20, qualities=(10,))
    assert {r["method"] for r in rows} == {"jpeg", "webp"} and all(r["n"] == 20 for r in rows)
    assert sweep.run_codecs(tmp_path, teacher, limit=20, qualities=(10,)) == []      # done points are skipped
    dest = sweep.collect(tmp_path, dest=tmp_path / "r.json")
    doc = json.loads(dest.read_text())
    assert doc["teacher_accuracy"] > 80 and len(doc["points"]) == 2
    for p in doc["points"]:
        assert {"method", "knob", "value", "kb_mean", "kb_std", "bpp", "accuracy", "header_bytes",
                "device_parameters"} <= set(p)
        assert p["bpp"] == pytest.approx(p["kb_mean"] * 8192 / 128**2)
    with pytest.raises(FileNotFoundError, match="minist sweep"):
        sweep.collect(tmp_path / "nothing")


def _shipped():
    try:
        return pretrained.results("mini")
    except FileNotFoundError:
        pytest.skip("no shipped results yet")


def test_shipped_results_cover_the_issue():
    res = _shipped()
    methods = {p["method"] for p in res["points"]}
    assert {"entropic", "stage1-only", "crbq", "end-to-end", "factorized", "hyperprior", "jpeg", "webp"} <= methods
    betas = [p["value"] for p in pretrained.points(res, "entropic")]
    assert len(betas) >= 7
    assert set(pretrained.betas("mini")) == set(betas), "every β in the results has its shipped student"
    ent = pretrained.points(res, "entropic")
    assert ent[0]["kb_mean"] < ent[-1]["kb_mean"] and all(0 <= p["accuracy"] <= 100 for p in res["points"])
    by_beta = sorted(ent, key=lambda p: p["value"])
    assert all(a["kb_mean"] > b["kb_mean"] for a, b in zip(by_beta, by_beta[1:])), "larger β → fewer bytes"
    with pytest.raises(KeyError, match="no points"):
        pretrained.points(res, "bpg")


def test_shipped_sweep_student_reproduces_its_point():
    """One swept student (not the default β): its recorded bytes and accuracy, re-measured on 300 images."""
    res = _shipped()
    point = max(pretrained.points(res, "entropic"), key=lambda p: p["value"])
    student, meta = pretrained.student("mini", beta=point["value"], with_meta=True)
    assert meta["val"]["accuracy"] == point["accuracy"] and meta["val"]["kb_mean"] == point["kb_mean"]
    val = val_set()
    assert val.digest() == res["val_set"]["sha256"] == meta["val_set"]["sha256"]
    r = evaluate_student(student, val, limit=300)
    assert abs(r["kb_mean"] - point["kb_mean"]) < 0.15 * point["kb_mean"]


# ---- the explorer and the RD figure ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_results():
    student, meta = pretrained.student("mini", with_meta=True)
    row = lambda m, k, v, kb, acc: {"method": m, "knob": k, "value": v, "kb_mean": kb, "kb_std": 0.1,  # noqa: E731
                                    "bpp": kb * 0.5, "accuracy": acc, "header_bytes": 16, "device_parameters": 0}
    res = {"preset": "mini", "teacher_accuracy": 85.0, "val_set": {"n": 2000, "sha256": "x"},
           "points": [row("entropic", "beta", 0.02, meta["val"]["kb_mean"], meta["val"]["accuracy"]),
                      row("jpeg", "quality", 5, 0.7, 60.0), row("jpeg", "quality", 10, 1.0, 75.0),
                      row("webp", "quality", 5, 0.5, 50.0), row("webp", "quality", 50, 2.0, 80.0)]}
    return res, student


def test_explorer_compute_is_real_bytes_and_draws(fake_results):
    from minist.widgets import Explorer
    res, _ = fake_results
    student = pretrained.variable_student("mini")
    curve = [{"beta": 0.005 * 2 ** k, "accuracy": 80.0 - 3 * k, "kb_mean": 1.0 / 2 ** k} for k in range(8)]
    ex = Explorer(res=res, student=student, curve=curve, images=4)
    r = ex.compute(0.02, 1, 250.0)
    x, y = ex.dataset[1]
    msg = student.compress(x.unsqueeze(0), beta=0.02)
    assert r["bytes"] == len(msg) and r["label"] == int(y)
    assert r["pred"] == int(student.split()[1](msg).argmax())
    assert abs(r["bits_map"].sum() / 8 - (len(msg) - student.header_bytes)) < 0.05 * len(msg)
    assert r["point"]["accuracy"] == pytest.approx(74.0)                    # the curve's point at β = 0.02
    assert r["jpeg"]["quality"] == 10 and r["webp"]["quality"] == 50     # cheapest that reaches 74 %
    assert r["seconds"]["Entropic Student"] == pytest.approx(8 * len(msg) / 250e3)
    assert ex.compute(0.005, 1, 250.0)["jpeg"]["quality"] is None       # 80 %: no JPEG point reaches it
    assert "no JPEG quality of the study reaches 80.0 %" in ex.status(ex.compute(0.005, 1, 250.0))
    png = ex.render_png(0.02, 2, 1000.0)
    assert png[:4] == b"\x89PNG"
    p = ex.panels(r)
    assert all(p[k][:4] == b"\x89PNG" for k in ("image", "bits", "rd")) and "ms" in p["times"]
    assert ex.rd_png(0.02) != ex.rd_png(0.32)                           # the marker moves with β
    with pytest.raises(ValueError, match="outside"):
        ex.compute(0.9, 0, 250.0)
    with pytest.raises(ValueError, match="bandwidth"):
        ex.compute(0.02, 0, 0)


def test_plot_rd_draws_every_method(fake_results):
    import matplotlib
    matplotlib.use("Agg")
    from minist.plots import plot_rd
    res, _ = fake_results
    ax = plot_rd(res)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["Entropic Student", "JPEG", "WebP"] and labels[-1].startswith("teacher")


def test_learned_codec_trains_and_warm_starts(tmp_path):
    base = dict(N=8, M=12, epochs=1, batch_size=4, train_length=8, max_steps=2, image_size=64, crop=32)
    m, meta = train_image_codec(ImageCodecConfig(**base, out=str(tmp_path / "a")), progress=False)
    assert meta["train_images"] == 8 and meta["history"][0]["train_bpp"] > 0
    loaded, _ = load_image_codec(tmp_path / "a" / "codec.pt")
    x = torch.rand(3, 64, 64)
    # the coding tables travel with the checkpoint
    assert torch.equal(image_codecs.roundtrip(loaded, x)[0], image_codecs.roundtrip(m, x)[0])
    train_image_codec(ImageCodecConfig(**base, lmbda=0.05, init_from=str(tmp_path / "a" / "codec.pt"),
                                       out=str(tmp_path / "b")), progress=False)
    with pytest.raises(ValueError, match="same architecture"):
        train_image_codec(ImageCodecConfig(**{**base, "M": 16}, init_from=str(tmp_path / "a" / "codec.pt"),
                                           out=str(tmp_path / "c")), progress=False)


def test_sweep_cli_quick(tmp_path, capsys):
    from minist.cli import main
    assert main(["sweep", "--parts", "codecs,crbq", "--quick", "--out", str(tmp_path)]) == 0
    assert main(["sweep", "--collect", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results_mini.json").read_text())
    assert {p["method"] for p in doc["points"]} == {"jpeg", "webp", "crbq"}
    assert main(["sweep", "--parts", "bogus", "--out", str(tmp_path)]) == 2
    assert "unknown sweep parts" in capsys.readouterr().err


def test_sweep_ships_each_swept_student_in_fp16_and_collects_its_stored_result(tmp_path, monkeypatch):
    """`minist sweep --ship`: every entropic point's student → data/student_mini_beta<β>.pt, fp16 and re-scored
    as stored; shipping again keeps it (same recipe); the collected point carries the stored file's result."""
    out = tmp_path / "sweep"
    sweep.run(parts=("students",), out=out, quick=True, progress=False)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(sweep, "data_dir", lambda: data)
    beta = sweep.BETAS[0]
    dest = data / pretrained.student_file("mini", beta)
    assert sweep.ship_students(out) == [dest] and not list(data.glob("*.tmp"))
    stored = checkpoint.load(dest, kind="student")["meta"]
    assert stored["stored"] == "fp16" and "val_fp32" in stored
    assert sweep.ship_students(out) == []                     # the same run's student is already there
    doc = json.loads(sweep.collect(out, dest=tmp_path / "r.json").read_text())
    (p,) = [p for p in doc["points"] if p["method"] == "entropic"]
    assert p["checkpoint"] == dest.name and p["accuracy"] == stored["val"]["accuracy"]
    assert p["kb_mean"] == stored["val"]["kb_mean"] and p["accuracy_fp32"] == stored["val_fp32"]["accuracy"]
    assert {q["method"] for q in doc["points"]} == {"entropic", "stage1-only"}
    assert 0.0 < p["bits_on_object"] < 100.0 and p["recipe"]["distill_weights"] == [0.0, 1.0, 1.0, 1.0]
    dest.unlink()
    (out / f"student-{beta:g}" / "student.pt").unlink()
    with pytest.raises(FileNotFoundError, match="rerun `minist sweep --parts students`"):
        sweep.ship_students(out)


def test_a_bias_free_checkpoint_warm_starts_a_biased_student_exactly(tmp_path):
    """The paper's bottleneck has no biases; the mini preset's has: a bias-free checkpoint warm-starts a biased
    student with zero biases, the same function."""
    from minist.config import BottleneckConfig
    from minist.models.store import save_student
    teacher = pretrained.teacher("mini")
    free = EntropicStudent(teacher, BottleneckConfig.preset_config("mini", bias=False))
    free.update(force=True)
    save_student(tmp_path / "free.pt", free.eval(), {})
    ws = EntropicStudent(teacher, BottleneckConfig.preset_config("mini"))
    assert ws.config.bias and not free.config.bias
    warm_start(ws, tmp_path / "free.pt")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(ws.encode(x), free.encode(x), atol=1e-5)
        assert all(float(m.bias.abs().max()) == 0.0 for m in ws.encoder if isinstance(m, torch.nn.Conv2d))


def test_the_stage1_loss_ablation_writes_both_losses_points_with_where_their_bits_go(tmp_path):
    """`minist sweep --parts task-aware` (quick): a task-aware point and its stage-1-only point, each with the
    recipe it ran (the paper's four layers, Grad-CAM-weighted); no point file is shared with another loss."""
    sweep.run(parts=("task-aware",), out=tmp_path, quick=True, progress=False)
    points = {p.name: json.loads(p.read_text()) for p in (tmp_path / "points").glob("*.json")}
    assert set(points) == {"task-aware-0.02.json", "task-aware-stage1-only-0.02.json"}
    p = points["task-aware-0.02.json"]
    assert p["recipe"]["saliency_floor"] == 0.1 and p["recipe"]["encoder_widths"] == [24, 16]
    assert p["recipe"]["distill_weights"] == [1.0, 1.0, 1.0, 1.0]
    assert 0.0 < p["bits_on_object"] < 100.0


def test_rate_ratio_compares_two_curves_at_equal_accuracy():
    res = {"points": [
        {"method": "a", "kb_mean": 0.5, "accuracy": 80.0}, {"method": "a", "kb_mean": 1.0, "accuracy": 90.0},
        {"method": "b", "kb_mean": 1.0, "accuracy": 80.0}, {"method": "b", "kb_mean": 4.0, "accuracy": 90.0}]}
    rows = rd.rate_ratio(res, "a", "b")
    assert [r["ratio"] for r in rows] == [pytest.approx(0.5), pytest.approx(0.25)]
    assert rd.rate_ratio(res, "a", "b", accuracies=[95.0])[0]["ratio"] is None      # neither reaches it
    assert rd.rate_ratio(res, "a", "b", accuracies=[70.0])[0]["ratio"] is None      # below b's measured range
    assert rd.rate_ratio(res, "b", "a", accuracies=[75.0])[0]["ratio"] is None      # below b's cheapest point


def test_intervals_and_the_paired_test_against_hand_values():
    lo, hi = rd.accuracy_interval(90, 100)          # Wilson: (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)
    z = 1.959963984540054
    centre, half = (0.9 + z * z / 200) / (1 + z * z / 100), z * (0.09 / 100 + z * z / 40000) ** 0.5 / (1 + z * z / 100)
    assert (lo, hi) == pytest.approx((100 * (centre - half), 100 * (centre + half)), abs=1e-9)
    a = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1] * 10, dtype=bool)
    b = a.copy()
    b[[3, 6]] = True            # b gets two more right
    b[[0]] = False              # and one fewer
    t = rd.mcnemar(a, b)
    assert (t["only_a"], t["only_b"], t["difference_pt"]) == (1, 2, -1.0)
    assert t["p_value"] == pytest.approx(1.0)        # exact binomial: 1 of 3 discordant pairs is no evidence
    assert rd.unpack_correct(rd.pack_correct(a), len(a)).tolist() == a.tolist()
    with pytest.raises(ValueError, match="same images"):
        rd.mcnemar(a, b[:50])
    d = a.astype(float) - b.astype(float)          # the paired interval: mean ± z · sd / sqrt(n) of the differences
    half = 100 * z * d.std() / len(d) ** 0.5
    assert t["ci95_pt"] == pytest.approx([-1.0 - half, -1.0 + half], abs=1e-4)


def _reach_res(n=400, seed=0):
    """A made-up test-split file: a teacher at 90 %, a student and a codec whose accuracy rises with bytes."""
    rng = np.random.default_rng(seed)
    teacher = rng.random(n) < 0.90
    point = lambda method, kb, acc: {"method": method, "kb_mean": kb, "accuracy": 100 * float(np.mean(hits := (
        teacher & (rng.random(n) < acc / 0.9)))), "correct_bits": rd.pack_correct(hits)}
    pts = [point("entropic", kb, a) for kb, a in ((0.2, 0.80), (0.4, 0.88), (0.8, 0.895))]
    pts += [point("webp", kb, a) for kb, a in ((0.5, 0.75), (1.0, 0.85), (2.0, 0.895))]
    return {"n": n, "teacher_accuracy": 100 * teacher.mean(), "teacher_correct_bits": rd.pack_correct(teacher),
            "points": pts}


def test_the_bootstrap_interval_of_bytes_at_teacher_minus_one_holds_the_point_and_says_when_undefined():
    res = _reach_res()
    out = rd.bootstrap_reach(res, rivals=("webp",), draws=200)
    assert out["kb"] == pytest.approx(rd.bytes_to_reach(res, 1.0, ["entropic"])[0]["kb"])
    assert out["kb_rival"] == pytest.approx(rd.bytes_to_reach(res, 1.0, ["webp"])[0]["kb"])
    assert out["ratio"] == pytest.approx(out["kb_rival"] / out["kb"])
    for k in ("kb", "kb_rival", "ratio"):
        if out[f"{k}_ci95"] is not None:
            lo, hi = out[f"{k}_ci95"]
            assert lo <= out[k] <= hi and lo < hi
        assert 0 < out[f"{k}_reached"] <= 1
    never = rd.bootstrap_reach(res, rivals=("webp",), drop=-5.0, draws=50)    # a target above every point
    assert never["kb"] is None and never["kb_ci95"] is None and never["kb_reached"] == 0
    with pytest.raises(ValueError, match="no 'cr-bq' points"):
        rd.bootstrap_reach(res, method="cr-bq")


def test_one_colour_per_method_and_a_name_for_every_shipped_method():
    from minist.plots import METHOD_COLORS, METHOD_LABELS
    colours = list(METHOD_COLORS.values())
    assert len(set(c.lower() for c in colours)) == len(colours), "two names share a colour"
    shipped = {p["method"] for p in pretrained.results("mini")["points"] + pretrained.photo_results()["points"]}
    assert shipped <= set(METHOD_LABELS), shipped - set(METHOD_LABELS)
    assert all(METHOD_LABELS[m] in METHOD_COLORS for m in shipped)


def test_versus_codecs_gives_the_codec_every_byte_and_pairs_the_same_images():
    n = 10
    bits = lambda hits: rd.pack_correct(np.array(hits, dtype=bool))
    student = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    res = {"n": n, "points": [
        {"method": "entropic", "kb_mean": 0.5, "accuracy": 80.0, "correct_bits": bits(student)},
        {"method": "entropic", "kb_mean": 9.0, "accuracy": 80.0, "correct_bits": bits(student)},
        {"method": "jpeg", "kb_mean": 0.6, "accuracy": 50.0, "correct_bits": bits([1] * 5 + [0] * 5)},
        {"method": "webp", "kb_mean": 0.4, "accuracy": 60.0, "correct_bits": bits([1] * 6 + [0] * 4)},
        {"method": "webp", "kb_mean": 0.8, "accuracy": 70.0, "correct_bits": bits([0, 0] + [1] * 7 + [0])},
        {"method": "webp", "kb_mean": 1.0, "accuracy": 90.0, "correct_bits": bits([1] * 9 + [0])}]}
    low, high = rd.versus_codecs(res)
    # at 0.5 KB: JPEG's cheapest file ≥ 0.5 KB is q(0.6 KB, 50 %), WebP's is 0.8 KB (70 %): the better one is the rival
    assert (low["rival"]["method"], low["rival"]["kb_mean"]) == ("webp", 0.8)
    assert low["envelope"] == pytest.approx(60.0 + (70.0 - 60.0) * np.log(0.5 / 0.4) / np.log(0.8 / 0.4))
    # paired on the same images: the student alone is right on images 0 and 1, the rival alone on image 8
    assert (low["paired"]["only_a"], low["paired"]["only_b"], low["paired"]["difference_pt"]) == (2, 1, 10.0)
    assert high["rival"] is None and high["paired"] is None and high["envelope"] is None   # past every codec file


def test_an_rd_figure_refuses_points_scored_on_other_images_and_names_what_it_leaves_below():
    import matplotlib
    matplotlib.use("Agg")
    from minist.plots import plot_rd
    res = {"teacher_accuracy": 90.0, "n": 100, "points": [
        {"method": "entropic", "knob": "beta", "value": 0.02, "kb_mean": 0.5, "accuracy": 88.0, "n": 100},
        {"method": "entropic", "knob": "beta", "value": 0.64, "kb_mean": 0.02, "accuracy": 10.0, "n": 100},
        {"method": "jpeg", "knob": "quality", "value": 10, "kb_mean": 1.0, "accuracy": 89.0, "n": 50}]}
    with pytest.raises(ValueError, match="different images"):
        plot_rd(res)
    ax = plot_rd(res, methods=["entropic"])
    lo, hi = ax.get_ylim()
    assert 75.0 < lo < 88.0 and hi > 90.0                      # the axis spans the comparison, not the collapse
    notes = [t.get_text() for t in ax.texts if t.get_text().startswith("below the axis")]
    assert notes and "β=0.64: 10.0 %" in notes[0]


def test_merge_puts_new_codec_points_into_the_shipped_results(tmp_path):
    """``minist sweep --parts codecs --qualities 0,1 --merge``: a point of the same method and quality is replaced,
    every other point is kept, and a file measured on another val set is refused."""
    dest = tmp_path / "results_mini.json"
    shutil.copyfile(data_dir() / "results_mini.json", dest)
    before = json.loads(dest.read_text())["points"]
    (tmp_path / "points").mkdir()
    webp = next(p for p in before if p["method"] == "webp")
    (tmp_path / "points" / "webp-x.json").write_text(json.dumps({**webp, "accuracy": 1.0}))
    (tmp_path / "points" / "webp-y.json").write_text(json.dumps({**webp, "value": 99, "accuracy": 2.0}))
    _, new = sweep.merge(tmp_path, dest=dest)
    after = json.loads(dest.read_text())["points"]
    assert len(new) == 2 and len(after) == len(before) + 1
    same = [p for p in after if p["method"] == "webp" and p["value"] == webp["value"]]
    assert [p["accuracy"] for p in same] == [1.0]
    assert [p for p in after if p["method"] != "webp"] == [p for p in before if p["method"] != "webp"]
    doc = json.loads(dest.read_text())
    doc["val_set"]["sha256"] = "0" * 64
    dest.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="another val set"):
        sweep.merge(tmp_path, dest=dest)


def test_recalibrating_the_tails_batchnorm_changes_its_statistics_and_nothing_else():
    from minist.data.synth import FashionOnPhotos
    from minist.experiments import ceiling
    student = pretrained.student("mini", beta=0.32)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    images = FashionOnPhotos("train", epoch=10_000, train_length=8)
    s = ceiling.recalibrate_tail(student, images, batch_size=4)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items()), "the original changed"
    changed = {k for k, v in s.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("layer2.", "layer3.", "layer4.")) and "running_" in k or
                           k.endswith("num_batches_tracked") for k in changed), changed
    x = images[0][0][None]
    assert s.split()[0](x) == student.split()[0](x)                # the same bytes
    hits = ceiling.correct_on(s, images)
    assert hits.shape == (8,) and hits.dtype == bool


def test_the_bytes_ratio_by_target_interpolates_each_side_and_marks_a_student_curve_that_starts_above_it():
    """Teacher 90 %: a codec climbing 80 → 89 % over 1 → 4 KB, a student 86 → 88 % over 0.5 → 1 KB."""
    pt = lambda m, kb, acc: {"method": m, "knob": "q", "value": kb, "kb_mean": kb, "accuracy": acc}  # noqa: E731
    res = {"teacher_accuracy": 90.0, "points": [pt("jpeg", 1.0, 80.0), pt("jpeg", 4.0, 89.0),
                                                 pt("entropic", 0.5, 86.0), pt("entropic", 1.0, 88.0)]}
    rows = {r["drop"]: r for r in rd.ratio_by_target(res, ["entropic"], drops=(1, 3, 6), rivals=("jpeg",))}
    assert rows[1]["kb_rival"] == pytest.approx(4.0) and rows[1]["students"]["entropic"] == {
        "kb": None, "ratio": None, "below_range": False}                 # 89 % is past the student's best
    kb = math.exp(math.log(0.5) + 0.5 * math.log(2.0))                   # 87 % halfway between its points, log KB
    rival = math.exp(7 / 9 * math.log(4.0))
    assert rows[3]["students"]["entropic"]["kb"] == pytest.approx(kb)
    assert rows[3]["students"]["entropic"]["ratio"] == pytest.approx(rival / kb)
    assert not rows[3]["students"]["entropic"]["below_range"]
    low = rows[6]["students"]["entropic"]                                # 84 %: its cheapest point already has it
    assert low["kb"] == 0.5 and low["below_range"]
    assert low["ratio"] == pytest.approx(math.exp(4 / 9 * math.log(4)) / 0.5)
    with pytest.raises(ValueError, match="no points for \\['webp'\\]"):
        rd.ratio_by_target(res, ["entropic"], rivals=("jpeg", "webp"))
