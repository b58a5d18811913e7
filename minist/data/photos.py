"""Background photographs that ship inside common packages (no download).

scikit-image's ``skimage/data`` folder, scikit-learn's sample images and
matplotlib's sample data hold a few real photographs and textures. Fashion-on-
Photos pastes objects on random crops of them. Train and validation use
*different* photos, so a model cannot memorise a validation background.
Validation photos are all PNG: their decoded pixels do not depend on the JPEG
decoder's version, so the cached validation set is the same on every machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
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


@cache
def load_photo(name: str) -> np.ndarray:
    """One background photo as uint8 RGB (H, W, 3); greyscale photos become 3 equal channels."""
    with Image.open(photo_path(name)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def split_photos(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[split]
