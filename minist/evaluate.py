"""Measuring: accuracy, and what each way of splitting the network would send.

The paper's motivating observation (DESIGN §1): sending an intermediate
feature map of the unmodified teacher costs *more* bytes than sending the input
image compressed, because early ResNet stages widen the tensor (ResNet-50's
``layer1``: 256×56×56 values vs 224×224×3 pixels).
"""

from __future__ import annotations

import numpy as np
import torch

from . import codecs
from .models.teacher import Teacher
from .train import evaluate_accuracy

__all__ = ["evaluate_accuracy", "split_point_sizes", "input_codec_sizes"]

SPLIT_POINTS = ("input", "stem", "layer1", "layer2", "layer3", "layer4")
PRECISIONS = {"float32": 4.0, "float16": 2.0, "8-bit": 1.0}


@torch.no_grad()
def split_point_sizes(teacher: Teacher, x: torch.Tensor) -> list[dict]:
    """Bytes per image to send the tensor at each split point, at each precision.

    ``input`` is the normalised image tensor (3×H×W values), which a naive split
    at the very start would send. Sizes ignore headers: they are lower bounds.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    feats = teacher.features(x, ("stem", "layer1", "layer2", "layer3", "layer4"))
    rows = [{"split": "input", "shape": tuple(x.shape[1:]), "values": int(np.prod(x.shape[1:]))}]
    rows += [{"split": k, "shape": tuple(v.shape[1:]), "values": int(np.prod(v.shape[1:]))} for k, v in feats.items()]
    for r in rows:
        for name, nbytes in PRECISIONS.items():
            r[name] = r["values"] * nbytes
    return rows


def input_codec_sizes(images, qualities=(95, 75, 50, 25, 10)) -> list[dict]:
    """Mean bytes per image for the raw 8-bit image, PNG, and JPEG/WebP at each quality."""
    images = list(images)
    h, w = images[0].shape[-2:]
    rows = [{"codec": "raw RGB (8-bit)", "quality": None, "bytes": 3.0 * h * w},
            {"codec": "PNG", "quality": None, "bytes": float(np.mean([len(codecs.encode(x, "png")) for x in images]))}]
    for fmt in ("jpeg", "webp"):
        for q in qualities:
            sizes = [len(codecs.encode(x, fmt, q)) for x in images]
            rows.append({"codec": fmt.upper() if fmt == "jpeg" else "WebP", "quality": q,
                         "bytes": float(np.mean(sizes))})
    return rows


def size_stats(sizes, hw: tuple[int, int]) -> dict:
    """Mean/std bytes per image as KB (1 KB = 1024 B) and bpp for inputs of ``hw`` pixels."""
    s = torch.as_tensor(sizes, dtype=torch.float64)
    mean = float(s.mean())
    return {"n": len(s), "bytes_mean": mean, "kb_mean": mean / 1024,
            "kb_std": float(s.std()) / 1024 if len(s) > 1 else 0.0, "bpp": 8 * mean / (hw[0] * hw[1])}


@torch.no_grad()
def decoded_accuracy(model, dataset, roundtrip, limit: int | None = None, batch_size: int = 100):
    """Accuracy (%) of ``model`` on images sent through ``roundtrip(x) → (decoded x, bytes sent)``, and the sizes.

    Every image is its own bitstream (encoded and decoded alone); the unmodified model then
    classifies the decoded pixels in batches, which gives the same predictions as batch 1
    (BatchNorm in eval mode does not mix images) in a fraction of the time.
    """
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    correct, sizes = 0, []
    for start in range(0, n, batch_size):
        decoded, labels = [], []
        for i in range(start, min(n, start + batch_size)):
            x, y = dataset[i]
            x_hat, nbytes = roundtrip(x)
            decoded.append(x_hat)
            labels.append(int(y))
            sizes.append(nbytes)
        pred = model(torch.stack(decoded)).argmax(1)
        correct += int((pred == torch.tensor(labels)).sum())
    return 100.0 * correct / n, sizes


def codec_accuracy(model, dataset, fmt: str, quality: int, limit: int | None = None,
                   batch_size: int = 100, return_sizes: bool = False):
    """Teacher accuracy (%) on images decoded from JPEG/WebP, and mean bytes per image (:func:`decoded_accuracy`).

    With ``return_sizes=True`` returns ``(accuracy, sizes, header_sizes)``: every image's byte count
    and how many of those bytes are the format's header (:func:`minist.codecs.header_size`).
    """
    headers = []

    def roundtrip(x):
        data = codecs.encode(x, fmt, quality)
        if return_sizes:
            headers.append(codecs.header_size(data, fmt))
        return codecs.decode(data), len(data)

    acc, sizes = decoded_accuracy(model, dataset, roundtrip, limit, batch_size)
    if return_sizes:
        return acc, sizes, headers
    return acc, sum(sizes) / len(sizes)


@torch.no_grad()
def evaluate_student(student, dataset, progress: bool = False, limit: int | None = None) -> dict:
    """Accuracy at real bytes (DESIGN §4): compress → bytes → decompress → decoder → tail, batch 1.

    Returns accuracy (%), mean/std KB per image (1 KB = 1024 B), bpp, the payload's
    share, our header bytes, and (for a learned prior) the estimated bits Σ −log2 p for comparison.
    Works for any model whose ``split()`` gives a device part (image → bytes) and a server part
    (bytes → logits): the Entropic Student, CR+BQ, the end-to-end baseline.
    """
    from tqdm.auto import tqdm

    from . import distributed
    from .models import entropy
    student.eval()
    device_part, server_part = student.split()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    correct, sizes, est_bits = 0, [], 0.0
    hw = None
    eb = getattr(student, "entropy_bottleneck", None)
    mine = distributed.shard(n)             # under torchrun: every world-th image, still batch 1
    for i in tqdm(mine, desc="real bytes", disable=not (progress and distributed.is_main()) or None, leave=False):
        x, y = dataset[i]
        x = x.unsqueeze(0).to(next(student.parameters()).device)
        hw = tuple(x.shape[-2:])
        if eb is not None:
            z = student.encode(x)                      # what device_part computes before coding
            data = entropy.compress(eb, z)             # = device_part(x)
            est_bits += float(entropy.rate_bits(eb(z, training=False)[1]))
        else:
            data = device_part(x)
        logits = server_part(data)
        correct += int(logits.argmax(1).item() == int(y))
        sizes.append(len(data))
    parts = distributed.gather((correct, sizes, est_bits, hw))
    correct, est_bits = sum(p[0] for p in parts), sum(p[2] for p in parts)
    sizes, hw = [s for p in parts for s in p[1]], next(p[3] for p in parts if p[3] is not None)
    stats = size_stats(sizes, hw)
    payload_bytes = stats["bytes_mean"] - student.header_bytes
    out = {"accuracy": 100.0 * correct / n, **stats, "header_bytes": student.header_bytes,
           "payload_bytes_mean": payload_bytes}
    if eb is not None:
        out.update(estimated_bits_mean=est_bits / n, payload_to_estimate=8 * payload_bytes / max(est_bits / n, 1e-9))
    return out
