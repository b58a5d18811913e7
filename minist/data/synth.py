"""Fashion-on-Photos: Fashion-MNIST products pasted, tinted and textured on real photos.

The offline default of minist (docs/design.md §5). Every sample is a pure function of
``(seed, split, epoch, index)``: NumPy's PCG64 generator is the same on every
machine, and the rendering below uses only operations whose result is the same
on every machine (elementwise IEEE float32 arithmetic in a fixed order, NumPy's
fixed pairwise sums, Pillow's integer resampling; never BLAS, whose kernels
round differently on different CPUs). So the validation set is byte-identical
everywhere and can be cached; :func:`check_renderer` and the photo digests
(:mod:`minist.data.photos`) refuse to render when a library would change that.

* ``task="classification"``: one object per image; the label is its class (0–9).
* ``task="detection"``: 1–4 objects; the target holds ``boxes`` (N, 4) xyxy,
  ``labels`` (N,) = class + 1 (0 is background, the torchvision convention),
  instance ``masks`` (N, H, W) uint8 and a ``semantic`` map (H, W) (0 = background).

Objects *and* background photos differ between splits: train objects come from
Fashion-MNIST's train set and train photos, val objects from its test set and
the val photos (:mod:`minist.data.photos`).

* ``split="val"`` (2,000 images) is for choosing: recipes, epochs, checkpoints, β.
* ``split="test"`` (10,000 images) is for reporting, and no choice sees it. It is drawn from the val pools (the
  same objects and photos) with its own generator stream, so its images are new draws of the same distribution:
  its numbers carry ±0.6 pt (95 %) at 90 %, where the val set's carry ±1.3.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import PIL
import torch
from PIL import Image

from ..checkpoint import atomic_write_bytes, fingerprint
from ..utils import cache_dir, data_dir
from .fashion import CLASSES, SUBSET_FILE, load_fashion_mnist
from .photos import load_photo, photo_digest, refuse_drift, split_photos

GENERATOR_VERSION = 1   # seeds every sample's generator: changing it changes every image
# The rendering code's version, part of every cache key: bump it whenever a change to this file changes a pixel,
# so a cache rendered by older code is never reused. 2: BLAS-free luma (v1's `@` differed between CPUs).
RENDERER_VERSION = 2
TASKS = ("classification", "detection")
SPLITS = {"train": 0, "val": 1, "test": 2}     # the generator stream of each split
POOLS = {"train": "train", "val": "val", "test": "val"}   # whose objects and photos a split draws
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class FashionOnPhotosConfig:
    """Settings of the generator; its fingerprint names the validation cache."""

    size: int = 128                       # output images are size × size
    seed: int = 0
    fashion: str = "subset"               # Fashion-MNIST source, see load_fashion_mnist
    train_length: int = 24_000            # samples per training epoch (fresh each epoch)
    val_length: int = 2_000
    test_length: int = 10_000
    cls_scale: tuple[float, float] = (0.45, 0.80)   # object side / image side, classification
    det_scale: tuple[float, float] = (0.22, 0.45)   # same, detection
    max_objects: int = 4
    texture: float = 0.35                 # strongest texture modulation of an object


def check_image_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"image size must be an int, got {type(size).__name__} {size!r}")
    if size < 32 or size % 16:
        raise ValueError(f"image size must be a multiple of 16 and at least 32 (the teacher "
                         f"downsamples by 32); got {size}. Try 64, 96, 128 or 160.")
    return int(size)


def _resize(arr: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of a uint8 array (H, W[, 3]) to side × side (Pillow, integer arithmetic)."""
    return np.asarray(Image.fromarray(arr).resize((side, side), Image.BILINEAR, reducing_gap=2.0))


