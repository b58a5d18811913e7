import pytest
import torch

from minist import image_formats, pretrained
from minist.cli import main
from minist.evaluate import input_codec_sizes, split_point_sizes
from minist.models.teacher import build_teacher


def test_codec_round_trips_and_sizes():
    x = torch.rand(3, 64, 64)
    for fmt in ("jpeg", "webp", "png"):
        y, n = image_formats.roundtrip(x, fmt, 90)
        assert y.shape == x.shape and n == len(image_formats.encode(x, fmt, 90))
    png, _ = image_formats.roundtrip(x, "png")
    assert torch.allclose(png, (x * 255).round() / 255, atol=1e-6)   # PNG is lossless
    assert len(image_formats.encode(x, "jpeg", 10)) < len(image_formats.encode(x, "jpeg", 95))


@pytest.mark.parametrize("args, match", [
    (dict(x=torch.rand(3, 8, 8), fmt="gif"), "unknown format"),
    (dict(x=torch.rand(3, 8, 8), quality=0), "jpeg quality must be in 1..100"),
    (dict(x=torch.rand(3, 8, 8), fmt="webp", quality=-1), "webp quality must be in 0..100"),
    (dict(x=torch.rand(1, 3, 8, 8)), r"\(3, H, W\)"),
])
def test_codec_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        image_formats.encode(**args)


def test_split_point_sizes_count_values():
    t = build_teacher("mini").eval()
    rows = {r["split"]: r for r in split_point_sizes(t, torch.rand(3, 128, 128))}
    assert rows["input"]["values"] == 3 * 128 * 128
    assert rows["layer1"]["values"] == 32 * 32 * 32 and rows["layer1"]["float32"] == 4 * 32 * 32 * 32
    assert rows["layer4"]["8-bit"] == 256 * 4 * 4
    sizes = input_codec_sizes([torch.rand(3, 64, 64)], qualities=(50,))
    assert sizes[0]["bytes"] == 3 * 64 * 64 and {r["codec"] for r in sizes} >= {"JPEG", "WebP", "PNG"}


def test_cli_errors_are_clear(capsys):
    assert main(["data", "show", "--task", "captioning", "--out", "/tmp/x.png"]) == 2
    assert "unknown task" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-teacher", "--epochs", "many"])


