import gzip

import numpy as np
import pytest
import torch

import minist.data as mdata
from minist.data import fashion, photos
from minist.data.synth import FashionOnPhotos, cached

SMALL = dict(val_length=12, train_length=12)
# SHA-256 of the first 12 validation images (seed 0, 128 px): the same on every machine
GOLDEN_DIGEST = "b216d85b2e5d8b5354ed6d1de754b20a521c9ff79867ae689fa309c2c1c0b0b9"


def test_classification_sample_format():
    ds = FashionOnPhotos("val", "classification", **SMALL)
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 128, 128)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert isinstance(y, int) and 0 <= y < 10
    assert len(ds.classes) == 10


def test_detection_targets_are_consistent():
    ds = FashionOnPhotos("val", "detection", val_length=30)
    counts = []
    for i in range(len(ds)):
        x, t = ds[i]
        n = len(t["labels"])
        counts.append(n)
        assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and t["masks"].dtype == torch.uint8
        assert t["masks"].shape == (n, 128, 128) and t["semantic"].shape == (128, 128)
        assert ((t["labels"] >= 1) & (t["labels"] <= 10)).all()
        b = t["boxes"]
        assert (b[:, 0] < b[:, 2]).all() and (b[:, 1] < b[:, 3]).all() and b.min() >= 0 and b.max() <= 128
        # instance masks do not overlap, and the semantic map is their union, labelled
        assert t["masks"].sum(0).max() <= 1
        sem = torch.zeros(128, 128, dtype=torch.int64)
        for j, (m, lab) in enumerate(zip(t["masks"], t["labels"])):
            sem[m.bool()] = lab
            ys, xs = torch.nonzero(m, as_tuple=True)   # box = extent of the visible mask
            assert b[j].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert torch.equal(sem, t["semantic"])
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = FashionOnPhotos("val", "classification", **SMALL)
    b = FashionOnPhotos("val", "classification", **SMALL)
    c = FashionOnPhotos("val", "classification", seed=1, **SMALL)
    assert all(np.array_equal(a.render(i)[0], b.render(i)[0]) for i in range(4))
    assert not np.array_equal(a.render(0)[0], c.render(0)[0])


def test_train_epochs_differ_val_does_not():
    ds = FashionOnPhotos("train", "classification", **SMALL)
    first = ds.render(3)[0]
    ds.set_epoch(1)
    assert not np.array_equal(first, ds.render(3)[0])


def test_val_images_are_byte_identical():
    """A hash of the cached validation images: this fails if the generator changes behaviour."""
    ds = cached("val", "classification", **SMALL)
    assert ds.digest() == GOLDEN_DIGEST
    again = cached("val", "classification", **SMALL)   # served from the cache file
    assert again.digest() == GOLDEN_DIGEST
    assert torch.equal(again.targets, ds.targets)


def test_splits_use_disjoint_photos_and_objects():
    assert not set(photos.split_photos("train")) & set(photos.split_photos("val"))
    tr = FashionOnPhotos("train", **SMALL)
    va = FashionOnPhotos("val", **SMALL)
    assert tr.objects is not va.objects and len(tr.objects) == 8000 and len(va.objects) == 2000
    # no val object is a copy of a train object
    train_hashes = {o.tobytes() for o in tr.objects}
    assert not any(o.tobytes() in train_hashes for o in va.objects)


def test_the_test_split_draws_the_val_pools_on_its_own_stream():
    """The reporting split: the val set's objects and photos, other draws, its own cache key; its length does not
    change the val images (and the other way round)."""
    va, te = FashionOnPhotos("val", **SMALL), FashionOnPhotos("test", test_length=12, **SMALL)
    assert te.objects is not va.objects and np.array_equal(te.objects, va.objects)
    assert [p.shape for p in te.photos] == [p.shape for p in va.photos]
    assert len(te) == 12 and not any(torch.equal(te[i][0], va[i][0]) for i in range(4))
    assert te.cache_key() != va.cache_key()
    assert FashionOnPhotos("val", test_length=99, **SMALL).cache_key() == va.cache_key()
    assert FashionOnPhotos("test", val_length=99, test_length=12).cache_key() == te.cache_key()


