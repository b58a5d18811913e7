"""Measuring (docs/design.md §4): accuracy, real bytes, and what each way of splitting the network would send.

* classification: :func:`evaluate_accuracy` (a model on pixels), :func:`codec_accuracy` (the teacher on JPEG/WebP
  decodings), :func:`image_codec_accuracy` (on a learned image codec's), :func:`evaluate_student` (a student
  through its real split, one image → one bitstream, batch 1);
* tasks: :func:`evaluate_task` with :func:`teacher_predictor` / :func:`student_predictor`, and
  :func:`payload_digest` (the shared encoder's bytes must not change);
* the paper's motivating observation (docs/design.md §1): sending an intermediate feature map of the unmodified teacher
  costs *more* bytes than sending the input image compressed, because early ResNet stages widen the tensor
  (ResNet-50's ``layer1``: 256×56×56 values vs 224×224×3 pixels): :func:`split_point_sizes`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed, image_formats, rd
from .models import image_codecs
from .models import tasks as T
from .models.halves import DevicePart
from .models.teacher import Teacher


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, dataset, batch_size: int = 250, device=None,
                      progress: bool = False) -> float:
    """Top-1 accuracy (in %) of ``model`` on a classification dataset of (x, label)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    correct = total = 0
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress or None):
        pred = model(x.to(device)).argmax(1).cpu()
        correct += (pred == y).sum().item()
        total += len(y)
    model.train(was_training)
    return 100.0 * correct / total


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
            {"codec": "PNG", "quality": None,
             "bytes": float(np.mean([len(image_formats.encode(x, "png")) for x in images]))}]
    for fmt in ("jpeg", "webp"):
        for q in qualities:
            sizes = [len(image_formats.encode(x, fmt, q)) for x in images]
            rows.append({"codec": fmt.upper() if fmt == "jpeg" else "WebP", "quality": q,
                         "bytes": float(np.mean(sizes))})
    return rows


def size_stats(sizes, hw: tuple[int, int]) -> dict:
    """Mean/std bytes per image as KB (1 KB = 1024 B) and bpp for inputs of ``hw`` pixels."""
    s = torch.as_tensor(sizes, dtype=torch.float64)
    mean = float(s.mean())
    return {"n": len(s), "bytes_mean": mean, "bytes_p95": float(np.percentile(s.numpy(), 95)),
            "kb_mean": mean / 1024,
            "kb_std": float(s.std()) / 1024 if len(s) > 1 else 0.0, "bpp": 8 * mean / (hw[0] * hw[1])}


@torch.no_grad()
def decoded_accuracy(model, dataset, roundtrip, limit: int | None = None, batch_size: int = 100,
                     per_image: bool = False):
    """Accuracy (%) of ``model`` on images sent through ``roundtrip(x) → (decoded x, bytes sent)``, and the sizes.

    Every image is its own bitstream (encoded and decoded alone); the unmodified model then
    classifies the decoded pixels in batches, which gives the same predictions as batch 1
    (BatchNorm in eval mode does not mix images) in a fraction of the time. ``per_image``: also each image's
    correctness (for paired tests).
    """
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    hits, sizes = [], []
    for start in range(0, n, batch_size):
        decoded, labels = [], []
        for i in range(start, min(n, start + batch_size)):
            x, y = dataset[i]
            x_hat, nbytes = roundtrip(x)
            decoded.append(x_hat)
            labels.append(int(y))
            sizes.append(nbytes)
        pred = model(torch.stack(decoded)).argmax(1)
        hits += (pred == torch.tensor(labels)).tolist()
    acc = 100.0 * sum(hits) / n
    return (acc, sizes, hits) if per_image else (acc, sizes)


def codec_point(model, dataset, fmt: str, quality: int, limit: int | None = None) -> dict:
    """JPEG/WebP at ``quality`` + ``model`` as one RD point: accuracy with its 95 % interval, sizes, header bytes,
    and each image's correctness (``correct_bits``, :func:`minist.rd.pack_correct`) for paired tests."""
    headers = []

    def roundtrip(x):
        data = image_formats.encode(x, fmt, quality)
        headers.append(image_formats.header_size(data, fmt))
        return image_formats.decode(data), len(data)

    acc, sizes, hits = decoded_accuracy(model, dataset, roundtrip, limit, per_image=True)
    return {"method": fmt, "knob": "quality", "value": quality, "accuracy": acc,
            "ci95": list(rd.accuracy_interval(sum(hits), len(hits))), **size_stats(sizes, dataset[0][0].shape[-2:]),
            "header_bytes": float(np.mean(headers)), "correct_bits": rd.pack_correct(hits)}


