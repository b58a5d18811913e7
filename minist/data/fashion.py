"""Fashion-MNIST product photos: the objects of Fashion-on-Photos.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence) holds 70,000 28×28
greyscale product photos in 10 classes. minist ships a class-balanced subset in
``data/fashion_mnist_subset.npz`` so every machine builds the same images with
nothing to install; the full set can be read from the idx files (Debian package
``dataset-fashion-mnist``, any folder holding them) or downloaded by torchvision.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_bytes
from ..utils import cache_dir, data_dir

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SUBSET_FILE = "fashion_mnist_subset.npz"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_HOWTO = ("Get Fashion-MNIST one of these ways: `apt-get install dataset-fashion-mnist` "
          "(Debian/Ubuntu, files in /usr/share/datasets/fashion-mnist); pass a folder holding "
          "the four idx files (.gz or not); or, online, source='torchvision' to download it. "
          "The default source='subset' needs nothing: it is shipped in minist's data/ folder.")


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx file (magic, dims, big-endian sizes, then uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {np.prod(dims)} values, found {data.size}")
    return data.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz", folder / "raw" / stem, folder / "raw" / f"{stem}.gz",
                 folder / "FashionMNIST" / "raw" / stem, folder / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def read_idx_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read Fashion-MNIST's four idx files from ``folder`` (also torchvision's ``FashionMNIST/raw``)."""
    folder = Path(folder)
    out = {}
    for split, (img_stem, lab_stem) in _IDX.items():
        img, lab = _find(folder, img_stem), _find(folder, lab_stem)
        if img is None or lab is None:
            raise FileNotFoundError(f"Fashion-MNIST idx files ({img_stem}, {lab_stem}) not found in {folder}. {_HOWTO}")
        out[f"{split}_images"], out[f"{split}_labels"] = _read_idx(img), _read_idx(lab).astype(np.int64)
        if len(out[f"{split}_images"]) != len(out[f"{split}_labels"]):
            raise ValueError(f"{folder}: {split} images and labels differ in count")
    return out


def load_fashion_mnist(source: str | os.PathLike = "subset") -> dict[str, np.ndarray]:
    """Fashion-MNIST as ``{train,test}_{images,labels}``: uint8 (N, 28, 28) and int64 (N,).

    ``source``: ``"subset"`` (shipped, default), ``"debian"``, ``"torchvision"``
    (downloads into the cache; online only), or a folder with the idx files.
    """
    if source == "subset":
        path = data_dir() / SUBSET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; re-create it with `minist data make-subset`. {_HOWTO}")
        with np.load(path) as z:
            return {k: z[k] for k in z.files if not k.startswith("_")}
    if source == "debian":
        if not DEBIAN_DIR.is_dir():
            raise FileNotFoundError(f"{DEBIAN_DIR} does not exist. {_HOWTO}")
        return read_idx_folder(DEBIAN_DIR)
    if source == "torchvision":
        from torchvision.datasets import FashionMNIST
        root = cache_dir() / "torchvision"
        try:
            FashionMNIST(root, train=True, download=True)
            FashionMNIST(root, train=False, download=True)
        except Exception as e:  # no network, mirror down, ...
            raise RuntimeError(f"Downloading Fashion-MNIST with torchvision failed ({e}). {_HOWTO}") from e
        return read_idx_folder(root)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"Fashion-MNIST source {str(source)!r} is neither a known source "
                                f"('subset', 'debian', 'torchvision') nor an existing folder. {_HOWTO}")
    return read_idx_folder(path)


def make_subset(source: str | os.PathLike, out: str | os.PathLike, per_class_train: int = 800,
                per_class_test: int = 200) -> Path:
    """Write the shipped class-balanced subset: the first ``k`` items of each class, in file order."""
    full = load_fashion_mnist(source)
    arrays = {}
    for split, k in (("train", per_class_train), ("test", per_class_test)):
        labels = full[f"{split}_labels"]
        idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(10)]))
        if len(idx) != 10 * k:
            raise ValueError(f"{split} has fewer than {k} items of some class")
        arrays[f"{split}_images"] = full[f"{split}_images"][idx]
        arrays[f"{split}_labels"] = labels[idx]
        arrays[f"_{split}_source_index"] = idx
    return atomic_write_bytes(out, lambda f: np.savez_compressed(f, **arrays))