def test_cli_data_show(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "--task", "detection", "--n", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_codec_accuracy_batched_equals_one_by_one():
    from minist.data.synth import FashionOnPhotos
    from minist.evaluate import codec_accuracy
    torch.manual_seed(0)
    t = build_teacher("mini", widths=(8, 16, 16, 16), stem_width=8).eval()
    ds = FashionOnPhotos("val", val_length=12, size=64)
    acc, nbytes = codec_accuracy(t, ds, "jpeg", 50, batch_size=5)
    one = [int(t(image_formats.roundtrip(ds[i][0], "jpeg", 50)[0][None]).argmax()) == ds[i][1] for i in range(12)]
    sizes = [len(image_formats.encode(ds[i][0], "jpeg", 50)) for i in range(12)]
    assert acc == 100.0 * sum(one) / 12 and nbytes == sum(sizes) / 12


def _table(out: str) -> dict:
    """The rows ``what | value`` of the benchmark tables in ``out``."""
    return {k.strip(): v.strip() for k, _, v in (ln.partition(" | ") for ln in out.splitlines() if " | " in ln)}


def test_student_benchmark_prints_what_it_measured(capsys):
    """`minist bench student --quick`: every decode exact, payload bits ≈ Σ −log2 p, accuracy that of real bytes."""
    assert main(["bench", "student", "--quick"]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows["decoded latent == rounded latent, every element"] == "100/100 images"
    assert 0.98 < float(rows["payload bits / estimated bits Σ−log2 p, mean"]) < 1.1
    assert rows["our header + CRC per message"] == "16 B"
    acc = float(rows[f"student β = {pretrained.default_beta('mini'):g}: accuracy at real bytes"].rstrip(" %"))
    assert 80 < acc < 95 and rows["stage 1 step, CPU"].split()[1] == "img/s"


def test_rd_benchmark_reports_the_shipped_study(capsys):
    """`minist bench rd`: bytes to reach teacher − 1 pt, per method, as :func:`minist.rd.bytes_to_reach` computes."""
    from minist import pretrained, rd
    from minist.plots import METHOD_LABELS
    assert main(["bench", "rd"]) == 0
    rows = _table(capsys.readouterr().out)
    for r in rd.bytes_to_reach(pretrained.results("mini"), 1.0):
        if r["method"].endswith("-stage1-only"):          # the ablation's arms after stage 1: not in this table
            continue
        shown = rows[METHOD_LABELS.get(r["method"], r["method"])]
        assert shown.startswith("never" if r["kb"] is None else f"{r['kb']:.3f} KB"), (r["method"], shown)


def test_photo_benchmark_gives_each_crossing_its_bootstrap(capsys):
    """`minist bench photos`: every student that reaches teacher − 1 pt on the shipped real-photo study gets a line
    that resamples the photos (:func:`minist.rd.bootstrap_reach`), with its share of draws or its interval."""
    from minist import pretrained, rd
    from minist.plots import METHOD_LABELS
    assert main(["bench", "photos"]) == 0
    rows = _table(capsys.readouterr().out)
    res = pretrained.photo_results()
    students = [r["method"] for r in rd.bytes_to_reach(res, 1.0) if r["kb"] is not None
                and r["method"] not in ("jpeg", "webp")]
    shown = [k for k in rows if k.startswith("the same, resampling the photos: ")]
    assert len(shown) == len(students)
    for method in students:
        r = rd.bootstrap_reach(res, method)
        line = rows[f"the same, resampling the photos: {METHOD_LABELS.get(method, method)}"]
        assert line.startswith(f"{r['kb']:.3f} KB") and f"ratio {r['ratio']:.3f}×" in line, line
        assert ("reached in" in line) == (r["kb_ci95"] is None)
    # the ratio by target: one row per target, the better codec's KB and each headline student's ratio
    from minist.experiments.photos import HEADLINE_STUDENTS
    for r in rd.ratio_by_target(res, HEADLINE_STUDENTS):
        line = rows[f"teacher − {r['drop']:g} pt = {r['target_accuracy']:.2f} %"]
        assert line.startswith(f"JPEG/WebP {r['kb_rival']:.3f} KB"), line
        for m, v in r["students"].items():
            name = METHOD_LABELS.get(m, m)
            assert (f"{name} never" in line) if v["kb"] is None else (f"{v['ratio']:.2f}×)" in line), (name, line)


def test_against_codecs_gives_the_codec_twice_the_bytes():
    from minist import rd
    res = {"points": [{"method": "entropic", "value": 0.16, "kb_mean": 0.30, "accuracy": 85.0},
                      {"method": "entropic", "value": 0.02, "kb_mean": 1.00, "accuracy": 88.0},
                      {"method": "entropic", "value": 1.28, "kb_mean": 0.05, "accuracy": 40.0},
                      {"method": "jpeg", "value": 5, "kb_mean": 0.60, "accuracy": 82.0},
                      {"method": "webp", "value": 50, "kb_mean": 1.90, "accuracy": 89.0},
                      {"method": "stage1-only", "value": 0.16, "kb_mean": 0.25, "accuracy": 99.0}]}
    rows = {r["value"]: r for r in rd.against_codecs(res, 2.0)}
    assert rows[0.16]["rival"]["value"] == 5 and rows[0.16]["wins"] is True        # JPEG q5 at 0.60 ≤ 2 × 0.30
    assert rows[0.02]["rival"]["value"] == 50 and rows[0.02]["wins"] is False      # WebP at 1.90 ≤ 2 × 1.00
    assert rows[1.28]["rival"] is None and rows[1.28]["wins"] is None and rows[1.28]["cheapest"]["value"] == 5




def test_training_speed_benchmark_measures_every_step_through_the_engine():
    from minist.experiments.bench import _train_rates
    tiny = dict(widths=(8, 16, 16, 16), stem_width=8)
    for amp in (False, True):       # bf16 autocast covers the teacher; the student's rate term stays fp32
        rates = _train_rates(tiny, threads=1, amp=amp, channels_last=amp, batch=2, steps=1)
        assert set(rates) == {"teacher training step", "teacher forward", "stage 1 step", "stage 2 step"}
        assert all(v > 0 for v in rates.values())


def test_photo_benchmark_reads_a_study_without_the_ablation_arms(capsys, monkeypatch):
    """A new user's `minist photos all` trains no ablation arm: `minist bench photos` still prints its study, the
    ratio by target over the students it has."""
    from minist import pretrained
    res = pretrained.photo_results()
    plain = {**res, "points": [p for p in res["points"] if p["method"] in
                               ("entropic", "stage1-only", "variable-rate", "variable-rate-stage1-only", "jpeg",
                                "webp")]}
    monkeypatch.setattr(pretrained, "photo_results", lambda: plain)
    assert main(["bench", "photos"]) == 0
    rows = _table(capsys.readouterr().out)
    line = rows[f"teacher − 1 pt = {res['teacher_accuracy'] - 1:.2f} %"]
    assert "Entropic Student never" in line and "straight-through" not in line