def codec_accuracy(model, dataset, fmt: str, quality: int, limit: int | None = None,
                   batch_size: int = 100, return_sizes: bool = False):
    """Teacher accuracy (%) on images decoded from JPEG/WebP, and mean bytes per image (:func:`decoded_accuracy`).

    With ``return_sizes=True`` returns ``(accuracy, sizes, header_sizes)``: every image's byte count
    and how many of those bytes are the format's header (:func:`minist.image_formats.header_size`).
    """
    headers = []

    def roundtrip(x):
        data = image_formats.encode(x, fmt, quality)
        if return_sizes:
            headers.append(image_formats.header_size(data, fmt))
        return image_formats.decode(data), len(data)

    acc, sizes = decoded_accuracy(model, dataset, roundtrip, limit, batch_size)
    if return_sizes:
        return acc, sizes, headers
    return acc, sum(sizes) / len(sizes)


def image_codec_accuracy(model, teacher, dataset, batch_size: int = 100) -> dict:
    """docs/design.md §4 for a learned image codec: every image its own bitstream, then the unmodified teacher."""
    model.eval()
    acc, sizes = decoded_accuracy(teacher, dataset, lambda x: image_codecs.roundtrip(model, x), batch_size=batch_size)
    return {"accuracy": acc, **size_stats(sizes, dataset[0][0].shape[-2:]),
            "header_bytes": image_codecs.header_bytes(model)}


@torch.no_grad()
def evaluate_student(student, dataset, progress: bool = False, limit: int | None = None,
                     beta: float | None = None) -> dict:
    """Accuracy at real bytes (docs/design.md §4): device part → bytes → server part, batch 1, one bitstream per image.

    Returns accuracy (%), mean/std KB per image (1 KB = 1024 B), bpp, the payload's share, our header bytes,
    and the estimated bits Σ −log2 p (``device_part(x, with_rate=True)``) next to the real payload.
    Works for every codec: the Entropic Student, CR+BQ, the end-to-end baseline; ``beta``: the rate (a β of
    ``student.codec.grid``; None: its lowest), recorded in the result. ``ci95``: the accuracy's Wilson interval;
    ``correct_bits``: each image's correctness (:func:`minist.rd.pack_correct`), for paired tests.
    """
    student.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    side = dataset[0][0].shape[-1] if n else student.teacher_config.image_size     # the server accepts its size
    device_part, server_part = student.split(latent_sizes={student.latent_size(side)})
    hits, sizes, est_bits, hw = [], [], 0.0, None
    mine = distributed.shard(n)             # under torchrun: every world-th image, still batch 1
    for i in tqdm(mine, desc="real bytes", disable=not (progress and distributed.is_main()) or None, leave=False):
        x, y = dataset[i]
        x = x.unsqueeze(0).to(student.mean.device)
        hw = tuple(x.shape[-2:])
        data, bits = device_part(x, with_rate=True, beta=beta)
        hits.append((i, server_part(data).argmax(1).item() == int(y)))
        sizes.append(len(data))
        est_bits += bits
    parts = distributed.gather((hits, sizes, est_bits, hw))
    hits = [ok for _, ok in sorted(h for p in parts for h in p[0])]          # dataset order
    correct, est_bits = sum(hits), sum(p[2] for p in parts)
    sizes, hw = [s for p in parts for s in p[1]], next(p[3] for p in parts if p[3] is not None)
    stats = size_stats(sizes, hw)
    payload_bytes = stats["bytes_mean"] - student.header_bytes
    out = {"accuracy": 100.0 * correct / n, "ci95": list(rd.accuracy_interval(correct, n)), **stats,
           "header_bytes": student.header_bytes, "correct_bits": rd.pack_correct(hits),
           "payload_bytes_mean": payload_bytes, "estimated_bits_mean": est_bits / n,
           "payload_to_estimate": 8 * payload_bytes / max(est_bits / n, 1e-9)}
    return out if beta is None else {"beta": float(student.codec.grid.beta(student.codec.grid.index(beta))), **out}


