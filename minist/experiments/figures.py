"""The README's figures, drawn from the project's own code and shipped data (``minist figures``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from .. import data as mdata
from .. import pretrained
from ..evaluate import input_codec_sizes, split_point_sizes
from ..plots import plot_rd, plot_rd_studies, plot_split_sizes, show_samples
from ..utils import data_dir


def make_all(out="docs") -> list[Path]:
    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    teacher = pretrained.teacher("mini")
    images = [val[i][0] for i in range(50)]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    plot_split_sizes(split_point_sizes(teacher, images[0]), input_codec_sizes(images), ax=ax,
                     title="Mini teacher, 128×128 Fashion-on-Photos: bytes per image at each split point")
    fig.tight_layout()
    paths = [out / "split_sizes.png"]
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    det = mdata.load("fashion-on-photos", split="val", task="detection", val_length=200)
    fig = show_samples(val, n=8, ncols=8, scale=1.3)
    paths.append(out / "samples_classification.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    fig = show_samples(det, n=8, ncols=8, scale=1.3)
    paths.append(out / "samples_detection.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    paths.append(rd_figure(out / "rd_mini.png"))
    if all((data_dir() / f).is_file() for f in (pretrained.PHOTO_RESULTS_FILE, pretrained.TEST_RESULTS_FILE)):
        paths.append(photos_figure(out / "rd_photos.png"))
    return paths


def rd_figure(path="docs/rd_mini.png") -> Path:
    """The shipped rate–accuracy study (``data/results_mini.json``) as one figure."""
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(9, 5.5))
    plot_rd(pretrained.results("mini"), ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def photos_figure(path="docs/rd_photos.png") -> Path:
    """Both studies' test splits side by side (:func:`minist.plots.plot_rd_studies`): Fashion-on-Photos and real
    photographs."""
    matplotlib.use("Agg")
    fig = plot_rd_studies()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