def test_val_photos_decode_as_png():
    """The val photos' files really are PNG (lossless, no JPEG library version in the val set's pixels)."""
    from PIL import Image
    for name in photos.split_photos("val"):
        with Image.open(photos.photo_path(name)) as im:
            assert im.format == "PNG", name


def test_load_entry_point_and_cache():
    val = mdata.load("fashion-on-photos", split="val", task="classification", val_length=10)
    x, y = val[0]
    assert x.shape == (3, 128, 128) and isinstance(y, int)
    det = mdata.load("fashion-on-photos", split="val", task="detection", val_length=5)
    x, t = det[0]
    assert set(t) == {"boxes", "labels", "masks", "semantic"}
    train = mdata.load("fashion-on-photos", split="train", train_length=10)
    assert len(train) == 10


def test_other_sizes_work():
    x, _ = FashionOnPhotos("val", size=64, **SMALL)[0]
    assert x.shape == (3, 64, 64)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(name="imagenet-21k"), ValueError, "unknown dataset"),
    (dict(split="holdout"), ValueError, "unknown split"),
    (dict(task="captioning"), ValueError, "unknown task"),
    (dict(size=100), ValueError, "multiple of 16"),
    (dict(size=16), ValueError, "at least 32"),
    (dict(size=128.0), TypeError, "must be an int"),
    (dict(fashion="/no/such/folder"), FileNotFoundError, "neither a known source"),
    (dict(name="fashion-mnist", task="detection"), ValueError, "classification dataset"),
])
def test_bad_input_gets_clear_errors(kwargs, err, match):
    kwargs = {"name": "fashion-on-photos", "split": "val", "task": "classification", **kwargs}
    with pytest.raises(err, match=match):
        mdata.load(kwargs.pop("name"), **kwargs)


