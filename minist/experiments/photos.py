"""The study on real photographs: the whole of Imagenette v2 (``../shared/data/imagenette``), 128 × 128.

Parts, each resumable (run them again after an interruption; a finished part is skipped):

* ``teacher``: the mini teacher's architecture (ResNet-18's layout at a quarter of its widths, so the student's
  encoder stays 0.139 of its FLOPs), trained **from scratch** on the 8,996 training photos with random-resized
  crops, flips, MixUp/CutMix and a long cosine schedule; chosen on the 473 ``choice`` photos.

    minist photos teacher                 # one thread; data/README.md gives the wall time
    minist photos teacher --ship          # fp16 → data/teacher_imagenette.pt

Every number reported is measured on the 3,925 official val photos (the ``test`` split), which no choice sees.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import checkpoint
from ..config import TeacherConfig, TeacherTrainConfig
from ..data import imagenette
from ..evaluate import evaluate_accuracy
from ..models.store import load_teacher
from ..recipes import ship_half, train_teacher
from ..utils import data_dir

OUT = Path("runs/photos")
TEACHER_FILE = "teacher_imagenette.pt"
# the real-photo teacher's recipe (chosen on the ``choice`` photos; data/README.md)
TEACHER_RECIPE = dict(epochs=50, batch_size=64, lr=0.1, weight_decay=5e-4, label_smoothing=0.1, warmup_epochs=2,
                      mixup=0.2, workers=0)
TRAIN_SIZE = 112            # the teacher trains on 112-px crops and is scored at 128 px: 1.3× cheaper steps, and
                            # random-resized crops enlarge objects, which a larger test size matches (FixRes)


def teacher_config(out: Path, **overrides) -> TeacherTrainConfig:
    return TeacherTrainConfig(**{**TEACHER_RECIPE, "out": str(out / "teacher"), **overrides})


def run_teacher(root=None, out: Path = OUT, progress: bool = True, **overrides) -> dict:
    """Train (or resume) the real-photo teacher; score it on the choice and test photos."""
    train = imagenette.load("train", root, size=TRAIN_SIZE, progress=progress)
    choice = imagenette.load("choice", root, progress=progress)
    cfg = teacher_config(out, train_length=len(train), val_length=len(choice), **overrides)
    model, meta = train_teacher(cfg, resume=True, model_config=TeacherConfig.preset_config("mini"),
                                progress=progress, train_set=train, val_set=choice)
    test = imagenette.load("test", root, progress=progress)
    meta["test"] = {"accuracy": evaluate_accuracy(model, test), "n": len(test), "sha256": test.digest()}
    meta["choice"] = {"accuracy": meta["val_accuracy"], "n": len(choice), "sha256": choice.digest()}
    checkpoint.write_json(Path(cfg.out) / "scores.json", {k: meta[k] for k in ("test", "choice", "train_seconds")})
    return meta


def ship_teacher(out: Path = OUT) -> Path:
    """The trained teacher, fp16, with its scores in the metadata → ``data/teacher_imagenette.pt``."""
    src = out / "teacher" / "teacher.pt"
    scores = out / "teacher" / "scores.json"
    if not src.is_file() or not scores.is_file():
        raise FileNotFoundError(f"{src} (and its scores.json) not found: run `minist photos teacher` first")
    _, meta = load_teacher(src)
    meta.update(json.loads(scores.read_text()))
    dest = data_dir() / TEACHER_FILE
    ship_half(src, dest, meta)
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="minist photos", description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=("teacher",))
    p.add_argument("--data-root", default=None, help="the Imagenette folder (default ../shared/data/imagenette)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--ship", action="store_true", help="copy the finished result into data/")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one per job: two jobs share 2 cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, t0 = Path(args.out), time.time()
    try:
        if args.part == "teacher":
            if args.ship:
                print(f"shipped {ship_teacher(out)}")
                return 0
            over = {} if args.epochs is None else {"epochs": args.epochs}
            meta = run_teacher(args.data_root, out, **over)
            print(f"teacher: choice {meta['choice']['accuracy']:.2%} ({meta['choice']['n']}), "
                  f"test {meta['test']['accuracy']:.2%} ({meta['test']['n']}); "
                  f"{meta['train_seconds'] / 60:.0f} min of training, {(time.time() - t0) / 60:.0f} min wall")
    except FileNotFoundError as e:
        print(f"minist photos: {e}")
        return 2
    return 0


__all__ = ["run_teacher", "ship_teacher", "main", "TEACHER_RECIPE", "asdict"]