@torch.no_grad()
def rate_free_accuracy(student, dataset, beta=None, batch_size: int = 100) -> dict:
    """The same weights with bytes free: the decoder rebuilds ``layer1`` from the latent as the codec would hand it
    over if it were sent exactly (``codec.unrounded(z, beta)``: z for a per-β student, g'(β) · g(β) · z for a
    variable-rate one), and the tail classifies it. What the bottleneck's rebuilding alone leaves of the teacher; the
    gap down to :func:`evaluate_student` at the same weights and ``beta`` is what rounding to the rate's bytes
    costs."""
    student.eval()
    hits = []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = x.to(student.mean.device)
        z_free = student.codec.unrounded(student.encode(x), beta=beta)
        hits += (student.tail(student.decoder(z_free)).argmax(1).cpu() == y).tolist()
    n = len(hits)
    return {"accuracy": 100.0 * sum(hits) / n, "ci95": list(rd.accuracy_interval(sum(hits), n)), "n": n,
            "correct_bits": rd.pack_correct(hits)}


@torch.no_grad()
def bits_on_object(student, dataset, object_mask, limit: int | None = 200) -> dict:
    """Where the bits go: the share (%) of an image's bits spent on the latent positions that cover the product.

    ``object_mask(i)`` → the (H, W) mask of sample ``i`` (:meth:`minist.data.synth.FashionOnPhotos.object_mask`:
    the generator knows it). Each position's bits are Σ_c −log2 p(ẑ) (the rANS payload is within a few per cent
    of their sum, ``payload_to_estimate``), weighted by the fraction of its cell the mask covers. Returns
    ``{"bits_on_object", "object_area", "n"}`` (both in %: the area is the share a uniform codec would spend).
    """
    student.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    inside = total = area = 0.0
    for i in range(n):
        z = student.encode(dataset[i][0].unsqueeze(0).to(student.mean.device))
        bits = student.codec.estimate_bits(z, per_position=True)[0].cpu()                  # (h, w)
        mask = object_mask(i).float()[None, None]
        cover = torch.nn.functional.adaptive_avg_pool2d(mask, tuple(bits.shape))[0, 0]
        inside, total = inside + float((bits * cover).sum()), total + float(bits.sum())
        area += float(mask.mean())
    return {"bits_on_object": 100.0 * inside / max(total, 1e-9), "object_area": 100.0 * area / n, "n": n}


# ---- tasks (notebook 04) -----------------------------------------------------------------------------------
IGNORE = 255
METRICS = {"detection": ("map", "map_50"), "segmentation": ("miou", "pixel_accuracy")}


class SegmentationScore:
    """Confusion matrix over classes; mIoU averages the classes that occur (in truth or prediction)."""

    def __init__(self, num_classes: int = 11):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        k = self.num_classes
        truth, pred = truth.reshape(-1).long(), pred.reshape(-1).long().cpu()
        keep = truth != IGNORE            # VOC's 255 = "void" border pixels are not scored
        idx = truth[keep] * k + pred[keep]
        self.confusion += torch.bincount(idx, minlength=k * k).reshape(k, k)

    def compute(self) -> dict:
        c = self.confusion.double()
        inter, union = c.diag(), c.sum(0) + c.sum(1) - c.diag()
        present = union > 0
        iou = inter[present] / union[present]
        return {"miou": 100.0 * float(iou.mean()), "pixel_accuracy": 100.0 * float(inter.sum() / c.sum()),
                "iou_per_class": [round(100.0 * float(v), 2) if p else None
                                  for v, p in zip(inter / union.clamp(min=1), present)]}


def _detection_metric():
    from torchmetrics.detection import MeanAveragePrecision  # heavy (pycocotools): only when scoring detection
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")


@torch.no_grad()
def evaluate_task(task: str, predict, dataset, limit: int | None = None, progress: bool = False,
                  per_scene: bool = False, detail: bool = False) -> dict:
    """Score ``predict(x) → (prediction dict, bytes sent or None)`` on multi-object scenes, batch 1.

    Detection: torchmetrics' ``MeanAveragePrecision`` (COCO mAP@[.5:.95], mAP@.5). Segmentation:
    mIoU and pixel accuracy from a confusion matrix. Returns the metrics and the byte sizes; ``per_scene`` adds
    ``scenes``, one record per scene in order (detection: ``(prediction, target)``; segmentation: the scene's
    confusion matrix), for a bootstrap over scenes (:func:`task_bootstrap`). ``detail``: detection adds
    :data:`DETECTION_DETAIL` (:func:`task_scores`).
    """
    T._check_task(task)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    seg, pairs, sizes = None, [], []
    mine = distributed.shard(n)          # under torchrun: every world-th scene per rank, batch 1, then gathered
    for i in tqdm(mine, desc=f"{task} eval", leave=False, disable=not (progress and distributed.is_main()) or None):
        x, target = dataset[i]
        pred, nbytes = predict(x)
        if nbytes is not None:
            sizes.append(nbytes)
        if task == "detection":
            pairs.append((i, {k: pred[k].cpu() for k in ("boxes", "scores", "labels")},
                          {"boxes": target["boxes"], "labels": target["labels"]}))
        else:
            seg = seg or SegmentationScore(pred["logits"].shape[0])     # one row/column per class of the model
            scene = SegmentationScore(seg.num_classes)
            scene.update(pred["semantic"], target["semantic"])
            seg.confusion += scene.confusion
            if per_scene:
                pairs.append((i, scene.confusion))
    parts = distributed.gather((pairs, sizes, seg.confusion if seg else None))
    sizes = [b for p in parts for b in p[1]]
    scenes = [q[1:] if task == "detection" else q[1] for q in sorted((q for p in parts for q in p[0]),
                                                                      key=lambda q: q[0])]
    if task == "detection":
        scores = task_scores(task, scenes, detail)   # in scene order, as one process would (COCO breaks ties by order)
    else:
        confusions = [p[2] for p in parts if p[2] is not None]
        seg = SegmentationScore(len(confusions[0]))
        seg.confusion = sum(confusions)
        scores = seg.compute()
    return {**scores, "n": n, "sizes": sizes, **({"scenes": scenes} if per_scene else {})}


