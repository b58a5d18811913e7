"""Loaders for real data, for online users and benchmarks.

All return ``(x, y)`` with ``x`` a float tensor (3, size, size) in [0, 1] and
``y`` a class index (classification) or a dict target in the docs/design.md §7 format.
torchvision's datasets do the reading (and, with ``download=True``, the
downloading); ``torchvision.transforms.v2`` resizes images with their boxes and
masks. Offline, a missing dataset raises a clear error that says how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _image_transform(size: int, crop: bool = True):
    if crop:
        resize = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    else:
        resize = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([v2.ToImage(), *resize, v2.ToDtype(torch.float32, scale=True)])


def _missing(name: str, root, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name} not found under {root}. {how}")


def _build(name: str, root, download: bool, how: str, make):
    """Call ``make()``; turn torchvision's 'not found' and offline download failures into clear errors."""
    try:
        return make()
    except RuntimeError as e:
        if "not found" in str(e).lower() or "corrupted" in str(e).lower():
            raise _missing(name, root, how) from e
        raise
    except OSError as e:   # URLError, socket errors, DNS failures: no internet
        if download:
            raise RuntimeError(f"Downloading {name} failed ({e}); are you offline? {how}") from e
        raise


class _Mapped(torch.utils.data.Dataset):
    def __init__(self, base, fn, classes=None):
        self.base, self.fn, self.classes = base, fn, classes

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.fn(*self.base[i])


def imagenette(root, split: str = "train", size: int = 128, download: bool = False):
    """fast.ai's Imagenette (10 ImageNet classes), the 160 px version (≈94 MB), via torchvision."""
    from torchvision.datasets import Imagenette
    how = ("Pass download=True with internet (≈94 MB), or point root at a folder holding imagenette2-160/; "
           "for an image-folder copy use minist.data.load('imagefolder', root=...).")
    ds = _build("Imagenette", root, download, how,
                lambda: Imagenette(str(root), split=split, size="160px", download=download,
                                   transform=_image_transform(size)))
    ds.classes = [c[0] for c in ds.classes]
    return ds


def image_folder(root, split: str | None = "train", size: int = 128):
    """Images in ``root/split/<class>/*`` (e.g. ``shared/data/imagenette-mini``), classes sorted by folder.

    A ``classes.tsv`` (folder name → readable name) beside the splits names the classes.
    """
    from torchvision.datasets import ImageFolder
    root = Path(root)
    folder = root / split if split else root
    if not folder.is_dir():
        raise _missing("image folder", folder, "Expected root/<split>/<class>/<image> files.")
    ds = ImageFolder(str(folder), transform=_image_transform(size),
                     is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS))
    names = root / "classes.tsv"
    if names.is_file():
        table = dict(line.split("\t")[:2] for line in names.read_text().splitlines() if "\t" in line)
        ds.readable_classes = [table.get(c, c).strip() for c in ds.classes]
    return ds


def imagenet(root, split: str = "train", size: int = 224):
    """ImageNet-1k (ILSVRC 2012), the paper's data, as ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``
    (the usual layout; the val images sorted into class folders, e.g. with the PyTorch examples' valprep.sh).

    The torchvision reference recipe: train = RandomResizedCrop(224) + horizontal flip; val = Resize(256) +
    CenterCrop(224). ImageNet is not downloadable without an account, so there is no ``download``.
    """
    from torchvision.datasets import ImageFolder
    folder = Path(root).expanduser() / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise _missing("ImageNet", folder, "Get ILSVRC2012 from image-net.org (an account is needed) and lay it out "
                       "as root/train/<wnid>/ and root/val/<wnid>/ (see docs/paper_scale.md).")
    if split == "train":
        tf = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                         v2.ToDtype(torch.float32, scale=True)])
    else:
        tf = v2.Compose([v2.ToImage(), v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size),
                         v2.ToDtype(torch.float32, scale=True)])
    return ImageFolder(str(folder), transform=tf)


def coco(root, split: str = "train", size: int = 512):
    """COCO 2017 detection (boxes xyxy, labels = COCO category ids 1…90 as torchvision's detectors use, masks),
    images resized to ``size`` × ``size``. ``root`` holds ``train2017/``, ``val2017/`` and ``annotations/``."""
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
    root = Path(root).expanduser()
    year_split = "train2017" if split == "train" else "val2017"
    ann = root / "annotations" / f"instances_{year_split}.json"
    if not ann.is_file():
        raise _missing("COCO 2017", ann, "Download train2017.zip, val2017.zip and annotations_trainval2017.zip from "
                       "cocodataset.org and unzip them into root (see docs/paper_scale.md).")
    base = wrap_dataset_for_transforms_v2(CocoDetection(str(root / year_split), str(ann)),
                                          target_keys={"boxes", "labels", "masks"})
    tf = v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.SanitizeBoundingBoxes(),
                     v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()])
    return _Mapped(_Transformed(base, tf), lambda x, t: (x, {"boxes": t["boxes"].float(),
                                                             "labels": t["labels"].long(),
                                                             "masks": t["masks"].to(torch.uint8)}))


