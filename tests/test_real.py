"""Real-data loaders on tiny local fixtures laid out as the real datasets are, and offline errors."""

import shutil
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import minist.data as mdata
from minist import checkpoint
from minist.data import real


def _img(path, w=40, h=30, value=None, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    if value is None:
        arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    else:
        arr = value
    Image.fromarray(arr).save(path)


def test_image_folder(tmp_path):
    for c in ("n01", "n02"):
        for i in range(3):
            _img(tmp_path / "val" / c / f"{i}.JPEG")
    (tmp_path / "classes.tsv").write_text("n01\ttench\nn02\tchurch\n")
    ds = mdata.load("imagefolder", split="val", root=tmp_path, size=32)
    x, y = ds[4]
    assert x.shape == (3, 32, 32) and y == 1 and ds.readable_classes == ["tench", "church"]


def test_shared_imagenette_mini_when_present():
    root = real.default_imagenette_mini()
    if root is None:
        pytest.skip("../shared/data/imagenette-mini is not present")
    ds = mdata.load("imagenette-mini", split="val", size=128)
    assert len(ds) == 1000 and len(ds.classes) == 10
    x, y = ds[0]
    assert x.shape == (3, 128, 128) and 0 <= y < 10


def test_imagenette_layout_and_offline_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="download=True"):
        mdata.load("imagenette", split="val", root=tmp_path)

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.datasets.imagenette.download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="offline"):
        mdata.load("imagenette", split="val", root=tmp_path, download=True)
    _img(tmp_path / "imagenette2-160" / "val" / "n01440764" / "a.JPEG")
    ds = mdata.load("imagenette", split="val", root=tmp_path, size=32)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and y == 0 and ds.classes[0] == "tench"


def test_pennfudan(tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[2:10, 3:9] = 1
    mask[12:25, 20:30] = 2
    _img(tmp_path / "PNGImages" / "FudanPed00001.png")
    _img(tmp_path / "PedMasks" / "FudanPed00001_mask.png", value=mask)
    ds = mdata.load("pennfudan", root=tmp_path, size=40)
    x, t = ds[0]
    assert x.shape == (3, 40, 40) and t["masks"].shape == (2, 40, 40) and t["labels"].tolist() == [1, 1]
    assert t["boxes"].shape == (2, 4) and (t["semantic"] > 0).sum() == t["masks"].sum()
    with pytest.raises(FileNotFoundError, match="PennFudanPed"):
        mdata.load("pennfudan", root=tmp_path / "nothing")


def test_oxford_pets(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    _img(base / "images" / "Abyssinian_1.jpg")
    tri = np.full((30, 40), 2, np.uint8)
    tri[5:20, 5:30] = 1
    tri[4, 5:30] = 3
    _img(base / "annotations" / "trimaps" / "Abyssinian_1.png", value=tri)
    (base / "annotations" / "test.txt").write_text("Abyssinian_1 1 1 1\n")
    ds = mdata.load("oxford-pets", split="val", root=tmp_path, size=32)
    x, t = ds[0]
    assert x.shape == (3, 32, 32) and t["label"] == 0
    assert set(t["semantic"].unique().tolist()) <= {0, 1, 255} and (t["semantic"] == 1).any()
    with pytest.raises(FileNotFoundError, match="Oxford-IIIT Pet"):
        mdata.load("oxford-pets", split="val", root=tmp_path / "none")


VOC_XML = """<annotation><filename>000001.jpg</filename><size><width>40</width><height>30</height><depth>3</depth>
</size><object><name>dog</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>25</xmax>
<ymax>20</ymax></bndbox></object></annotation>"""


def test_voc_detection_and_segmentation(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    _img(voc / "JPEGImages" / "000001.jpg")
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "000001.xml").write_text(VOC_XML)
    for sub in ("Main", "Segmentation"):
        (voc / "ImageSets" / sub).mkdir(parents=True)
        (voc / "ImageSets" / sub / "val.txt").write_text("000001\n")
    seg = np.zeros((30, 40), np.uint8)
    seg[5:15, 5:15] = 12
    _img(voc / "SegmentationClass" / "000001.png", value=seg, mode="L")
    det = mdata.load("voc", split="val", task="detection", root=tmp_path, size=80)
    x, t = det[0]
    assert x.shape == (3, 80, 80) and t["labels"].tolist() == [12]   # 'dog' in torchvision's VOC classes
    assert torch.allclose(t["boxes"], torch.tensor([[10.0, 16.0, 50.0, 53.333]]), atol=0.5)
    sg = mdata.load("voc", split="val", task="segmentation", root=tmp_path, size=80)
    x, t = sg[0]
    assert t["semantic"].shape == (80, 80) and set(t["semantic"].unique().tolist()) == {0, 12}
    with pytest.raises(FileNotFoundError, match="VOCdevkit"):
        mdata.load("voc", split="val", root=tmp_path / "none")


def test_real_loaders_need_a_root():
    with pytest.raises(ValueError, match="root="):
        mdata.load("voc", split="val")


def test_coco_layout_and_offline_error(tmp_path):
    import json
    _img(tmp_path / "val2017" / "000000000001.jpg", w=40, h=30)
    ann = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 30}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 18, "bbox": [4.0, 6.0, 20.0, 12.0], "area": 240.0,
                            "iscrowd": 0, "segmentation": [[4, 6, 24, 6, 24, 18, 4, 18]]}],
           "categories": [{"id": 18, "name": "dog"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))
    ds = mdata.load("coco", split="val", root=tmp_path, size=80)
    x, t = ds[0]
    assert x.shape == (3, 80, 80) and t["labels"].tolist() == [18]        # COCO ids, as torchvision's detectors
    assert torch.allclose(t["boxes"], torch.tensor([[8.0, 16.0, 48.0, 48.0]]), atol=0.5)   # xyxy, resized
    assert t["masks"].shape == (1, 80, 80) and t["masks"].dtype == torch.uint8
    with pytest.raises(FileNotFoundError, match="cocodataset.org"):
        mdata.load("coco", split="train", root=tmp_path)


