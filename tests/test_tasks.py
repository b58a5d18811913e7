"""Detection and segmentation on the shared bitstream (issue 5): models, split, frozen encoder, metrics."""

from __future__ import annotations

import json

import pytest
import torch

from minist import evaluate, pretrained
from minist.config import TaskTrainConfig
from minist.experiments import task_study
from minist.models import tasks as T
from minist.models.codec import PayloadError
from minist.models.halves import analysis
from minist.models.store import load_task_student, load_task_teacher, save_task
from minist.recipes import train_task_student, train_task_teacher
from minist.utils import data_dir

SMALL = dict(max_steps=2, train_length=16, batch_size=4, val_length=8, stage1_epochs=1, stage2_epochs=1, epochs=1)


@pytest.fixture(scope="module")
def teacher():
    return pretrained.teacher("mini")


@pytest.fixture(scope="module")
def student():
    return pretrained.student("mini", beta=0.32)


@pytest.fixture(scope="module")
def scenes():
    return TaskTrainConfig(val_length=8).val_scenes()


@pytest.mark.parametrize("task", T.TASKS)
def test_task_teacher_trains_only_fpn_and_head(task, teacher):
    net = T.build_task_teacher(task, teacher)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable <= {"backbone.fpn", "head.0", "head.1", "head.4", "head.classification_head",
                         "head.regression_head", "model.head", "model.backbone"}
    assert not any(p.requires_grad for p in net.backbone.front.parameters())
    assert not any(p.requires_grad for p in net.backbone.layer4.parameters())
    # the backbone is the classification teacher's: same layer1 features
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(net.backbone.front(x), teacher.features(x, ("layer1",))["layer1"])


@pytest.mark.parametrize("task", T.TASKS)
def test_server_from_bytes_equals_the_students_own_prediction(task, teacher, student, scenes):
    net = T.build_task_student(T.build_task_teacher(task, teacher), student).eval()
    x, _ = scenes[0]
    device_part, _ = student.split()
    payload = device_part(x.unsqueeze(0))          # the classification student's bytes, unchanged
    from_bytes = T.TaskServer(net)(payload)
    with torch.no_grad():
        direct = net([x])[0]
    if task == "detection":
        assert set(from_bytes) == {"boxes", "scores", "labels"}
        assert torch.allclose(from_bytes["boxes"], direct["boxes"], atol=1e-4)
        assert torch.equal(from_bytes["labels"], direct["labels"])
    else:
        assert from_bytes["semantic"].shape == (128, 128)
        assert torch.equal(from_bytes["semantic"], direct["semantic"])


def test_task_server_rejects_bad_bytes(teacher, student):
    net = T.build_task_student(T.build_task_teacher("segmentation", teacher), student)
    with pytest.raises(PayloadError):
        T.TaskServer(net)(b"not a minist payload")
    with pytest.raises(TypeError, match="task student"):
        T.TaskServer(T.build_task_teacher("segmentation", teacher))


@pytest.mark.parametrize("task", T.TASKS)
def test_task_student_training_keeps_payloads_bit_identical(task, teacher, student, scenes, tmp_path):
    cfg = TaskTrainConfig(task=task, beta=0.32, out=str(tmp_path), **SMALL)
    tnet, _ = train_task_teacher(cfg, teacher, progress=False)
    enc_before = {k: v.clone() for k, v in student.encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in student.decoder.state_dict().items()}
    snet, meta = train_task_student(cfg, tnet, student, progress=False, val_set=scenes)
    assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    assert all(torch.equal(v, student.encoder.state_dict()[k]) for k, v in enc_before.items())
    # the task's decoder is its own copy: trained, while the classification student's stays as it was
    assert all(torch.equal(v, student.decoder.state_dict()[k]) for k, v in dec_before.items())
    assert not all(torch.equal(v, snet.backbone.front.decoder.state_dict()[k]) for k, v in dec_before.items())
    # a changed encoder would change the bytes, and the digest sees it
    other = pretrained.student("mini", beta=0.32)
    with torch.no_grad():
        other.encoder[0].weight.mul_(1.5)
    assert evaluate.payload_digest(other, scenes) != meta["payload_digest"]["before"]
    # checkpoints hold only what the task trained, in fp16; they load back to the same predictions
    path = save_task(tmp_path / "s.pt", snet, meta)
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in sd} == {"decoder", "fpn", "head"}
    tpath = save_task(tmp_path / "t.pt", tnet, {}, half=False)
    tnet2, _ = load_task_teacher(tpath, teacher)
    snet2, _ = load_task_student(path, tnet2, student)
    x = scenes[1][0]
    with torch.no_grad():
        a, b = snet([x])[0], snet2([x])[0]
    key = "boxes" if task == "detection" else "semantic"
    if task == "segmentation":
        assert (a[key] == b[key]).float().mean() > 0.99        # fp16 weights: a few border pixels may flip
    else:
        assert a[key].shape[1] == 4 and b[key].shape[1] == 4
    with pytest.raises(ValueError, match="task-student"):
        load_task_teacher(path, teacher)
    other_task = "segmentation" if task == "detection" else "detection"
    with pytest.raises(ValueError, match="is a"):
        load_task_student(path, T.build_task_teacher(other_task, teacher), student)


