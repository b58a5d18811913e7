"""Background photographs that ship inside common packages (no download).

scikit-image's ``skimage/data`` folder, scikit-learn's sample images and
matplotlib's sample data hold a few real photographs and textures. Fashion-on-
Photos pastes objects on random crops of them. Train and validation use
*different* photos, so a model cannot memorise a validation background.
Validation photos are all PNG: their decoded pixels do not depend on the JPEG
decoder's version.

Every photo's decoded pixels are checked against :data:`PHOTO_SHA256`, the digests
the shipped val set and training stream were rendered from. A photo that decodes
differently (another scikit-image release replaced the file, another Pillow or
libjpeg decodes a JPEG differently) raises :class:`PhotoMismatchError`, which names
the photo, so a changed input never silently changes the images (data/README.md,
"A val set that is byte-identical on every machine").
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

# name -> (package, file inside that package's data folder)
PHOTOS = {
    # train
    "astronaut": ("skimage", "astronaut.png"),
    "coffee": ("skimage", "coffee.png"),
    "camera": ("skimage", "camera.png"),
    "brick": ("skimage", "brick.png"),
    "grass": ("skimage", "grass.png"),
    "coins": ("skimage", "coins.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "hubble": ("skimage", "hubble_deep_field.jpg"),
    "retina": ("skimage", "retina.jpg"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
    # val
    "chelsea": ("skimage", "chelsea.png"),
    "ihc": ("skimage", "ihc.png"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "gravel": ("skimage", "gravel.png"),
    "moon": ("skimage", "moon.png"),
}
# name -> SHA-256 (first 16 hex digits) of the decoded uint8 RGB pixels, as shipped (Pillow 13.0.0,
# scikit-image 0.26.0, scikit-learn 1.9.1, matplotlib 3.11.2: requirements/lock.txt)
PHOTO_SHA256 = {
    "astronaut": "a8c429c18afa7b0f", "coffee": "0ce2b51640b9c95f", "camera": "13e2b4aa92cb1649",
    "brick": "3501e216fb0968c3", "grass": "c7ca5c984d6b5a27", "coins": "aaecc2ad43bd43e2",
    "rocket": "3d4435cc745752b7", "hubble": "9a3ea9548188f81e", "retina": "3670e389d0dae9f7",
    "china": "e701459344fd6979", "flower": "3202904ed246795b", "grace_hopper": "f7f982de68dd296a",
    "chelsea": "416b729128bfb2c3", "ihc": "c5b3ef509a92f16d", "motorcycle": "ca829467c1d4f427",
    "gravel": "e73bd88250cbfd7f", "moon": "a641c47851a3252e",
}
# set to 1 to render from photos that decode differently anyway (a warning instead of an error)
ALLOW_DRIFT_ENV = "MINIST_ALLOW_PHOTO_DRIFT"
SPLITS = {
    "train": ("astronaut", "coffee", "camera", "brick", "grass", "coins", "rocket", "hubble",
              "retina", "china", "flower", "grace_hopper"),
    "val": ("chelsea", "ihc", "motorcycle", "gravel", "moon"),
}


def _package_folder(package: str) -> Path:
    if package == "skimage":
        import skimage.data
        return Path(skimage.data.__file__).parent
    if package == "sklearn":
        import sklearn.datasets
        return Path(sklearn.datasets.__file__).parent / "images"
    if package == "matplotlib":
        import matplotlib
        return Path(matplotlib.get_data_path()) / "sample_data"
    raise ValueError(package)


def photo_path(name: str) -> Path:
    package, file = PHOTOS[name]
    try:
        path = _package_folder(package) / file
    except ImportError as e:
        raise ImportError(f"background photo {name!r} comes with {package}; install it "
                          f"(`pip install scikit-image scikit-learn matplotlib`).") from e
    if not path.is_file():
        raise FileNotFoundError(f"background photo {name!r} is missing from {path}; "
                                f"reinstall {package}.")
    return path


class PhotoMismatchError(RuntimeError):
    """A background photo decodes to other pixels than the ones every shipped image was rendered from."""


def _versions(package: str) -> str:
    import importlib.metadata as md
    dist = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}[package]
    return f"{dist} {md.version(dist)}, Pillow {PIL.__version__}"


def photo_digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


@cache
def load_photo(name: str) -> np.ndarray:
    """One background photo as uint8 RGB (H, W, 3); greyscale photos become 3 equal channels.

    Raises :class:`PhotoMismatchError` if its pixels differ from the shipped ones (:data:`PHOTO_SHA256`),
    unless ``MINIST_ALLOW_PHOTO_DRIFT=1``.
    """
    path = photo_path(name)
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    got, expected = photo_digest(arr), PHOTO_SHA256[name]
    if got != expected:
        refuse_drift(f"background photo {name!r} ({path.name}, {_versions(PHOTOS[name][0])}) decodes differently "
                     f"on this machine: sha256 {got}…, expected {expected}…. Every shipped image and result was "
                     f"rendered from the expected pixels.")
    return arr


def refuse_drift(what: str) -> None:
    """Raise :class:`PhotoMismatchError` (say how to fix it), or only warn if ``MINIST_ALLOW_PHOTO_DRIFT=1``."""
    msg = (f"{what} Install the tested versions with `make setup` (or `pip install -c requirements/lock.txt -e .`); "
           f"to render anyway (the images will differ from the shipped ones), set {ALLOW_DRIFT_ENV}=1.")
    if os.environ.get(ALLOW_DRIFT_ENV) != "1":
        raise PhotoMismatchError(msg)
    warnings.warn(msg, stacklevel=3)


def split_photos(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[split]