DETECTION_DETAIL = ("map_75", "map_small", "map_medium", "mar_100")   # COCO's breakdown (no object here is large)


def task_scores(task: str, scenes, detail: bool = False) -> dict:
    """The task's metrics from per-scene records (:func:`evaluate_task`'s ``scenes``), in their order.
    ``detail``: detection adds :data:`DETECTION_DETAIL` (mAP at IoU .75, by object size, recall at 100)."""
    if task == "detection":
        metric = _detection_metric()
        for pred, target in scenes:
            metric.update([pred], [target])
        m = metric.compute()
        keys = ("map", "map_50") + (DETECTION_DETAIL if detail else ())
        return {k: 100.0 * float(m[k]) for k in keys}
    seg = SegmentationScore(len(scenes[0]))
    seg.confusion = torch.stack(list(scenes)).sum(0)
    return seg.compute()


def task_bootstrap(task: str, a, b, draws: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap over scenes of ``a`` ÷ ``b`` in the task's headline metric (mAP or mIoU), from two
    :func:`evaluate_task` ``scenes`` lists on the same scenes: the ratio in % and its 95 % percentile interval."""
    if len(a) != len(b):
        raise ValueError(f"paired scenes differ in number ({len(a)} vs {len(b)}): score both on the same scenes")
    key = METRICS[task][0]
    gen = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(draws):
        idx = torch.randint(len(a), (len(a),), generator=gen).tolist()
        ratios.append(100.0 * task_scores(task, [a[i] for i in idx])[key]
                      / task_scores(task, [b[i] for i in idx])[key])
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return {"ratio_pct": 100.0 * task_scores(task, a)[key] / task_scores(task, b)[key],
            "ci95_pct": [float(lo), float(hi)], "draws": draws, "metric": key}


def teacher_predictor(net, fmt: str | None = None, quality: int | None = None):
    """``predict(x)`` for a task teacher on the raw image, or on its JPEG/WebP decoding (real bytes)."""
    device = next(net.parameters()).device

    def predict(x):
        nbytes = None
        if fmt is not None:
            data = image_formats.encode(x, fmt, quality)
            x, nbytes = image_formats.decode(data), len(data)
        return net([x.to(device)])[0], nbytes
    return predict


def student_predictor(net, beta=None):
    """``predict(x)`` for a task student through the real split: device bytes at ``beta`` (None: the lowest β of
    its bitstream) → :class:`TaskServer`."""
    device_part, server = _device_part(net), T.TaskServer(net)

    def predict(x):
        data = device_part(x.unsqueeze(0).to(device_part.mean.device), beta=beta)
        return server(data), len(data)
    return predict


PAYLOAD_IMAGES = 50


def _device_part(model):
    """The device half that sends ``model``'s bytes: a classification student's, or a task student's (the same
    shared encoder + prior, so the same :class:`~minist.models.student.DevicePart`)."""
    return DevicePart(model.backbone.front if isinstance(model, T.TaskNet) else model)


def payload_digest(model, dataset, n: int = PAYLOAD_IMAGES) -> str:
    """SHA-256 over the payloads of the first ``n`` images, sent by a student or a task student's front."""
    device_part = _device_part(model)
    h = hashlib.sha256()
    for i in range(min(n, len(dataset))):
        h.update(device_part(dataset[i][0].unsqueeze(0).to(device_part.mean.device)))
    return h.hexdigest()
