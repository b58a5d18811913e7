"""Datasets: the offline Fashion-on-Photos default, raw Fashion-MNIST, and real-data loaders.

``minist.data.load(name, split=..., task=..., **options)`` is the one entry point::

    val = minist.data.load("fashion-on-photos", split="val", task="classification")
    x, y = val[0]      # x: float (3, 128, 128) in [0, 1]; y: int
"""

from __future__ import annotations

import torch

from . import imagenette, real
from .fashion import CLASSES, load_fashion_mnist
from .synth import FashionOnPhotos, FashionOnPhotosConfig, cached

NAMES = ("fashion-on-photos", "fashion-mnist", "imagenette", "imagenette-shared", "imagefolder", "imagenette-mini",
         "voc", "oxford-pets", "pennfudan", "imagenet", "coco")


def load(name: str = "fashion-on-photos", split: str = "val", task: str = "classification", **options):
    """A dataset of ``(x, y)`` pairs, ``x`` float (3, H, W) in [0, 1].

    * ``fashion-on-photos``: the offline default. ``split="val"`` (2,000 images, for choosing) and
      ``split="test"`` (10,000, for reporting; no choice sees it) are rendered once and cached;
      ``split="train"`` is generated on the fly (fresh each epoch with ``set_epoch``). Options: the fields of
      :class:`FashionOnPhotosConfig`.
    * ``fashion-mnist``: raw 28×28 products (for tests), ``source=`` as in
      :func:`load_fashion_mnist`.
    * ``imagenette`` / ``voc`` / ``oxford-pets`` / ``pennfudan``: real data,
      ``root=`` a folder, ``download=True`` to fetch (online only).
    * ``imagenet`` / ``coco``: the paper's data (``root=`` a local copy; see docs/paper_scale.md).
    * ``imagenette-shared``: the whole Imagenette v2 in ``../shared/data/imagenette`` (or ``root=``), splits
      ``train`` (augmented), ``choice`` (a hold-out of training photos, for choosing) and ``test`` (the official
      val photos, for reporting); see :mod:`minist.data.imagenette`.
    * ``imagefolder``: ``root/split/<class>/*``; ``imagenette-mini``: the same on
      ``../shared/data/imagenette-mini`` when it is present.
    """
    if name == "fashion-on-photos":
        use_cache = options.pop("cache", True)
        if split in ("val", "test") and use_cache:
            return cached(split, task, **options)
        return FashionOnPhotos(split, task, **options)
    if task != "classification" and name in ("fashion-mnist", "imagenette", "imagefolder", "imagenette-mini",
                                             "imagenet"):
        raise ValueError(f"{name!r} is a classification dataset; task={task!r} is not available")
    if name == "fashion-mnist":
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; choose 'train' or 'val'")
        d = load_fashion_mnist(options.get("source", "subset"))
        key = "train" if split == "train" else "test"
        x = torch.from_numpy(d[f"{key}_images"]).float().div_(255.0)[:, None].expand(-1, 3, -1, -1)
        ds = torch.utils.data.TensorDataset(x, torch.from_numpy(d[f"{key}_labels"]))
        ds.classes = CLASSES
        return ds
    if name == "imagenette-shared":
        if task != "classification":
            raise ValueError(f"'imagenette-shared' is a classification dataset; task={task!r} is not available")
        return imagenette.load(split, options.get("root"), options.get("size", 128), options.get("augment"))
    if name == "imagenette":
        return real.imagenette(_root(options), split, options.get("size", 128), options.get("download", False))
    if name in ("imagefolder", "imagenette-mini"):
        root = options.get("root") or (real.default_imagenette_mini() if name == "imagenette-mini" else None)
        if root is None:
            raise FileNotFoundError("imagenette-mini was not found at ../shared/data/imagenette-mini; pass "
                                    "root=... or set MINIST_IMAGENETTE_MINI" if name == "imagenette-mini"
                                    else "imagefolder needs root=<folder with <split>/<class>/ images>")
        return real.image_folder(root, split, options.get("size", 128))
    if name == "voc":
        return real.voc(_root(options), "train" if split == "train" else "val", task if task != "classification"
                        else "detection", options.get("year", "2007"), options.get("size", 256),
                        options.get("download", False))
    if name == "oxford-pets":
        return real.oxford_pets(_root(options), "trainval" if split == "train" else "test",
                                options.get("size", 128), options.get("download", False))
    if name == "imagenet":
        return real.imagenet(_root(options), split, options.get("size", 224))
    if name == "coco":
        return real.coco(_root(options), split, options.get("size", 512))
    if name == "pennfudan":
        return real.PennFudanPed(_root(options), options.get("size", 256), options.get("download", False))
    raise ValueError(f"unknown dataset {name!r}; choose one of {NAMES}")


def _root(options: dict):
    if "root" not in options:
        raise ValueError("this dataset needs root=<folder> (and download=True to fetch it online)")
    return options["root"]


def collate_detection(batch):
    """Collate (image, target dict) pairs into a list of images and a list of targets."""
    images, targets = zip(*batch)
    return list(images), list(targets)


__all__ = ["load", "NAMES", "CLASSES", "FashionOnPhotos", "FashionOnPhotosConfig", "cached",
           "load_fashion_mnist", "collate_detection"]
