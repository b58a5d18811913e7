"""The rate–accuracy study on real photographs: ``imagenette-mini`` (a benchmark outside CI).

Fashion-on-Photos flatters any task-aware bottleneck (the pasted objects' backgrounds carry no label
information) and its objects are upsampled 28×28 product shots, which JPEG keeps well at any quality.
This study repeats the comparison on real photos: the 10-class Imagenette subset in
``../shared/data/imagenette-mini`` (2,600 train + 1,000 val photos, when present).

Steps, all on 128×128 images: train the mini teacher **from scratch** on the 2,600 training photos
(random crops and flips of a 144-pixel resize; no ImageNet weights, as the issue asks), train Entropic
Students from it at a few β with the same recipe as the Fashion-on-Photos sweep (shorter), score
them at real bytes on the 1,000 val photos (batch 1), and score JPEG/WebP + the teacher on the same photos.

    minist bench imagenette        # ≈30 min on 2 CPU cores; writes runs/imagenette-mini/results.json
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from .. import checkpoint
from ..config import StudentTrainConfig, TeacherTrainConfig
from ..data.real import default_imagenette_mini
from ..evaluate import codec_accuracy, evaluate_accuracy
from ..recipes import train_student, train_teacher


class TensorImages(torch.utils.data.Dataset):
    """Images held in memory as uint8 (N, 3, S, S); an optional random crop to ``size`` and flip."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int, train: bool, name: str):
        self.images, self.labels, self.size, self.train, self.name = images, labels, size, train, name
        self.classes = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        s = self.size
        if self.train:
            top, left = torch.randint(0, x.shape[-1] - s + 1, (2,)).tolist()
            x = x[:, top:top + s, left:left + s]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        else:
            off = (x.shape[-1] - s) // 2
            x = x[:, off:off + s, off:off + s]
        return x.float() / 255, int(self.labels[i])

    def digest(self) -> str:
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()


def load_split(root: Path, split: str, size: int, train: bool) -> TensorImages:
    """Every photo of ``root/<split>/<class>/`` resized to ``size + 16`` (train) or ``size`` (val), in memory."""
    load = size + 16 if train else size
    tf = v2.Compose([v2.ToImage(), v2.Resize((load, load), antialias=True)])
    folder = ImageFolder(str(root / split), transform=tf)
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    labels = torch.tensor(folder.targets)
    ds = TensorImages(images, labels, size, train, f"imagenette-mini/{split}")
    ds.classes = folder.classes
    return ds


def run(root=None, out="runs/imagenette-mini", teacher_epochs: int = 30, betas=(0.005, 0.08),
        qualities=(5, 10, 20, 50, 90), quick: bool = False, progress: bool = True) -> dict:
    root = Path(root) if root else default_imagenette_mini()
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise FileNotFoundError("imagenette-mini not found (looked for ../shared/data/imagenette-mini); "
                                "pass root= a folder with train/<class>/ and val/<class>/ photos")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.time()
    train, val = load_split(root, "train", 128, True), load_split(root, "val", 128, False)
    if quick:
        train = torch.utils.data.Subset(train, range(0, len(train), 20))
        val = torch.utils.data.Subset(val, range(0, len(val), 20))
        teacher_epochs, betas, qualities = 1, betas[:1], qualities[:2]
    result = {"dataset": str(root), "train_images": len(train), "val_images": len(val), "points": []}
    tcfg = TeacherTrainConfig(epochs=teacher_epochs, batch_size=64, lr=0.05, warmup_epochs=1, workers=0,
                              train_length=len(train), val_length=len(val), out=str(out / "teacher"),
                              max_steps=2 if quick else None)
    teacher, tmeta = train_teacher(tcfg, progress=progress, train_set=train, val_set=val)
    result["teacher_accuracy"] = evaluate_accuracy(teacher, val)
    result["teacher_seconds"] = tmeta["train_seconds"]
    for fmt in ("jpeg", "webp"):
        for q in qualities:
            acc, sizes, headers = codec_accuracy(teacher, val, fmt, q, return_sizes=True)
            kb = sum(sizes) / len(sizes) / 1024
            result["points"].append({"method": fmt, "knob": "quality", "value": q, "kb_mean": kb,
                                     "bpp": kb * 8192 / 128**2, "accuracy": acc,
                                     "header_bytes": sum(headers) / len(headers)})
    for beta in betas:
        scfg = StudentTrainConfig(beta=beta, train_length=len(train),              # the mini recipe
                                  val_length=len(val), eval_length=min(200, len(val)), workers=0,
                                  eval_stage1=True, out=str(out / f"student-{beta:g}"),
                                  max_steps=2 if quick else None)
        student, smeta = train_student(scfg, teacher, progress=progress, train_set=train, val_set=val)
        for method, r in (("entropic", smeta["val"]), ("stage1-only", smeta.get("stage1_val"))):
            if r:
                result["points"].append({"method": method, "knob": "beta", "value": beta, "kb_mean": r["kb_mean"],
                                         "bpp": r["bpp"], "accuracy": r["accuracy"],
                                         "header_bytes": r["header_bytes"]})
    result["wall_seconds"] = time.time() - tic
    blob = json.dumps(result, indent=1).encode()
    checkpoint.atomic_write_bytes(out / "results.json", lambda f: f.write(blob))
    return result
