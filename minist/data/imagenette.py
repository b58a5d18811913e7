"""The whole of Imagenette v2 on disk (``../shared/data/imagenette``) as the real-photo benchmark.

Three splits, kept apart so that no number is measured on the set it was chosen with (docs/design.md §9):

* ``"train"``: the official training photos less the hold-out, as an augmented stream (random-resized
  crop + flip, drawn per image and per epoch; ``crop="test-like"``: the test photos' resize and a random crop of
  ``size`` + flip, for fine-tuning at the test resolution);
* ``"choice"``: every ``HOLDOUT_EVERY``-th training photo of each class (file names sorted), for every choice:
  epochs, β, recipe, checkpoint;
* ``"test"``: the 3,925 official val photos, used for no choice; every reported number is measured here.

``choice`` and ``test`` are fixed 128 × 128 tensors (resize to 146, centre crop 128, the usual 0.875 ratio), kept
in ``MINIST_CACHE`` with a SHA-256 of their bytes; the training photos are kept at 160 px for the crops.
The photos are never copied into the project (ImageNet terms: ``../shared/data/README.md``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ..checkpoint import atomic_write_bytes
from ..utils import cache_dir

HOLDOUT_EVERY = 20          # 1 in 20 training photos per class → 473 choice photos of the 9,469
TRAIN_SIDE = 160            # stored side of the training photos (the random-resized crops come from it)
EVAL_RESIZE = 146           # choice/test: resize to this, centre crop ``size`` (128 / 146 ≈ 0.875)
LAYOUT_VERSION = 1          # bump when a change alters any stored pixel
SPLITS = ("train", "choice", "test")
EXTENSIONS = (".jpg", ".jpeg", ".png")
CROPS = ("random-resized", "test-like")     # the training stream's augmentation


def default_root() -> Path | None:
    """``$MINIST_IMAGENETTE`` or ``../shared/data/imagenette`` beside the checkout, if it holds train/ and val/."""
    env = os.environ.get("MINIST_IMAGENETTE")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenette")
    return next((c for c in cands if (c / "train").is_dir() and (c / "val").is_dir()), None)


def resolve_root(root=None) -> Path:
    """The folder to read, or a FileNotFoundError that says where it looked and what to do."""
    root = Path(root).expanduser() if root is not None else default_root()
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        where = root if root is not None else "../shared/data/imagenette (or $MINIST_IMAGENETTE)"
        raise FileNotFoundError(f"Imagenette photos not found at {where}: expected train/<wnid>/*.JPEG and "
                                "val/<wnid>/*.JPEG. Pass root=<folder> (--data-root), set MINIST_IMAGENETTE, or "
                                "get imagenette2 from https://github.com/fastai/imagenette")
    return root


def file_lists(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """(path, label) per split; classes are the sorted folder names of train/, the hold-out a fixed rule."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders under {root / 'train'}")
    lists = {s: [] for s in SPLITS}
    for label, wnid in enumerate(classes):
        for split, folder in (("train", "train"), ("test", "val")):
            files = sorted(p for p in (root / folder / wnid).iterdir() if p.suffix.lower() in EXTENSIONS) \
                if (root / folder / wnid).is_dir() else []
            for k, path in enumerate(files):
                held = split == "train" and k % HOLDOUT_EVERY == HOLDOUT_EVERY // 2
                lists["choice" if held else split].append((path, label))
    for split, items in lists.items():
        if not items:
            raise FileNotFoundError(f"the {split!r} split of {root} has no photos")
    return {"classes": classes, **lists}


def _decode(path: Path, side: int, crop: int | None) -> torch.Tensor:
    with Image.open(path) as im:
        img = v2.functional.pil_to_tensor(im.convert("RGB"))      # (3, H, W) uint8; greyscale → 3 channels
    img = v2.functional.resize(img, [side, side], antialias=True)  # the source photos are square (224 px)
    return v2.functional.center_crop(img, [crop, crop]) if crop else img


def _stored(root: Path, split: str, size: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The split's photos as uint8 (N, 3, S, S) and labels, decoded once and kept in the cache."""
    lists = file_lists(root)
    items = lists[split]
    side, crop = (TRAIN_SIDE, None) if split == "train" else (round(size * EVAL_RESIZE / 128), size)
    h = hashlib.sha256(f"v{LAYOUT_VERSION}|{split}|{side}|{crop}|{HOLDOUT_EVERY}".encode())
    for path, label in items:
        h.update(f"{path.relative_to(root)}|{path.stat().st_size}|{label}\n".encode())
    cache = cache_dir() / "imagenette" / f"{split}-{side}-{crop}-{h.hexdigest()[:16]}.pt"
    if cache.is_file():
        try:
            obj = torch.load(cache, map_location="cpu", weights_only=True)
            return obj["images"], obj["labels"], lists["classes"]
        except Exception:
            pass            # a broken cache file is rebuilt
    out = side if crop is None else crop
    images = torch.empty((len(items), 3, out, out), dtype=torch.uint8)
    it = range(len(items))
    if progress:
        it = tqdm(it, desc=f"decoding imagenette {split}", leave=False)
    for i in it:
        images[i] = _decode(items[i][0], side, crop)
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    atomic_write_bytes(cache, lambda f: torch.save({"images": images, "labels": labels}, f))
    return images, labels, lists["classes"]


class PhotoSet(torch.utils.data.Dataset):
    """uint8 photos served as floats in [0, 1]: fixed (``augment=False``) or augmented + flipped:
    random-resized crops (``crop="random-resized"``), or the test photos' resize with a random crop in place of the
    centre one (``crop="test-like"``: objects at the size the test photos show them; Touvron et al.'s FixRes)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int, augment: bool, name: str,
                 classes=None, min_scale: float = 0.25, crop: str = "random-resized"):
        if crop not in CROPS:
            raise ValueError(f"unknown training crop {crop!r}; choose one of {CROPS}")
        self.images, self.targets, self.size, self.augment, self.name = images, labels, size, augment, name
        self.classes = classes
        first = (v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True) if crop == "random-resized" else
                 v2.Compose([v2.Resize(round(size * EVAL_RESIZE / 128), antialias=True), v2.RandomCrop(size)]))
        self.crop = v2.Compose([first, v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment:
            x = self.crop(x)
        elif x.shape[-1] != self.size:
            x = v2.functional.center_crop(v2.functional.resize(x, [round(self.size * EVAL_RESIZE / 128)] * 2,
                                                               antialias=True), [self.size, self.size])
        return x.float().div_(255.0), int(self.targets[i])

    def digest(self) -> str:
        """SHA-256 of the stored photos and labels (for a fixed set: exactly what every score saw)."""
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.targets.numpy().tobytes())
        return h.hexdigest()


def load(split: str = "test", root=None, size: int = 128, augment: bool | None = None,
         progress: bool = False, crop: str = "random-resized") -> PhotoSet:
    """One split of the shared Imagenette (module docstring). ``augment`` defaults to True for ``train`` only;
    ``crop`` is the augmented stream's crop (:data:`CROPS`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown Imagenette split {split!r}; choose one of {SPLITS} (the official val photos "
                         "are 'test'; 'choice' is the hold-out of training photos for choosing)")
    root = resolve_root(root)
    images, labels, classes = _stored(root, split, size, progress)
    return PhotoSet(images, labels, size, split == "train" if augment is None else augment,
                    f"imagenette/{split}", classes, crop=crop)