def _grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma (Pillow's integer ITU-R 601-2 "L" conversion)."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of float32 RGB (..., 3): float32 products, summed left to right.

    Elementwise on purpose: ``rgb @ _LUMA`` goes through BLAS, and OpenBLAS picks a kernel per CPU (with
    or without fused multiply-adds), so the last bit, and after rounding a pixel, differed between machines.
    This order reproduces, on every CPU, what the AVX2 kernel computed for the shipped val set.
    """
    return (rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1]) + rgb[..., 2] * _LUMA[2]


def _colour_luma(rgb: np.ndarray) -> float:
    """Luma of one float32 colour (3,): float32 products summed in float64, rounded to float32.

    Bit-for-bit what OpenBLAS's AVX2 ``sdot`` returned for ``hue @ _LUMA`` in the shipped val set.
    """
    p = (rgb * _LUMA).astype(np.float64)
    return float(np.float32((p[0] + p[1]) + p[2]))


# SHA-256 (16 hex) of the probe images below after _resize and _grey, with Pillow 13.0.0 (requirements/lock.txt)
RENDER_PROBE_SHA256 = "02873e11c1bb4d5a"


def render_probe() -> str:
    """Digest of Pillow's resampling and grey conversion on a fixed pseudo-random image, in the ways we use them."""
    rng = np.random.default_rng(1234)
    rgb = rng.integers(0, 256, size=(389, 389, 3), dtype=np.uint8)
    h = hashlib.sha256()
    for crop, side in ((389, 128), (250, 128), (128, 128), (97, 64), (60, 23)):   # down (with reducing_gap), same
        h.update(_resize(np.ascontiguousarray(rgb[:crop, :crop]), side).tobytes())
        h.update(_resize(_grey(np.ascontiguousarray(rgb[:crop, :crop])), side).tobytes())
    for side in (20, 28, 57, 102):   # objects: 28 px Fashion-MNIST up or down to their pasted size
        h.update(_resize(np.ascontiguousarray(rgb[:28, :28, 0]), side).tobytes())
    return h.hexdigest()[:16]


@cache
def check_renderer() -> None:
    """Refuse to render when this Pillow resamples differently from the one the shipped images were made with."""
    got = render_probe()
    if got != RENDER_PROBE_SHA256:
        refuse_drift(f"Pillow {PIL.__version__} resizes differently from the version every shipped image was "
                     f"rendered with (probe sha256 {got}…, expected {RENDER_PROBE_SHA256}…).")


def _random_crop(rng: np.random.Generator, photo: np.ndarray, side: int, lo: int, hi: int) -> np.ndarray:
    """A random square crop of ``lo``…``hi`` px (clipped to the photo), resized to ``side``."""
    h, w = photo.shape[:2]
    c = int(rng.integers(min(lo, h, w), min(hi, h, w) + 1))
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    return _resize(np.ascontiguousarray(photo[y:y + c, x:x + c]), side)


class FashionOnPhotos(torch.utils.data.Dataset):
    """Generated on the fly; ``set_epoch(e)`` gives the training split fresh images each epoch."""

    classes = CLASSES

    def __init__(self, split: str = "train", task: str = "classification",
                 config: FashionOnPhotosConfig | None = None, epoch: int = 0, **overrides):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose 'train', 'val' (for choosing) or 'test' (for reporting)")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
        self.config = cfg = FashionOnPhotosConfig(**{**asdict(config or FashionOnPhotosConfig()), **overrides})
        check_image_size(cfg.size)
        if not 1 <= cfg.max_objects <= 8:
            raise ValueError(f"max_objects must be in 1..8, got {cfg.max_objects}")
        self.split, self.task, self.epoch = split, task, epoch
        fm = load_fashion_mnist(cfg.fashion)
        key = "train" if POOLS[split] == "train" else "test"      # Fashion-MNIST's own split names
        self.objects, self.object_labels = fm[f"{key}_images"], fm[f"{key}_labels"]
        check_renderer()
        self.photos = [load_photo(n) for n in split_photos(POOLS[split])]
        # greyscale copies of the photos, for textures
        self._grey = [_grey(p) for p in self.photos]
        self.length = getattr(cfg, f"{split}_length")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, SPLITS[self.split], self.epoch, int(index), GENERATOR_VERSION])

    # ---- rendering -------------------------------------------------------------------------
    def _background(self, rng) -> np.ndarray:
        s = self.config.size
        photo = self.photos[int(rng.integers(len(self.photos)))]
        bg = _random_crop(rng, photo, s, lo=s, hi=3 * s).astype(np.float32) / 255.0
        if rng.random() < 0.5:
            bg = bg[:, ::-1]
        gain = rng.uniform(0.75, 1.25, size=3).astype(np.float32)   # mild colour cast
        return np.clip(bg * gain, 0.0, 1.0)

    def _object(self, rng, side: int):
        """One product photo at ``side`` px: (alpha, appearance (side, side, 3) before tint, label)."""
        k = int(rng.integers(len(self.objects)))
        obj = self.objects[k]
        if rng.random() < 0.5:
            obj = obj[:, ::-1]
        a = _resize(np.ascontiguousarray(obj), side).astype(np.float32) / 255.0   # (side, side)
        alpha = np.clip((a - 0.01) / 0.08, 0.0, 1.0)
        shade = 0.3 + 0.7 * a / max(float(a.max()), 1e-3)
        # texture: luminance of a random photo patch, modulating the shade
        grey = self._grey[int(rng.integers(len(self._grey)))]
        g = _random_crop(rng, grey, side, lo=side // 2, hi=2 * side).astype(np.float32) / 255.0
        t = rng.uniform(0.0, self.config.texture)
        shade = shade * (1.0 - t + t * g / max(float(g.mean()), 1e-3))
        return alpha, shade, int(self.object_labels[k])

    def _paste(self, rng, img, alpha, shade, y, x):
        """Tint the object so it stands out from the background under it, then alpha-blend it in."""
        side = alpha.shape[0]
        region = img[y:y + side, x:x + side]
        w = alpha.sum() + 1e-6
        bg_luma = float((_luma(region) * alpha).sum() / w)
        shade_mean = float((shade * alpha).sum() / w)
        if bg_luma > 0.5:
            target = rng.uniform(0.05, max(0.06, bg_luma - 0.3))
        else:
            target = rng.uniform(min(bg_luma + 0.3, 0.94), 0.95)
        hue = rng.uniform(0.15, 1.0, size=3).astype(np.float32)
        tint = hue * (target / max(_colour_luma(hue) * shade_mean, 1e-3))
        look = np.clip(shade[..., None] * tint, 0.0, 1.0)
        a = alpha[..., None]
        img[y:y + side, x:x + side] = region * (1.0 - a) + look * a

    def render(self, index: int, with_mask: bool = False):
        """Sample ``index`` as a uint8 (H, W, 3) array and its label (or NumPy target dict).

        ``with_mask`` (classification): also the product's mask (H, W) bool, alpha > ½, from the same draws."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        cfg, rng = self.config, self.rng(index)
        s = cfg.size
        img = self._background(rng)
        if self.task == "classification":
            side = int(rng.integers(int(cfg.cls_scale[0] * s), int(cfg.cls_scale[1] * s) + 1))
            alpha, shade, label = self._object(rng, side)
            y, x = (int(rng.integers(0, s - side + 1)) for _ in range(2))
            self._paste(rng, img, alpha, shade, y, x)
            image = np.rint(img * 255.0).astype(np.uint8)
            if not with_mask:
                return image, label
            mask = np.zeros((s, s), dtype=bool)
            mask[y:y + side, x:x + side] = alpha > 0.5
            return image, label, mask
        return self._render_scene(rng, img)

    def object_mask(self, index: int) -> torch.Tensor:
        """Where the product of classification sample ``index`` is: (H, W) bool (the generator knows it)."""
        if self.task != "classification":
            raise ValueError("object_mask is for classification samples; scenes carry their masks in the target")
        return torch.from_numpy(self.render(index, with_mask=True)[2])

    def _render_scene(self, rng, img):
        cfg, s = self.config, self.config.size
        n = int(rng.integers(1, cfg.max_objects + 1))
        masks, labels = [], []
        for _ in range(n):
            side = int(rng.integers(int(cfg.det_scale[0] * s), int(cfg.det_scale[1] * s) + 1))
            alpha, shade, label = self._object(rng, side)
            full = np.zeros((s, s), dtype=bool)
            for _try in range(10):   # place it so no earlier object loses more than 30 % of itself
                y, x = (int(rng.integers(0, s - side + 1)) for _ in range(2))
                full[:] = False
                full[y:y + side, x:x + side] = alpha > 0.5
                if all((m & full).sum() <= 0.3 * m.sum() for m in masks):
                    break
            else:
                continue
            self._paste(rng, img, alpha, shade, y, x)
            masks = [m & ~full for m in masks]
            masks.append(full.copy())
            labels.append(label + 1)
        image = np.rint(img * 255.0).astype(np.uint8)
        masks_arr = np.stack(masks).astype(np.uint8) if masks else np.zeros((0, s, s), np.uint8)
        semantic = np.zeros((s, s), dtype=np.int64)
        boxes = np.zeros((len(masks), 4), dtype=np.float32)
        for j, (m, lab) in enumerate(zip(masks, labels)):
            semantic[m] = lab
            ys, xs = np.nonzero(m)
            boxes[j] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        return image, {"boxes": boxes, "labels": np.array(labels, dtype=np.int64),
                       "masks": masks_arr, "semantic": semantic}

    def __getitem__(self, index: int):
        image, y = self.render(index)
        x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)   # (3, H, W) in [0, 1]
        return x, (y if self.task == "classification" else _target_to_torch(y))

    def cache_key(self) -> str:
        source = self.config.fashion
        if source == "subset":   # a changed subset must not reuse an old cache
            source = hashlib.sha256((data_dir() / SUBSET_FILE).read_bytes()).hexdigest()[:16]
        config = asdict(self.config)   # the other splits' lengths do not change these images
        for other in SPLITS.keys() - {self.split}:
            config.pop(f"{other}_length")
        inputs = [photo_digest(p) for p in self.photos] + [render_probe()]   # what the pixels were made from
        return fingerprint(GENERATOR_VERSION, RENDERER_VERSION, self.split, self.task, self.epoch, config, source,
                           inputs)


def _target_to_torch(t: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()}


class CachedImages(torch.utils.data.Dataset):
    """A fixed set of uint8 images (N, 3, H, W) with labels or targets, served as floats in [0, 1]."""

    def __init__(self, images: torch.Tensor, targets, classes=CLASSES, task: str = "classification"):
        self.images, self.targets, self.classes, self.task = images, targets, classes, task

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        x = self.images[index].float().div_(255.0)
        y = self.targets[index]
        return x, (int(y) if self.task == "classification" else dict(y))

    def digest(self) -> str:
        """SHA-256 of the images' bytes: equal on every machine for the same settings."""
        return hashlib.sha256(self.images.numpy().tobytes()).hexdigest()


def cached(split: str = "val", task: str = "classification", refresh: bool = False, **overrides) -> CachedImages:
    """Render a split once and keep it in the cache (``MINIST_CACHE``); later calls load it."""
    gen = FashionOnPhotos(split, task, **overrides)
    path = cache_dir() / "fashion-on-photos" / f"{split}-{task}-{gen.config.size}px-{gen.cache_key()}.pt"
    if path.is_file() and not refresh:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return CachedImages(obj["images"], obj["targets"], task=task)
        except Exception:
            pass  # a broken cache file is simply rebuilt
    images = torch.empty((len(gen), 3, gen.config.size, gen.config.size), dtype=torch.uint8)
    targets = []
    for i in range(len(gen)):
        img, y = gen.render(i)
        images[i] = torch.from_numpy(img).permute(2, 0, 1)
        targets.append(y if task == "classification" else _target_to_torch(y))
    if task == "classification":
        targets = torch.tensor(targets, dtype=torch.int64)
    atomic_write_bytes(path, lambda f: torch.save({"images": images, "targets": targets}, f))
    return CachedImages(images, targets, task=task)