def test_refine_blocks_start_as_the_decoder_train_ship_and_serve_the_same_bytes(teacher, student, scenes, tmp_path):
    """``refine_blocks``: residual 3×3 blocks after a task student's decoder, on the server. A new block is the
    identity; training updates them (stage 1 and 2) and leaves the payloads alone; the checkpoint holds them and
    says how many, and the bytes path (TaskServer) runs them."""
    tnet = T.build_task_teacher("segmentation", teacher)
    plain, refined = T.build_task_student(tnet, student), T.build_task_student(tnet, student, refine=2)
    x = scenes[0][0]
    with torch.no_grad():
        assert torch.equal(plain.backbone.front(x[None]), refined.backbone.front(x[None]))
    with pytest.raises(ValueError, match="residual blocks"):
        T.build_task_student(tnet, student, refine=-1)
    cfg = TaskTrainConfig(task="segmentation", beta=0.32, out=str(tmp_path), refine_blocks=2, **SMALL)
    snet, meta = train_task_student(cfg, tnet, student, progress=False, val_set=scenes)
    assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    trained = snet.backbone.front.refine
    assert len(trained) == 2 and any(b.body[-1].weight.abs().sum() > 0 for b in trained)   # no longer the identity
    path = save_task(tmp_path / "r.pt", snet, meta, half=False)
    ck = torch.load(path, weights_only=True)
    assert ck["config"]["refine"] == 2 and {k.split(".")[0] for k in ck["state_dict"]} == {"decoder", "refine", "fpn",
                                                                                          "head"}
    back, _ = load_task_student(path, tnet, student)
    device_part, _ = student.split()
    with torch.no_grad():
        direct = back([x])[0]["semantic"]
        assert torch.equal(direct, snet([x])[0]["semantic"])
    assert torch.equal(T.TaskServer(back)(device_part(x.unsqueeze(0)))["semantic"], direct)
    # a checkpoint whose config lost the blocks does not load without them
    del ck["config"]["refine"]
    torch.save(ck, tmp_path / "lost.pt")
    with pytest.raises(ValueError, match="refine"):
        load_task_student(tmp_path / "lost.pt", tnet, student)


def test_pyramid_distillation_is_relative_and_stage2_uses_it(teacher, student, scenes, tmp_path, monkeypatch):
    from minist import losses, recipes
    t = {"0": torch.rand(2, 4, 8, 8) * 10, "1": torch.rand(2, 4, 4, 4) / 10}
    assert losses.pyramid_distillation(t, t).item() == 0
    # zero features miss each level by its whole energy: 1 per level, whatever the level's scale
    assert losses.pyramid_distillation({k: torch.zeros_like(v) for k, v in t.items()}, t).item() == pytest.approx(2)
    with pytest.raises(KeyError, match="levels differ"):
        losses.pyramid_distillation({"0": t["0"]}, t)
    # stage 2 adds γ × the student's FPN levels' error to the task teacher's, seen on the step's own scenes
    cfg = TaskTrainConfig(task="segmentation", beta=0.32, out=str(tmp_path), **SMALL)
    tnet, _ = train_task_teacher(cfg, teacher, progress=False)
    calls = []

    def spy(s, t):
        calls.append((list(s), [v.shape for v in s.values()], [v.shape for v in t.values()]))
        return losses.pyramid_distillation(s, t)
    monkeypatch.setattr(recipes, "pyramid_distillation", spy)
    plain = TaskTrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "plain")})
    snet, _ = train_task_student(plain, tnet, student, progress=False, val_set=scenes)
    assert calls == []                                           # None: the task loss alone
    kd = TaskTrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "kd"), "stage2_distill": 1.0})
    knet, meta = train_task_student(kd, tnet, student, progress=False, val_set=scenes)
    assert len(calls) == SMALL["max_steps"] and calls[0][0] == ["0", "1", "2", "3"]
    assert calls[0][1] == calls[0][2]                            # the student's levels against the teacher's
    assert not knet.backbone.fpn._forward_hooks                  # the hook is gone after training
    assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    a, b = snet.backbone.fpn.state_dict(), knet.backbone.fpn.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)           # the extra term changed what was learned
    with pytest.raises(ValueError, match="must be ≥ 0"):
        train_task_student(TaskTrainConfig(**{**cfg.__dict__, "stage2_distill": -1.0}), tnet, student, progress=False,
                           val_set=scenes)