def test_imagenet_layout_and_offline_error(tmp_path):
    _img(tmp_path / "val" / "n01440764" / "a.JPEG", w=300, h=260)
    ds = mdata.load("imagenet", split="val", root=tmp_path)
    assert ds[0][0].shape == (3, 224, 224) and ds[0][1] == 0
    with pytest.raises(FileNotFoundError, match="image-net.org"):
        mdata.load("imagenet", split="train", root=tmp_path)
    with pytest.raises(ValueError, match="classification"):
        mdata.load("imagenet", split="val", task="detection", root=tmp_path)


def _tiny_imagenette(root, per_class=(25, 4)):
    for c in ("n01", "n02"):
        for i in range(per_class[0]):
            _img(root / "train" / c / f"t{i:02d}.JPEG", 48, 48)
        for i in range(per_class[1]):
            _img(root / "val" / c / f"v{i}.JPEG", 48, 48, mode="L" if i == 0 else "RGB")
    return root


def test_shared_imagenette_splits_hold_out_training_photos(tmp_path, monkeypatch):
    from minist.data import imagenette
    monkeypatch.setenv("MINIST_CACHE", str(tmp_path / "cache"))
    root = _tiny_imagenette(tmp_path / "imagenette")
    train = mdata.load("imagenette-shared", split="train", root=root, size=32)
    choice = mdata.load("imagenette-shared", split="choice", root=root, size=32)
    test = mdata.load("imagenette-shared", split="test", root=root, size=32)
    # 1 in HOLDOUT_EVERY training photos per class is held out for choices; the official val photos are the test
    assert (len(train), len(choice), len(test)) == (48, 2, 8)
    lists = imagenette.file_lists(root)
    assert not {p for p, _ in lists["choice"]} & {p for p, _ in lists["train"]}
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y == 0
    assert train.augment and not test.augment
    torch.manual_seed(0)
    assert not all(torch.equal(train[0][0], train[0][0]) for _ in range(5))   # a fresh random crop each time
    # the fine-tune's stream: a random crop of the test photos' resize (146/128 × size), flipped or not
    tuned = imagenette.load("train", root, size=32, crop="test-like")
    resized = v2.functional.resize(tuned.images[0], [round(32 * imagenette.EVAL_RESIZE / 128)] * 2, antialias=True)
    windows = [resized[:, i:i + 32, j:j + 32].float() / 255 for i in range(5) for j in range(5)]
    for _ in range(5):
        x = tuned[0][0]
        assert x.shape == (3, 32, 32)
        assert any(torch.equal(x, w) or torch.equal(x, w.flip(-1)) for w in windows)
    with pytest.raises(ValueError, match="unknown training crop 'centre'.*test-like"):
        imagenette.load("train", root, size=32, crop="centre")
    d = test.digest()
    again = mdata.load("imagenette-shared", split="test", root=root, size=32)     # from the cache
    assert again.digest() == d and len(list((tmp_path / "cache" / "imagenette").iterdir())) == 3