def voc(root, split: str = "train", task: str = "detection", year: str = "2007", size: int = 256,
        download: bool = False):
    """PASCAL VOC detection (boxes, labels) or segmentation (semantic map; 255 = ignore)."""
    from torchvision.datasets import VOCDetection, VOCSegmentation, wrap_dataset_for_transforms_v2
    how = (f"Pass download=True with internet (VOC {year}; 2007 ≈ 439 MB, 2012 ≈ 2 GB), or point root at the "
           "folder holding VOCdevkit/.")
    tf = v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                     v2.ToPureTensor()])
    if task == "detection":
        base = _build("VOC", root, download, how, lambda: VOCDetection(str(root), year=year, image_set=split,
                                                                        download=download))
        ds = wrap_dataset_for_transforms_v2(base, target_keys={"boxes", "labels"})
        return _Mapped(_Transformed(ds, tf), lambda x, t: (x, {"boxes": t["boxes"].float(),
                                                               "labels": t["labels"].long()}))
    if task == "segmentation":
        base = _build("VOC", root, download, how, lambda: VOCSegmentation(str(root), year=year, image_set=split,
                                                                           download=download))
        ds = wrap_dataset_for_transforms_v2(base)
        return _Mapped(_Transformed(ds, tf), lambda x, m: (x, {"semantic": m.long().squeeze(0)}))
    raise ValueError(f"unknown VOC task {task!r}; choose 'detection' or 'segmentation'")


class _Transformed(torch.utils.data.Dataset):
    """Apply a joint v2 transform to (image, target) pairs of a wrapped dataset."""

    def __init__(self, base, tf):
        self.base, self.tf = base, tf

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.tf(*self.base[i])


def oxford_pets(root, split: str = "trainval", size: int = 128, download: bool = False):
    """Oxford-IIIT Pet: breed label (37 classes) and a trimap-derived semantic map (1 pet, 0 bg, 255 border)."""
    from torchvision.datasets import OxfordIIITPet
    how = "Pass download=True with internet (≈800 MB), or point root at the folder holding oxford-iiit-pet/."
    base = _build("Oxford-IIIT Pet", root, download, how,
                  lambda: OxfordIIITPet(str(root), split=split, target_types=("category", "segmentation"),
                                        download=download))
    img_tf = _image_transform(size, crop=False)
    nearest = v2.Resize((size, size), interpolation=v2.InterpolationMode.NEAREST)

    def fn(img, target):
        label, trimap = target
        tri = torch.from_numpy(np.asarray(trimap, dtype=np.int64))[None]
        tri = nearest(tri)[0]
        semantic = torch.where(tri == 1, 1, torch.where(tri == 2, 0, 255))
        return img_tf(img), {"label": int(label), "semantic": semantic}
    return _Mapped(base, fn, classes=base.classes)


class PennFudanPed(torch.utils.data.Dataset):
    """Penn-Fudan pedestrians (170 images, instance masks), in the docs/design.md §7 detection format.

    Layout: ``root/PNGImages/*.png`` and ``root/PedMasks/*_mask.png`` (mask value k = instance k).
    Download it (51 MB) from https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip and unzip.
    """

    URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"

    def __init__(self, root, size: int = 256, download: bool = False):
        root = Path(root)
        if download and not (root / "PNGImages").is_dir():
            from torchvision.datasets.utils import download_and_extract_archive
            try:
                download_and_extract_archive(self.URL, str(root.parent))
            except OSError as e:
                raise RuntimeError(f"Downloading PennFudanPed failed ({e}); are you offline?") from e
        self.images = sorted((root / "PNGImages").glob("*.png"))
        if not self.images:
            raise _missing("PennFudanPed", root, f"Download {self.URL} and unzip it so that "
                           "root/PNGImages and root/PedMasks exist, or pass download=True online.")
        self.root, self.size = root, size
        self.tf = v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True),
                              v2.ToDtype(torch.float32, scale=True)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        path = self.images[i]
        mask_path = self.root / "PedMasks" / f"{path.stem}_mask.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"mask {mask_path} for {path.name} is missing")
        with Image.open(path) as im:
            img = im.convert("RGB")
        with Image.open(mask_path) as m:
            inst = torch.from_numpy(np.asarray(m, dtype=np.int64))
        ids = [int(k) for k in inst.unique() if k != 0]
        s = self.size
        small = v2.functional.resize(inst[None], [s, s], interpolation=v2.InterpolationMode.NEAREST)[0]
        masks = torch.stack([(small == k) for k in ids]).to(torch.uint8) if ids else torch.zeros((0, s, s), torch.uint8)
        keep = [j for j in range(len(ids)) if masks[j].any()]
        masks = masks[keep]
        boxes = torch.zeros((len(masks), 4))
        for j, m in enumerate(masks):
            ys, xs = torch.nonzero(m, as_tuple=True)
            boxes[j] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        semantic = (masks.sum(0) > 0).long() if len(masks) else torch.zeros((s, s), dtype=torch.int64)
        return self.tf(img), {"boxes": boxes, "labels": torch.ones(len(masks), dtype=torch.int64),
                              "masks": masks, "semantic": semantic}


def default_imagenette_mini() -> Path | None:
    """``../shared/data/imagenette-mini`` beside the checkout (or ``$MINIST_IMAGENETTE_MINI``), if present."""
    env = os.environ.get("MINIST_IMAGENETTE_MINI")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenette-mini")
    return next((c for c in cands if (c / "train").is_dir()), None)