def test_stage2_tune_trains_the_named_backbone_stages_and_they_ship(teacher, student, scenes, tmp_path):
    """``stage2_tune`` adds backbone stages to stage 2 (the paper retrains the task network after the decoder);
    the others stay the task teacher's; the checkpoint holds the tuned stages and loads back to the same net."""
    cfg = TaskTrainConfig(task="segmentation", beta=0.32, out=str(tmp_path), **SMALL)
    tnet, _ = train_task_teacher(cfg, teacher, progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        train_task_student(TaskTrainConfig(**{**cfg.__dict__, "stage2_tune": "layer1"}), tnet, student,
                           progress=False, val_set=scenes)
    assert not (tmp_path / "segmentation-student-beta0.32-stage1-last.pt").exists()   # refused before training
    tuned = TaskTrainConfig(**{**cfg.__dict__, "stage2_tune": "layer3, layer2"})
    snet, meta = train_task_student(tuned, tnet, student, progress=False, val_set=scenes)
    assert snet.tuned == ("layer2", "layer3")                    # the backbone's order
    assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    same = [torch.equal(getattr(snet.backbone, n).state_dict()[k], v)
            for n in ("layer2", "layer3", "layer4") for k, v in getattr(tnet.backbone, n).state_dict().items()]
    per = len(same) // 3
    assert not all(same[:per]) and not all(same[per:2 * per]) and all(same[2 * per:])
    path = save_task(tmp_path / "s.pt", snet, meta, half=False)
    assert {k.split(".")[0] for k in torch.load(path, weights_only=True)["state_dict"]} == {
        "layer2", "layer3", "decoder", "fpn", "head"}
    back, _ = load_task_student(path, tnet, student)
    assert back.tuned == snet.tuned
    with torch.no_grad():
        assert torch.equal(back([scenes[0][0]])[0]["logits"], snet.eval()([scenes[0][0]])[0]["logits"])
    # stage 1 reads no stage 2 field: a finished stage 1 resumes under another stage 2 recipe; stage 2 does not
    again = TaskTrainConfig(**{**cfg.__dict__, "stage2_tune": "layer4", "stage2_epochs": 3, "resume": True})
    with pytest.raises(ValueError, match="stage2-last.pt was made with a different training config"):
        train_task_student(again, tnet, student, progress=False, val_set=scenes)


def test_teacher_tune_trains_the_teachers_stages_they_ship_and_a_student_starts_from_them(teacher, student, scenes,
                                                                                          tmp_path):
    """``teacher_tune`` gives the task teacher what ``stage2_tune`` gives its students: the named backbone stages
    train (the others stay the classification teacher's), ship in its checkpoint and load back; a student copies
    them as trained and keeps them frozen unless its own stage 2 names them."""
    cfg = TaskTrainConfig(task="segmentation", beta=0.32, out=str(tmp_path), **SMALL)
    with pytest.raises(ValueError, match="distinct names"):
        train_task_teacher(TaskTrainConfig(**{**cfg.__dict__, "teacher_tune": "layer4,layer4"}), teacher,
                           progress=False)
    tnet, meta = train_task_teacher(TaskTrainConfig(**{**cfg.__dict__, "teacher_tune": "layer4"}), teacher,
                                    progress=False)
    assert tnet.tuned == ("layer4",) and meta["train"]["teacher_tune"] == "layer4"
    frozen = T.build_task_teacher("segmentation", teacher)
    for n in ("layer2", "layer3", "layer4"):
        same = all(torch.equal(v, frozen.backbone.state_dict()[f"{n}.{k}"])
                   for k, v in getattr(tnet.backbone, n).state_dict().items())
        assert same == (n != "layer4"), n
    path = save_task(tmp_path / "t.pt", tnet, meta, half=False)
    back, _ = load_task_teacher(path, teacher)
    assert back.tuned == ("layer4",) and back.trainable()[0] is back.backbone.layer4
    assert not any(p.requires_grad for p in back.backbone.layer3.parameters())
    with torch.no_grad():
        assert torch.equal(back([scenes[0][0]])[0]["logits"], tnet.eval()([scenes[0][0]])[0]["logits"])
    snet, smeta = train_task_student(cfg, back, student, progress=False, val_set=scenes)   # its stage 2 tunes none
    assert snet.tuned == () and all(torch.equal(v, back.backbone.layer4.state_dict()[k])
                                    for k, v in snet.backbone.layer4.state_dict().items())
    spath = save_task(tmp_path / "s.pt", snet, smeta, half=False)
    with pytest.raises(ValueError, match="trained from a task teacher that tuned layer4; this one kept"):
        load_task_student(spath, frozen, student)          # its layer4 is the tuned teacher's: refused, not garbage
    assert load_task_student(spath, back, student)[0].tuned == ()


def test_segmentation_score_matches_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 11, (4, 32, 32), generator=g)
    pred = torch.where(torch.rand(4, 32, 32, generator=g) < 0.6, truth, torch.randint(0, 11, (4, 32, 32), generator=g))
    score = evaluate.SegmentationScore(11)
    for p, t in zip(pred, truth):
        score.update(p, t)
    got = score.compute()
    miou = MulticlassJaccardIndex(11, average="macro")(pred, truth)
    acc = MulticlassAccuracy(11, average="micro")(pred, truth)
    assert got["miou"] == pytest.approx(100 * float(miou), abs=1e-4)
    assert got["pixel_accuracy"] == pytest.approx(100 * float(acc), abs=1e-4)
    # VOC's 255 "void" pixels are not scored
    score2 = evaluate.SegmentationScore(11)
    score2.update(pred[0], torch.where(torch.arange(32)[:, None] < 16, truth[0], torch.tensor(255)))
    assert int(score2.confusion.sum()) == 16 * 32