def test_shared_imagenette_absent_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="Imagenette photos not found.*MINIST_IMAGENETTE"):
        mdata.load("imagenette-shared", split="test", root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown Imagenette split 'val'.*'test'"):
        mdata.load("imagenette-shared", split="val", root=tmp_path)


def test_the_photo_study_end_to_end_on_a_tiny_folder(tmp_path, monkeypatch):
    """minist photos teacher / student / codecs / collect on a tiny image folder: every part runs, resumes, and the
    result file holds relative names only and an interval for every point."""
    import json

    from minist import rd
    from minist.experiments import photos
    monkeypatch.setenv("MINIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MINIST_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "SHA256SUMS").write_text("")
    monkeypatch.setattr(photos, "JPEG_QUALITIES", (1, 50))
    monkeypatch.setattr(photos, "WEBP_QUALITIES", (0,))
    monkeypatch.setattr(photos, "FIXRES_RECIPE", {**photos.FIXRES_RECIPE, "epochs": 1, "batch_size": 8})
    root, out = _tiny_imagenette(tmp_path / "imagenette"), tmp_path / "runs"
    (out / "teacher-fixres").mkdir(parents=True)            # a fine-tune that never finished is not shipped
    with pytest.raises(FileNotFoundError, match="teacher-fixres is unfinished"):
        photos.ship_teacher(root, out)
    t = photos.run_teacher(root, out, progress=False, epochs=1, batch_size=8, warmup_epochs=0)
    assert t["test"]["n"] == 8 and t["test"]["ci95"][0] <= t["test"]["accuracy"] <= t["test"]["ci95"][1]
    # the teacher is the long run, then its fine-tune at the test resolution, which records the run it continues
    assert t["train"]["init"] == str(out / "teacher" / "teacher.pt") and t["parent"]["train"]["epochs"] == 1
    assert t["choice"]["accuracy"] == t["history"][-1]["val_accuracy"]
    assert photos.trained_teacher_file(out) == out / "teacher-fixres" / "teacher.pt"
    photos.ship_teacher(root, out)
    shipped = checkpoint.load(tmp_path / "data" / photos.TEACHER_FILE)["meta"]
    assert shipped["stored"] == "fp16" and shipped["train"]["init"] == t["train"]["init"]
    f = photos.run_fixres(root, out, mode="bn-fc", epochs=1, batch_size=4, progress=False)   # the diagnostic
    assert len(f["choice"]) == 2 and f["test"]["n"] == 8 and f["trainable"] < 10_000
    assert (out / "fixres-bn-fc" / "teacher.pt").is_file() and (out / "fixres-bn-fc" / "scores.json").is_file()
    with pytest.raises(ValueError, match="fixres mode"):
        photos.run_fixres(root, out, mode="last-layer")
    s = photos.run_student(0.02, root, out, progress=False, stage1_epochs=1, stage2_epochs=1, stage1_batch_size=8,
                           stage2_batch_size=8, mixup=0.2)
    assert [p["method"] for p in s["points"]] == ["entropic", "stage1-only"]
    assert all(p["n"] == 8 and p["kb_mean"] > 0 for p in s["points"])
    assert all(p["rate_free"]["n"] == 8 and len(p["rate_free"]["correct_bits"]) > 0 for p in s["points"])
    v = photos.run_student(0.02, root, out, progress=False, method="variable-rate", rate_grid=(0.02, 1, 4),
                           stage1_epochs=1, stage2_epochs=1, stage1_batch_size=8, stage2_batch_size=8)
    assert [(p["method"], p["value"]) for p in v["points"]] == [("variable-rate", 0.02), ("variable-rate", 0.04),
                                                                ("variable-rate-stage1-only", 0.02),
                                                                ("variable-rate-stage1-only", 0.04)]
    assert all(p["rate_free"]["n"] == 8 for p in v["points"])      # at each anchor's β
    assert len(photos.run_codecs(root, out, progress=False)) == 3
    res = json.loads(photos.collect(out, root).read_text())
    assert len(res["points"]) == 9 and all(len(p["ci95"]) == 2 for p in res["points"])
    assert str(tmp_path) not in json.dumps(res)
    # the per-β arm carries its choice-set accuracy (stage 1's for its stage-1-only point); the ablation lists it
    per_beta = {p["method"]: p for p in res["points"] if p["method"] in ("entropic", "stage1-only")}
    hist = json.loads((out / "student-0.02" / "history.json").read_text())
    assert per_beta["entropic"]["choice"]["accuracy"] == hist[-1]["accuracy"]
    assert per_beta["stage1-only"]["choice"]["accuracy"] == [r for r in hist if r["stage"] == 1][-1]["accuracy"]
    assert not any("choice" in p for p in res["points"] if p["method"].startswith("variable-rate"))
    assert [a["method"] for a in photos.ablation(res, beta=0.02)] == ["entropic", "stage1-only"]
    assert photos.ablation(res) == []       # no arm (``--tag``) ran, so no β has an ablation
    t = photos.train_time(res)               # the teacher + one per-β run + one variable-rate run
    assert t["runs"] == 2 and t["total"] == pytest.approx(res["teacher_train_seconds"] + s["meta"]["train_seconds"]
                                                          + v["meta"]["train_seconds"])
    # an arm that differs in stage 2 alone (the paper's: the tail trains too) starts from that run's stage 1
    with pytest.raises(FileNotFoundError, match="no finished stage 1"):
        photos.run_student(0.02, root, out, progress=False, tag="tail", stage1_from=out / "codecs")
    with pytest.raises(ValueError, match=r"\['stage1_epochs'\] differ"):          # stage 1 is the copied run's
        photos.run_student(0.02, root, out, progress=False, tag="tail", stage1_from=out / "student-0.02",
                           stage1_epochs=2)
    arm = photos.run_student(0.02, root, out, progress=False, tag="tail", stage1_from=out / "student-0.02",
                             stage2_tail=True, stage2_epochs=1, stage2_batch_size=8)   # stage 1's settings inherited
    assert [p["method"] for p in arm["points"]] == ["entropic-tail", "stage1-only-tail"]
    assert arm["points"][0]["recipe"]["stage2_tail"] and arm["meta"]["history"][0]["seconds"] == \
        hist[0]["seconds"]                                                      # stage 1: the copied run's
    assert {k: arm["points"][1][k] for k in ("accuracy", "kb_mean", "correct_bits")} == \
        {k: per_beta["stage1-only"][k] for k in ("accuracy", "kb_mean", "correct_bits")}
    # the ablation lists the arm's final point, and its shared stage 1 once (as the recipe's)
    rows = photos.ablation({**res, "points": res["points"] + arm["points"]})
    assert [r["method"] for r in rows] == ["entropic", "entropic-tail", "stage1-only"]
    assert rows[1]["versus"] is not None and rows[0]["versus"] is None
    shutil.rmtree(out / "student-0.02-tail")
    # a later collect from a run folder without that arm keeps the shipped file's points (same photos, teacher)
    shutil.rmtree(out / "student-0.02")
    again = json.loads(photos.collect(out, root).read_text())
    assert sorted(map(photos._key, again["points"]), key=str) == sorted(map(photos._key, res["points"]), key=str)
    # a new teacher's study replaces the old one, but the old ablation's arms stay, under their teacher
    recipe = next(p for p in again["points"] if p["method"] == "entropic")
    arm = {**recipe, "method": "entropic-short", "correct_bits": rd.pack_correct([True] * 8)}
    dest = tmp_path / "data" / photos.RESULTS_FILE
    dest.write_text(json.dumps({**again, "teacher_sha256": "0" * 64, "teacher_accuracy": 12.5,
                                "points": again["points"] + [arm]}))
    new = json.loads(photos.collect(out, root).read_text())
    assert [e["teacher_sha256"] for e in new["earlier"]] == ["0" * 64]
    assert sorted(p["method"] for p in new["earlier"][0]["points"]) == ["entropic", "entropic-short",
                                                                         "stage1-only"]
    assert not any(p["method"] == "entropic-short" for p in new["points"])
    rows = photos.ablation(new)
    assert [(r["method"], r["teacher"]) for r in rows] == [("entropic", 12.5), ("entropic-short", 12.5),
                                                           ("stage1-only", 12.5)]
    base = next(p for p in new["earlier"][0]["points"] if p["method"] == "entropic")
    right = rd.unpack_correct(base["correct_bits"], 8).sum()
    assert rows[1]["versus"]["difference_pt"] == pytest.approx(100 * (8 - right) / 8) and rows[0]["versus"] is None
    # collecting again with the same (new) teacher keeps the earlier block as it is
    assert json.loads(photos.collect(out, root).read_text())["earlier"] == new["earlier"]


def test_the_shipped_real_photo_results_name_the_shipped_teacher(tmp_path):
    """``data/results_imagenette.json`` was scored with ``data/teacher_imagenette.pt`` (its digest), every point has an
    interval and per-image correctness, and no absolute path; where the photos are present, the teacher
    reproduces its test accuracy and its per-image answers exactly."""
    import json

    from minist import checkpoint, rd
    from minist.data import imagenette
    from minist.experiments import photos
    from minist.utils import data_dir
    path, teacher_path = data_dir() / photos.RESULTS_FILE, data_dir() / photos.TEACHER_FILE
    if not path.is_file():
        pytest.skip("no real-photo results shipped yet (minist photos all)")
    res = json.loads(path.read_text())
    assert res["teacher_sha256"] == checkpoint.load(teacher_path)["sha256"]
    assert not any(str(v).startswith("/") for p in res["points"] for v in p.values())
    for p in res["points"]:
        assert p["ci95"][0] <= p["accuracy"] <= p["ci95"][1] and len(rd.unpack_correct(p["correct_bits"], p["n"])) \
            == p["n"] == res["n"]
    if imagenette.default_root() is None:
        pytest.skip("../shared/data/imagenette is not present: the rest needs the photos")
    test = imagenette.load("test")
    assert test.digest() == res["test_sha256"]
    point = photos.teacher_test_point(out=tmp_path)
    assert (point["accuracy"], point["correct_bits"]) == (res["teacher_accuracy"], res["teacher_correct_bits"])


def test_photo_student_cli_passes_the_decoder_widths(monkeypatch, capsys):
    """``minist photos student --decoder-widths 128,64`` trains the arm with that decoder (the overrides that reach
    :func:`run_student`); a malformed value is refused by name before anything trains."""
    from minist.experiments import photos
    seen = {}

    def fake(beta, root, out, tag, stage1_from=None, **over):
        seen.update(beta=beta, tag=tag, **over)
        return {"points": []}
    monkeypatch.setattr(photos, "run_student", fake)
    assert photos.main(["student", "--beta", "0.01", "--decoder-widths", "128,64", "--tag", "dec2x"]) == 0
    assert seen == {"beta": 0.01, "tag": "dec2x", "decoder_widths": (128, 64)}
    for bad in ("128", "128,x", "128,0"):
        with pytest.raises(SystemExit):
            photos.main(["student", "--decoder-widths", bad])
        assert "two positive widths" in capsys.readouterr().err
    seen.clear()
    assert photos.main(["student", "--beta", "0.02"]) == 0      # no flag: the preset's decoder (no override)
    assert "decoder_widths" not in seen and "straight_through" not in seen
    assert photos.main(["student", "--beta", "0.02", "--straight-through"]) == 0
    assert seen["straight_through"] is True and "seed" not in seen
    assert photos.main(["student", "--beta", "0.01", "--seed", "1", "--tag", "s1"]) == 0
    assert seen["seed"] == 1 and seen["tag"] == "s1"


def test_photo_ablation_pairs_each_arm_with_the_arm_one_factor_away():
    """An arm is paired with the recipe (``versus``) and with every other arm at its β and stage whose recipe differs
    in one setting alone (``one_factor``): 32 + 8 with the decoder ×2 against 32 + 8 gives the decoder's effect.
    Arms two settings apart, the other stage and another β are not paired."""
    from minist import rd
    from minist.experiments import photos
    rng = np.random.default_rng(0)
    n = 400

    def point(method, beta, correct, **recipe):
        c = np.asarray(correct, dtype=bool)
        return {"method": method, "knob": "beta", "value": beta, "n": n, "accuracy": 100 * c.mean(),
                "ci95": [0, 100], "kb_mean": 1.0, "correct_bits": rd.pack_correct(c),
                "recipe": {"stage1_epochs": 16, "stage2_epochs": 4, "rate_warmup_steps": 0, **recipe}}
    base = rng.random(n) < 0.8
    better = base | (rng.random(n) < 0.3)
    long = dict(stage1_epochs=32, stage2_epochs=8, rate_warmup_steps=250)
    pts = [point("entropic", 0.01, base), point("stage1-only", 0.01, base),
           point("entropic-long", 0.01, base, **long),
           point("entropic-long-dec2x", 0.01, better, **long, decoder_widths=[128, 64]),
           point("stage1-only-long-dec2x", 0.01, better, **long, decoder_widths=[128, 64]),
           point("entropic-long", 0.02, base, **long)]
    rows = {(r["method"], r["beta"]): r for r in photos.ablation({"points": pts, "teacher_accuracy": 90.0})}
    pair = rows[("entropic-long-dec2x", 0.01)]["one_factor"]
    assert [(o["method"], o["factor"]) for o in pair] == [("entropic-long", {"decoder_widths": [None, [128, 64]]})]
    assert pair[0]["versus"] == rd.mcnemar(better, base) and pair[0]["versus"]["difference_pt"] > 0
    assert pair[0]["versus_free"] is None                                # neither measured bytes free
    free = {"correct_bits": rd.pack_correct(better), "accuracy": 100 * better.mean()}
    both = [dict(q, rate_free=free) if q["method"] in ("entropic-long", "entropic-long-dec2x") else q for q in pts]
    pair = {(r["method"], r["beta"]): r for r in photos.ablation({"points": both, "teacher_accuracy": 90.0})}[
        ("entropic-long-dec2x", 0.01)]["one_factor"]
    assert pair[0]["versus_free"]["difference_pt"] == 0                  # the same answers with bytes free
    assert [o["method"] for o in rows[("entropic-long", 0.01)]["one_factor"]] == ["entropic-long-dec2x"]
    assert rows[("entropic-long", 0.01)]["versus"] is not None          # against the recipe, three settings away
    assert rows[("stage1-only-long-dec2x", 0.01)]["one_factor"] == []   # no stage-1 arm one factor away
    assert rows[("entropic-long", 0.02)]["one_factor"] == []            # alone at its β
    assert rows[("entropic", 0.01)]["one_factor"] == []                 # the recipe's own: its arms' ``versus``
    shared = point("stage1-only-tail", 0.01, base, stage2_tail=True)      # the recipe's stage 1, shared
    rows = {(r["method"], r["beta"]): r for r in photos.ablation({"points": pts + [shared], "teacher_accuracy": 90.0})}
    assert ("stage1-only-tail", 0.01) not in rows                        # listed once, as the recipe's
    # a setting added later: a point that predates it holds its default (here: stage 1 without straight-through)
    wide = dict(long, decoder_widths=[128, 64])
    ste = point("entropic-long-dec2x-ste", 0.01, better | (rng.random(n) < 0.3), **wide, straight_through=True)
    plain = point("entropic-long-dec2x-new", 0.01, base, **wide, straight_through=False)
    rows = {(r["method"], r["beta"]): r for r in photos.ablation({"points": [*pts, ste, plain], "teacher_accuracy": 9})}
    assert [(o["method"], o["factor"]) for o in rows[("entropic-long-dec2x-ste", 0.01)]["one_factor"]] == [
        ("entropic-long-dec2x", {"straight_through": [False, True]}),
        ("entropic-long-dec2x-new", {"straight_through": [False, True]})]
    same = [o["method"] for o in rows[("entropic-long-dec2x-new", 0.01)]["one_factor"]]
    assert "entropic-long-dec2x" not in same            # False recorded = False by default: no factor apart
    # a second seed of an arm: the seed is the one factor apart (a point without one ran seed 0)
    s1 = point("entropic-long-dec2x-ste-s1", 0.01, base, **wide, straight_through=True, seed=1)
    rows = {(r["method"], r["beta"]): r for r in photos.ablation({"points": [*pts, ste, s1], "teacher_accuracy": 9})}
    assert [(o["method"], o["factor"]) for o in rows[("entropic-long-dec2x-ste-s1", 0.01)]["one_factor"]] == [
        ("entropic-long-dec2x-ste", {"seed": [0, 1]})]