def test_fashion_mnist_subset_is_balanced():
    d = fashion.load_fashion_mnist("subset")
    assert d["train_images"].shape == (8000, 28, 28) and d["train_images"].dtype == np.uint8
    assert np.bincount(d["train_labels"]).tolist() == [800] * 10
    assert np.bincount(d["test_labels"]).tolist() == [200] * 10


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_full_set_from_a_folder_and_make_subset(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = fashion.load_fashion_mnist(tmp_path)
    assert d["train_images"].shape == (40, 28, 28) and d["test_labels"].tolist() == list(np.arange(20) % 10)
    out = fashion.make_subset(tmp_path, tmp_path / "sub.npz", per_class_train=3, per_class_test=1)
    with np.load(out) as z:
        assert np.bincount(z["train_labels"]).tolist() == [3] * 10
        assert np.array_equal(z["train_images"][0], d["train_images"][0])


def test_truncated_idx_file_is_rejected(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 50)
    with pytest.raises(ValueError, match="truncated"):
        fashion._read_idx(p)


def test_missing_fashion_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion.load_fashion_mnist(tmp_path)


def test_torchvision_download_offline_fails_clearly(monkeypatch):
    import urllib.error

    import torchvision.datasets

    class Offline:
        def __init__(self, *a, **k):
            raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(RuntimeError, match="Downloading Fashion-MNIST with torchvision failed"):
        fashion.load_fashion_mnist("torchvision")


def test_raw_fashion_mnist_for_tests():
    ds = mdata.load("fashion-mnist", split="val")
    x, y = ds[0]
    assert x.shape == (3, 28, 28) and 0 <= int(y) < 10


# ---- a val set that is byte-identical on every machine (data/README.md) ----------------------------
def test_shipped_val_sets_render_identically_into_an_empty_cache(tmp_path, monkeypatch):
    """Rendered from nothing, the val images equal the ones every shipped number was measured on."""
    import json

    from minist import pretrained
    from minist.config import TaskTrainConfig
    from minist.config import mini_val_set as val_set
    from minist.utils import data_dir
    monkeypatch.setenv("MINIST_CACHE", str(tmp_path / "empty"))
    digest = val_set().digest()
    results = json.loads((data_dir() / "results_mini.json").read_text())
    assert digest == results["val_set"]["sha256"]
    assert digest == pretrained.teacher("mini", with_meta=True)[1]["val_set"]["sha256"]
    assert digest == pretrained.student("mini", with_meta=True)[1]["val_set"]["sha256"]
    assert list((tmp_path / "empty" / "fashion-on-photos").glob("val-classification-128px-*.pt"))
    assert val_set().digest() == digest   # served from the cache file
    scenes = json.loads((data_dir() / "results_tasks_mini.json").read_text())["val_set"]
    assert TaskTrainConfig().val_scenes().digest() == scenes["sha256"]


_RENDER_200 = """
import hashlib
from minist.data.synth import FashionOnPhotos
g, h = FashionOnPhotos("val", "classification"), hashlib.sha256()
for i in range(200):
    h.update(g.render(i)[0].tobytes())
print(h.hexdigest())
"""


def test_rendering_does_not_depend_on_the_blas_kernel():
    """OpenBLAS picks a kernel per CPU; forcing another one must not change a pixel (v1's `@` changed 22 of 2000)."""
    import os
    import subprocess
    import sys
    out = {}
    for core in ("", "Prescott"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core} if core else dict(os.environ)
        out[core] = subprocess.run([sys.executable, "-c", _RENDER_200], env=env, capture_output=True, text=True,
                                   check=True).stdout.strip()
    assert len(out[""]) == 64 and out[""] == out["Prescott"]


@pytest.fixture
def _fresh_photo_checks():
    from minist.data import synth
    photos.load_photo.cache_clear()
    synth.check_renderer.cache_clear()
    yield
    photos.load_photo.cache_clear()
    synth.check_renderer.cache_clear()


def test_a_photo_that_decodes_differently_is_refused_by_name(monkeypatch, _fresh_photo_checks):
    monkeypatch.setitem(photos.PHOTO_SHA256, "moon", "0" * 16)
    monkeypatch.delenv(photos.ALLOW_DRIFT_ENV, raising=False)
    with pytest.raises(photos.PhotoMismatchError, match=r"'moon' \(moon.png, scikit-image .*Pillow .*make setup"):
        FashionOnPhotos("val", "classification", **SMALL)
    photos.load_photo.cache_clear()
    monkeypatch.setenv(photos.ALLOW_DRIFT_ENV, "1")   # the documented way round it: a warning, and a new cache key
    with pytest.warns(UserWarning, match="'moon'"):
        drift = FashionOnPhotos("val", "classification", **SMALL)
    assert drift.cache_key() == FashionOnPhotos("val", "classification", **SMALL).cache_key()
    assert np.array_equal(drift.render(0)[0], FashionOnPhotos("val", "classification", **SMALL).render(0)[0])


def test_a_resampler_that_differs_is_refused(monkeypatch, _fresh_photo_checks):
    from minist.data import synth
    monkeypatch.setattr(synth, "RENDER_PROBE_SHA256", "0" * 16)
    monkeypatch.delenv(photos.ALLOW_DRIFT_ENV, raising=False)
    with pytest.raises(photos.PhotoMismatchError, match=r"Pillow \d+.* resizes differently"):
        FashionOnPhotos("train", "classification", **SMALL)


def test_cache_key_changes_with_the_renderer_and_its_inputs(monkeypatch):
    from minist.data import synth
    ds = FashionOnPhotos("val", "classification", **SMALL)
    key = ds.cache_key()
    monkeypatch.setattr(synth, "RENDERER_VERSION", synth.RENDERER_VERSION + 1)
    assert ds.cache_key() != key
    monkeypatch.undo()
    ds.photos = [ds.photos[0].copy()] + ds.photos[1:]
    ds.photos[0][0, 0, 0] ^= 1   # a photo that decoded one level differently
    assert ds.cache_key() != key