def test_detection_metric_is_100_for_the_truth_and_lower_for_shifted_boxes(scenes):
    def perfect(x):
        i = next(k for k in range(len(scenes)) if torch.equal(scenes[k][0], x))
        t = scenes[i][1]
        return {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}, None

    res = evaluate.evaluate_task("detection", perfect, scenes, limit=4)
    assert res["map"] == pytest.approx(100.0) and res["map_50"] == pytest.approx(100.0)

    def shifted(x):
        p, _ = perfect(x)
        return {**p, "boxes": p["boxes"] + 6.0}, 10

    res = evaluate.evaluate_task("detection", shifted, scenes, limit=4)
    assert res["map"] < 90.0 and res["sizes"] == [10] * 4


def test_task_training_resumes_from_its_last_epoch(teacher, tmp_path):
    cfg = TaskTrainConfig(task="segmentation", epochs=2, train_length=8, batch_size=4, out=str(tmp_path))
    net, meta = train_task_teacher(cfg, teacher, progress=False)
    assert [h["epoch"] for h in meta["history"]] == [1, 2] and (tmp_path / "segmentation-teacher-last.pt").is_file()
    from dataclasses import replace
    again, meta2 = train_task_teacher(replace(cfg, resume=True), teacher, progress=False)
    assert meta2["history"] == meta["history"]          # nothing left to train: the saved epochs come back
    assert all(torch.equal(a, b) for a, b in zip(net.head.state_dict().values(), again.head.state_dict().values()))


def test_unknown_task_and_tiny_train_set(teacher):
    with pytest.raises(ValueError, match="unknown task"):
        T.build_task_teacher("keypoints", teacher)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_task_teacher(TaskTrainConfig(task="segmentation", batch_size=64, train_length=16,
                                                       out="unused"), teacher, progress=False)


RESULTS = data_dir() / task_study.RESULTS_FILE


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_shipped_task_results_cover_the_issue():
    doc = json.loads(RESULTS.read_text())
    for task, (metric, _) in evaluate.METRICS.items():
        pts = [p for p in doc["points"] if p["task"] == task]
        students = [p for p in pts if p["method"] == "entropic"]
        assert len(students) >= 3
        assert {p["method"] for p in pts} >= {"teacher", "jpeg", "webp", "entropic"}
        for p in students:
            assert p["payload_digest"]["before"] == p["payload_digest"]["after"]
            assert (data_dir() / p["checkpoint"]).is_file()
            assert 0 <= p[metric] <= 100
        kb = [p["kb_mean"] for p in sorted(students, key=lambda p: p["value"])]
        assert kb == sorted(kb, reverse=True)          # larger β → fewer bytes
    # the same β gives the same bytes for every task: one bitstream
    by_beta = {}
    for p in doc["points"]:
        if p["method"] == "entropic":
            by_beta.setdefault(p["value"], set()).add((p["kb_mean"], p["payload_digest"]["before"]))
    assert all(len(v) == 1 for v in by_beta.values())


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_a_shipped_segmentation_student_remeasures_its_bytes(teacher):
    doc = json.loads(RESULTS.read_text())
    p = max((p for p in doc["points"] if p["task"] == "segmentation" and p["method"] == "entropic"),
            key=lambda p: p["value"])
    tnet = pretrained.task_teacher("segmentation")
    snet = pretrained.task_student("segmentation", beta=p["value"])
    scenes = TaskTrainConfig().val_scenes()
    res = evaluate.evaluate_task("segmentation", evaluate.student_predictor(snet), scenes, limit=40)
    full = evaluate.evaluate_task("segmentation", evaluate.teacher_predictor(tnet), scenes, limit=40)
    assert 0 < full["miou"] <= 100
    assert abs(sum(res["sizes"]) / 40 / 1024 - p["kb_mean"]) < 0.25 * p["kb_mean"]


@pytest.mark.parametrize("task", T.TASKS)
def test_paper_task_models_split_at_layer1_and_serve_the_paper_students_bytes(task):
    """torchvision's Faster R-CNN R50-FPN / DeepLabv3-R50 (untrained here: nothing downloads) with the paper
    student's frozen encoder in front: the server's answer from bytes equals the model's own eval output."""
    from minist.models.student import EntropicStudent
    from minist.models.teacher import build_teacher
    torch.manual_seed(0)
    tnet = T.build_paper_task_teacher(task, image_size=64, weights=False)
    assert tnet.num_classes == (91 if task == "detection" else 21)
    assert not any(p.requires_grad for p in tnet.backbone.front.parameters())
    student = EntropicStudent(build_teacher("paper"))
    student.update(force=True)
    snet = T.build_task_student(tnet, student.eval()).eval()
    x = torch.rand(3, 64, 64)
    payload = student.split()[0](x.unsqueeze(0))
    got = T.TaskServer(snet)(payload)
    with torch.no_grad():
        want = snet([x])[0]
    key = "boxes" if task == "detection" else "semantic"
    assert torch.equal(got[key], want[key])
    cfg = TaskTrainConfig.preset_config("paper", task=task)
    assert (cfg.num_classes, cfg.image_size) == ((91 if task == "detection" else 21), 512)
    with pytest.raises(ValueError, match="data_root"):
        cfg.datasets()
    mini_student = pretrained.student("mini", beta=0.32)
    with pytest.raises(ValueError, match="same preset"):
        T.build_task_student(tnet, mini_student)


def test_tasks_cli_quick_and_collect(tmp_path, capsys):
    from minist.cli import main
    assert main(["tasks", "--quick", "--tasks", "segmentation", "--betas", "0.32", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--collect", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / task_study.RESULTS_FILE).read_text())
    methods = {p["method"] for p in doc["points"]}
    assert methods == {"teacher", "jpeg", "webp", "entropic"}
    assert main(["tasks", "--quick", "--tasks", "keypoints", "--out", str(tmp_path)]) == 2
    assert "unknown task" in capsys.readouterr().err


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_a_task_student_on_the_variable_rate_bitstream_decodes_every_rate_and_merges_into_the_study(tmp_path,
                                                                                                   monkeypatch):
    """``minist tasks --variable --shipped-teachers``: one task student for every β of the variable-rate student;
    its messages are the classification student's own, and ``--ship --merge`` keeps the shipped points."""
    from minist.cli import main
    monkeypatch.setattr(task_study, "data_dir", lambda: tmp_path / "data")     # ship here, not into data/
    (tmp_path / "data").mkdir()
    assert main(["tasks", "--quick", "--tasks", "segmentation", "--betas", "", "--variable", "--shipped-teachers",
                 "--out", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / task_study.TEACHER_FILE.format(task="segmentation")).exists()
    points = [json.loads(p.read_text()) for p in (tmp_path / "run" / "points").glob("*.json")]
    assert sorted(p["value"] for p in points) == sorted(task_study.VARIABLE_BETAS[::3])
    assert {p["method"] for p in points} == {"variable-rate"}
    kb = [p["kb_mean"] for p in sorted(points, key=lambda p: p["value"])]
    assert kb == sorted(kb, reverse=True)                                      # a larger β sends fewer bytes
    net, _ = load_task_student(tmp_path / "run" / task_study.VARIABLE_FILE.format(task="segmentation"),
                               pretrained.task_teacher("segmentation"), pretrained.variable_student())
    x = TaskTrainConfig().val_scenes()[0][0]
    device = pretrained.variable_student().split()[0]
    msg = device(x[None], beta=0.08)
    assert evaluate._device_part(net)(x[None], beta=0.08) == msg           # the classification student's bytes
    assert T.TaskServer(net)(msg)["semantic"].shape == x.shape[-2:]
    assert main(["tasks", "--ship", "--merge", "--out", str(tmp_path / "run")]) == 0
    doc = json.loads((tmp_path / "data" / task_study.RESULTS_FILE).read_text())
    shipped = json.loads(RESULTS.read_text())["points"]
    new = {(p["task"], p["method"], p["value"]) for p in points}
    kept = [p for p in shipped if (p["task"], p["method"], p["value"]) not in new]
    assert len(doc["points"]) == len(kept) + len(points) and len(kept) > len(points)
    assert (tmp_path / "data" / task_study.VARIABLE_FILE.format(task="segmentation")).is_file()
    assert data_dir() != tmp_path / "data"


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_train_task_cli_on_a_shipped_encoder(tmp_path, capsys):
    from minist.cli import main
    assert main(["train-task", "--task", "segmentation", "--beta", "0.32", "--max-steps", "1", "--train-length",
                 "8", "--batch-size", "4", "--val-length", "8", "--eval-limit", "4", "--out", str(tmp_path)]) == 0
    assert "miou" in capsys.readouterr().out
    assert (tmp_path / "task_student_mini_segmentation.pt").is_file()


def test_the_online_recipe_runs_on_a_small_pennfudan_folder(tmp_path, teacher, student):
    """Notebook 04's online section (task teacher + task student on PennFudanPed), on 4 local images."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(4):
        (tmp_path / "PNGImages").mkdir(exist_ok=True)
        (tmp_path / "PedMasks").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(
            tmp_path / "PNGImages" / f"FudanPed0000{i}.png")
        mask = np.zeros((90, 70), np.uint8)
        mask[10:60, 5 + 10 * i:30 + 10 * i] = 1
        Image.fromarray(mask).save(tmp_path / "PedMasks" / f"FudanPed0000{i}_mask.png")
    from minist import data
    ped = data.load("pennfudan", root=tmp_path, size=64)
    cfg = TaskTrainConfig(task="detection", num_classes=2, image_size=64, epochs=1, batch_size=2,
                                stage1_epochs=1, stage2_epochs=1, out=str(tmp_path / "run"))
    det_teacher, _ = train_task_teacher(cfg, teacher, progress=False, train_set=ped)
    det_student, meta = train_task_student(cfg, det_teacher, student, progress=False, train_set=ped,
                                                 val_set=ped)
    assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    res = evaluate.evaluate_task("detection", evaluate.student_predictor(det_student), ped)
    assert res["n"] == 4 and len(res["sizes"]) == 4 and 0 <= res["map"] <= 100


@pytest.mark.skipif(not (data_dir() / pretrained.TASK_VARIABLE_FILE.format(task="detection")).is_file(),
                    reason="no shipped variable-rate task students")
def test_one_message_at_any_rate_serves_class_boxes_and_masks():
    """The shipped task students on the variable-rate bitstream: the classification student's message at any grid
    β is decoded by all three servers, and task training left the bytes as they were."""
    student = pretrained.variable_student()
    device, cls_server = student.split()
    det, seg = (pretrained.variable_task_student(t, with_meta=True) for t in ("detection", "segmentation"))
    for _, meta in (det, seg):
        assert meta["payload_digest"]["before"] == meta["payload_digest"]["after"]
    x = TaskTrainConfig().val_scenes()[0][0]
    for beta in (0.005, 0.0377, 0.64):                   # anchors and a rate between them
        msg = device(x[None], beta=beta)
        assert cls_server(msg).shape == (1, 10)
        boxes = T.TaskServer(det[0])(msg)["boxes"]
        masks = T.TaskServer(seg[0])(msg)["semantic"]
        assert boxes.shape[-1] == 4 and masks.shape == x.shape[-2:]


def test_per_scene_records_rebuild_the_score_and_the_paired_bootstrap_brackets_it(scenes):
    """``evaluate_task(…, per_scene=True)``: the scenes' records give back the whole-set score; a paired bootstrap
    of a method against itself is exactly 100 %, and against a worse one stays below."""
    def truth(x):
        i = next(k for k in range(len(scenes)) if torch.equal(scenes[k][0], x))
        t = scenes[i][1]
        logits = torch.nn.functional.one_hot(t["semantic"].long(), 11).permute(2, 0, 1).float()
        return {"semantic": t["semantic"], "logits": logits,
                "boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}, None

    def blurred(x):
        p, _ = truth(x)
        return {**p, "semantic": torch.roll(p["semantic"], 3, dims=-1), "boxes": p["boxes"] + 5.0}, None

    for task in T.TASKS:
        key = evaluate.METRICS[task][0]
        good = evaluate.evaluate_task(task, truth, scenes, limit=6, per_scene=True)
        bad = evaluate.evaluate_task(task, blurred, scenes, limit=6, per_scene=True)
        assert len(good["scenes"]) == 6
        assert evaluate.task_scores(task, bad["scenes"])[key] == pytest.approx(bad[key])
        same = evaluate.task_bootstrap(task, good["scenes"], good["scenes"], draws=5)
        assert same["ratio_pct"] == pytest.approx(100.0) and same["ci95_pct"] == pytest.approx([100.0, 100.0])
        worse = evaluate.task_bootstrap(task, bad["scenes"], good["scenes"], draws=20)
        assert worse["ratio_pct"] < 100.0 and worse["ci95_pct"][1] < 100.0
        assert worse["ci95_pct"][0] <= worse["ratio_pct"] <= worse["ci95_pct"][1]
    with pytest.raises(ValueError, match="same scenes"):
        evaluate.task_bootstrap("segmentation", good["scenes"], good["scenes"][:3])


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_tasks_test_scores_the_shipped_models_on_unseen_scenes_and_ships(tmp_path, monkeypatch):
    """``minist tasks --test --quick``: the shipped teacher, codecs and variable-rate task student on test scenes
    (not the val scenes that chose the recipe), each student point with its paired interval; ``--ship`` copies."""
    from minist.cli import main
    monkeypatch.setattr(task_study, "data_dir", lambda: tmp_path / "data")
    monkeypatch.setattr(task_study, "TEST_JPEG", (1,))
    monkeypatch.setattr(task_study, "TEST_WEBP", (0,))
    monkeypatch.setattr(task_study, "VARIABLE_BETAS", (0.005, 0.64))
    monkeypatch.setattr(task_study, "TEST_DRAWS", {"detection": 3, "segmentation": 30})
    (tmp_path / "data").mkdir()
    assert main(["tasks", "--test", "--quick", "--tasks", "segmentation", "--out", str(tmp_path / "t"), "--ship"]) == 0
    doc = json.loads((tmp_path / "data" / task_study.TEST_FILE).read_text())
    assert doc["test_set"]["n"] == 20 and doc["test_set"]["sha256"] != TaskTrainConfig(val_length=20).val_scenes(
        ).digest()
    by = {(p["method"], p["value"]): p for p in doc["points"]}
    assert set(by) == {("teacher", None), ("jpeg", 1), ("webp", 0), ("variable-rate", 0.005), ("variable-rate", 0.64)}
    for key, p in by.items():
        assert ("vs_teacher" in p) == (key[0] != "teacher")
    v = by[("variable-rate", 0.005)]["vs_teacher"]
    assert v["ci95_pct"][0] <= v["ratio_pct"] <= v["ci95_pct"][1]
    assert by[("variable-rate", 0.005)]["kb_mean"] > by[("variable-rate", 0.64)]["kb_mean"]
    assert main(["tasks", "--test", "--quick", "--tasks", "segmentation", "--out", str(tmp_path / "t")]) == 0  # resumes


@pytest.mark.skipif(not RESULTS.is_file(), reason="no shipped task results")
def test_tasks_test_against_another_runs_teachers(tmp_path, monkeypatch):
    """``--teachers DIR``: the ratios are to DIR's task teacher (here one that is not the shipped one), whose epochs
    the teacher point records; ``--students DIR`` scores DIR's variable-rate task student; a folder without the
    model asked for is refused by name."""
    from minist.cli import main
    monkeypatch.setattr(task_study, "TEST_JPEG", ())
    monkeypatch.setattr(task_study, "TEST_WEBP", ())
    monkeypatch.setattr(task_study, "VARIABLE_BETAS", (0.005,))
    monkeypatch.setattr(task_study, "TEST_DRAWS", {"detection": 3, "segmentation": 30})
    with pytest.raises(FileNotFoundError, match="task_teacher_mini_segmentation.pt"):
        task_study.test(tasks=("segmentation",), out=tmp_path / "none", n=4, teachers=tmp_path)
    net, meta = pretrained.task_teacher("segmentation", with_meta=True)
    with torch.no_grad():
        for p in net.head.parameters():
            p.mul_(0.5)              # another teacher: its scores and so every ratio differ from the shipped one's
    shipped_epochs = meta["train"]["epochs"]
    meta["train"]["epochs"] += 1
    save_task(tmp_path / task_study.TEACHER_FILE.format(task="segmentation"), net, meta)
    assert main(["tasks", "--test", "--quick", "--tasks", "segmentation", "--out", str(tmp_path / "t"),
                 "--teachers", str(tmp_path)]) == 0
    assert main(["tasks", "--test", "--quick", "--tasks", "segmentation", "--out", str(tmp_path / "s")]) == 0
    mine, shipped = ({(p["method"], p["value"]): p for p in json.loads((tmp_path / d / task_study.TEST_FILE)
                                                                      .read_text())["points"]} for d in ("t", "s"))
    assert mine[("teacher", None)]["epochs"] == shipped_epochs + 1 and shipped[("teacher", None)]["epochs"] == \
        shipped_epochs
    assert mine[("teacher", None)]["miou"] != shipped[("teacher", None)]["miou"]
    assert mine[("variable-rate", 0.005)]["miou"] == shipped[("variable-rate", 0.005)]["miou"]
    # --students DIR: DIR's variable-rate task student is scored instead of the shipped one; none there is refused
    with pytest.raises(FileNotFoundError, match="task_student_mini_segmentation_variable.pt"):
        task_study.test(tasks=("segmentation",), out=tmp_path / "t", n=4, students=tmp_path / "t")
    snet, smeta = pretrained.variable_task_student("segmentation", with_meta=True)
    with torch.no_grad():
        for p in snet.head.parameters():
            p.mul_(0.5)
    save_task(tmp_path / task_study.VARIABLE_FILE.format(task="segmentation"), snet, smeta)
    assert main(["tasks", "--test", "--quick", "--tasks", "segmentation", "--out", str(tmp_path / "u"),
                 "--students", str(tmp_path)]) == 0
    other = {(p["method"], p["value"]): p for p in json.loads((tmp_path / "u" / task_study.TEST_FILE).read_text())
             ["points"]}
    assert other[("teacher", None)]["miou"] == shipped[("teacher", None)]["miou"]
    assert other[("variable-rate", 0.005)]["miou"] != shipped[("variable-rate", 0.005)]["miou"]


TEST_RESULTS = data_dir() / task_study.TEST_FILE


@pytest.mark.skipif(not TEST_RESULTS.is_file(), reason="no shipped task test results")
def test_the_shipped_task_headline_is_the_test_splits_and_the_readme_quotes_it():
    """The task headline comes from test scenes (not the val scenes that chose the recipe), its intervals bracket
    their ratios, and the README quotes the file's own numbers."""
    from pathlib import Path
    doc = pretrained.task_test_results()
    assert doc["test_set"]["split"] == "test" and doc["test_set"]["n"] >= 2000
    assert doc["test_set"]["sha256"] != pretrained.task_results()["val_set"]["sha256"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for task, (metric, _) in evaluate.METRICS.items():
        pts = {(p["method"], p["value"]): p for p in doc["points"] if p["task"] == task}
        teacher_score = pts[("teacher", None)][metric]
        top = pts[("variable-rate", 0.005)]
        v = top["vs_teacher"]
        assert v["ratio_pct"] == pytest.approx(100 * top[metric] / teacher_score)
        assert v["ci95_pct"][0] <= v["ratio_pct"] <= v["ci95_pct"][1]
        assert f"{top[metric]:.2f}: {v['ratio_pct']:.1f} % [{v['ci95_pct'][0]:.1f}, {v['ci95_pct'][1]:.1f}]" in readme
        assert {("jpeg", 1), ("webp", 0)} <= set(pts)                  # each codec's smallest setting


def test_tasks_cli_passes_the_stage2_budget_on(monkeypatch, tmp_path):
    """``minist tasks --stage2-epochs N`` (and ``--stage2-distill``, ``--stage2-tune``, ``--teacher-tune``) reach the
    study's recipe; without them the study's defaults hold."""
    from minist.cli import main
    seen = []
    monkeypatch.setattr(task_study, "run", lambda **kw: seen.append(kw))
    monkeypatch.setattr(task_study, "collect", lambda out, dest=None, merge=False: dest)
    assert main(["tasks", "--variable", "--betas", "", "--stage2-epochs", "8", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--variable", "--betas", "", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--betas", "", "--teacher-epochs", "21", "--resume", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--variable", "--betas", "", "--stage2-distill", "0.5", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--variable", "--betas", "", "--stage2-tune", "layer2", "--out", str(tmp_path)]) == 0
    assert main(["tasks", "--betas", "", "--teacher-tune", "layer3,layer4", "--out", str(tmp_path)]) == 0
    assert seen[0]["stage2_epochs"] == 8 and "stage2_epochs" not in seen[1]
    assert seen[3]["stage2_distill"] == 0.5 and not any("stage2_distill" in kw for kw in seen[:3])
    assert seen[4]["stage2_tune"] == "layer2" and not any("stage2_tune" in kw for kw in seen[:4])
    assert seen[5]["teacher_tune"] == "layer3,layer4" and not any("teacher_tune" in kw for kw in seen[:5])
    assert not {"epochs", "resume"} & set(seen[0]) and seen[2]["epochs"] == 21 and seen[2]["resume"] is True


def test_diagnosis_arms_are_the_models_and_their_hybrids(tmp_path, monkeypatch):
    """``minist tasks --diagnose``: the teacher arm scores what the teacher scores; the half-resolution map keeps
    a smooth map and flattens a checkerboard; the file records every arm with COCO's breakdown."""
    flat, board = torch.ones(1, 2, 8, 8), (torch.arange(8)[:, None] + torch.arange(8)).remainder(2).float()
    assert torch.allclose(task_study._half_resolution(flat), flat)
    assert torch.allclose(task_study._half_resolution(board[None, None]), torch.full((1, 1, 8, 8), 0.5))
    path = task_study.diagnose("detection", n=4, out=tmp_path)
    doc = json.loads(path.read_text())
    assert doc["val_scenes"] == 4 and len(doc["arms"]) == 6
    assert all({"map", "map_50", "map_75", "map_small"} <= set(a) for a in doc["arms"].values())
    val = TaskTrainConfig().val_scenes()
    direct = evaluate.evaluate_task("detection", evaluate.teacher_predictor(pretrained.task_teacher("detection")),
                                    val, limit=4)
    assert doc["arms"]["teacher"]["map"] == pytest.approx(direct["map"])
    with pytest.raises(FileNotFoundError, match="minist tasks"):
        task_study.diagnose("segmentation", students=tmp_path, n=2, out=tmp_path)
    from minist.cli import main
    seen = []
    monkeypatch.setattr(task_study, "diagnose", lambda task, **kw: seen.append((task, kw)) or path)
    assert main(["tasks", "--diagnose", "--tasks", "detection", "--students", "runs/x", "--out", str(tmp_path)]) == 0
    assert seen == [("detection", dict(teachers=None, students="runs/x", n=500, out=str(tmp_path)))]


@pytest.mark.parametrize("task", T.TASKS)
def test_the_shipped_task_models_train_what_their_teachers_train_and_serve_the_shared_bitstream(task, teacher):
    """The shipped task teachers retrain layer2–4 with FPN and head (the fair reference for a student that retrains
    the task network after the decoder); the variable-rate task students retrain them again, the per-β ones keep
    them as their teacher left them. Task training left the shared payloads as they were, and a student is refused
    by a task teacher that did not train the stages it was trained on."""
    stages = ("layer2", "layer3", "layer4")
    tnet, tmeta = pretrained.task_teacher(task, with_meta=True)
    assert tnet.tuned == stages and tmeta["train"]["teacher_tune"] == ",".join(stages)
    snet, smeta = pretrained.variable_task_student(task, with_meta=True)
    assert snet.tuned == stages and snet.teacher_tuned == stages
    assert smeta["train"]["stage2_tune"] == task_study.VARIABLE_RECIPE[task]["stage2_tune"]
    assert smeta["train"]["stage2_epochs"] == task_study.VARIABLE_RECIPE[task]["stage2_epochs"]
    scenes = TaskTrainConfig().val_scenes()
    digest = evaluate.payload_digest(pretrained.variable_student(), scenes)
    assert smeta["payload_digest"]["before"] == smeta["payload_digest"]["after"] == digest
    per_beta = pretrained.task_student(task, beta=0.08)
    assert per_beta.tuned == () and per_beta.teacher_tuned == stages
    with pytest.raises(ValueError, match="tuned layer2, layer3, layer4; this one kept the classification backbone"):
        load_task_student(data_dir() / task_study.STUDENT_FILE.format(task=task, beta=0.08),
                          T.build_task_teacher(task, teacher), pretrained.student("mini", beta=0.08))
    res = evaluate.evaluate_task(task, evaluate.student_predictor(snet, beta=0.005), scenes, limit=8)
    assert 0.3 < sum(res["sizes"]) / 8 / 1024 < 0.6          # 0.42 KB a scene at the grid's top


def test_a_task_students_rate_free_front_decodes_the_unrounded_latent():
    """``StudentFront.rate_free`` (the diagnosis's "bytes free" arm): the decoder on the latent as the codec would
    hand it over unrounded, not on ẑ; a β outside the bitstream's range is refused as the bitstream refuses it."""
    front = pretrained.variable_task_student("detection").backbone.front.eval()
    x = torch.rand(2, 3, 128, 128)
    z = analysis(front.encoder, front.mean, front.std, x)
    free = front.rate_free(x, beta=0.02)
    assert torch.allclose(free, front.decode(front.codec.unrounded(z, beta=0.02)))
    with torch.no_grad():
        sent = front(x, beta=0.02)
    assert sent.shape == free.shape and not torch.allclose(sent, free)
    with pytest.raises(ValueError, match="outside this model's range"):
        front.rate_free(x, beta=10.0)
