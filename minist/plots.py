"""Figures, drawn the field's way: rate on x, accuracy on y, one colour per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from . import pretrained, rd

# one colour per method, the same in every notebook
# one colour per name, never shared (tests/test_rd.py checks it): the same method looks the same in every figure
METHOD_COLORS = {
    "teacher": "#444444", "raw": "#999999", "PNG": "#8c564b", "JPEG": "#1f77b4", "WebP": "#ff7f0e",
    "float32": "#d62728", "float16": "#e377c2", "8-bit": "#7b4173", "Entropic Student": "#2ca02c",
    "stage 1 only": "#98df8a", "stage-1 loss: the paper's": "#e7ba52", "stage-1 loss: layer2–4": "#006d2c",
    "stage-1 loss: Grad-CAM-weighted": "#843c39", "stage 1 only, the paper's loss": "#f5deb3",
    "stage 1 only, Grad-CAM-weighted": "#e7969c",
    "CR+BQ": "#9467bd", "end-to-end (Singh)": "#bcbd22",
    "factorized prior + teacher": "#17becf", "hyperprior + teacher": "#393b79",
    "variable-rate student": "#a50f15", "variable-rate, stage 1 only": "#fc9272",
    "ablation: 8 + 2 epochs": "#08519c", "ablation: 8 + 2 epochs, stage 1 only": "#9ecae1",
    "ablation: MixUp α = 1": "#54278f", "ablation: MixUp α = 1, stage 1 only": "#bcbddc",
    "ablation: 32 + 8 epochs": "#00441b", "ablation: 32 + 8 epochs, stage 1 only": "#74c476",
    "ablation: 32 + 8 epochs, decoder ×2": "#3f007d", "ablation: 32 + 8 epochs, decoder ×2, stage 1 only": "#9e9ac8",
    "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding": "#67001f",
    "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, stage 1 only": "#f4a582",
    "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, seed 1": "#d6604d",
    "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, seed 1, stage 1 only": "#fddbc7",
    "ablation: stage 2 trains the tail": "#7f2704", "ablation: stage 2 trains the tail, stage 1 only": "#fdae6b",
}

# the ``method`` keys of the shipped results (``minist.pretrained.results``) → legend names
METHOD_LABELS = {
    "entropic": "Entropic Student", "stage1-only": "stage 1 only",
    "paper-loss": "stage-1 loss: the paper's", "paper-loss-stage1-only": "stage 1 only, the paper's loss",
    "task-aware": "stage-1 loss: Grad-CAM-weighted", "task-aware-stage1-only": "stage 1 only, Grad-CAM-weighted",
    "crbq": "CR+BQ",
    "end-to-end": "end-to-end (Singh)", "factorized": "factorized prior + teacher",
    "hyperprior": "hyperprior + teacher", "jpeg": "JPEG", "webp": "WebP",
    "variable-rate": "variable-rate student", "variable-rate-stage1-only": "variable-rate, stage 1 only",
    # the real-photo ablation's arms (``minist photos student --tag …``)
    "entropic-short": "ablation: 8 + 2 epochs", "stage1-only-short": "ablation: 8 + 2 epochs, stage 1 only",
    "entropic-mixup": "ablation: MixUp α = 1", "stage1-only-mixup": "ablation: MixUp α = 1, stage 1 only",
    "entropic-long": "ablation: 32 + 8 epochs", "stage1-only-long": "ablation: 32 + 8 epochs, stage 1 only",
    "entropic-long-dec2x": "ablation: 32 + 8 epochs, decoder ×2",
    "stage1-only-long-dec2x": "ablation: 32 + 8 epochs, decoder ×2, stage 1 only",
    "entropic-long-dec2x-ste": "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding",
    "stage1-only-long-dec2x-ste": "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, stage 1 only",
    "entropic-long-dec2x-ste-s1": "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, seed 1",
    "stage1-only-long-dec2x-ste-s1":
        "ablation: 32 + 8 epochs, decoder ×2, straight-through rounding, seed 1, stage 1 only",
    "entropic-tail": "ablation: stage 2 trains the tail",
    "stage1-only-tail": "ablation: stage 2 trains the tail, stage 1 only",
}
# methods that compress the teacher's features (solid lines); the others compress the input (dashed)
FEATURE_METHODS = ("entropic", "stage1-only", "paper-loss", "task-aware", "crbq", "end-to-end", "variable-rate",
                   "variable-rate-stage1-only", "paper-loss-stage1-only", "task-aware-stage1-only",
                   "entropic-short", "stage1-only-short", "entropic-mixup", "stage1-only-mixup", "entropic-long",
                   "stage1-only-long", "entropic-tail", "stage1-only-tail",
                   "entropic-long-dec2x", "stage1-only-long-dec2x", "entropic-long-dec2x-ste",
                   "stage1-only-long-dec2x-ste", "entropic-long-dec2x-ste-s1", "stage1-only-long-dec2x-ste-s1")
KNOB_SYMBOLS = {"beta": "β", "quality": "q", "lambda": "λ", "channels": "C"}


PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324"]  # noqa: E501  ten classes, ten colours


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def draw_sample(x: torch.Tensor, y, classes=None, alpha: float = 0.45) -> torch.Tensor:
    """One image (3, H, W) in [0, 1] with its boxes and masks (detection targets) drawn on; uint8."""
    img = _as_uint8(x)
    if isinstance(y, dict):
        if "masks" in y and len(y["masks"]):
            colors = [PALETTE[i % len(PALETTE)] for i in range(len(y["masks"]))]
            img = draw_segmentation_masks(img, y["masks"].bool(), alpha=alpha, colors=colors)
        if "boxes" in y and len(y["boxes"]):
            names = None
            if classes is not None and "labels" in y:
                names = [classes[int(k) - 1] for k in y["labels"]]
            img = draw_bounding_boxes(img, y["boxes"], labels=names, colors="yellow", width=1)
    return img


def show_samples(dataset, n: int = 16, ncols: int = 8, classes=None, start: int = 0, scale: float = 1.6):
    """A grid of ``n`` samples with their labels, boxes and masks overlaid; returns the figure."""
    classes = classes or getattr(dataset, "classes", None)
    n = min(n, len(dataset))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(start, start + n), axes.flat):
        x, y = dataset[i]
        ax.imshow(draw_sample(x, y, classes).permute(1, 2, 0).numpy())
        if not isinstance(y, dict):
            ax.set_title(classes[int(y)] if classes else str(int(y)), fontsize=8)
        else:
            ax.set_title(f"{len(y.get('labels', []))} objects", fontsize=8)
    fig.tight_layout()
    return fig


def plot_split_sizes(split_rows: list[dict], codec_rows: list[dict], ax=None, title: str | None = None):
    """Bytes per image at each split point (float32/float16/8-bit) next to the input's codecs.

    Log-scale bars: the dashed line is the raw 8-bit image; anything above it is
    worse than sending the uncompressed picture.
    """
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.2))
    labels = [r["split"] for r in split_rows]
    xs = np.arange(len(labels))
    width = 0.26
    for j, prec in enumerate(("float32", "float16", "8-bit")):
        vals = [r[prec] / 1024 for r in split_rows]
        ax.bar(xs + (j - 1) * width, vals, width, label=f"feature as {prec}", color=METHOD_COLORS[prec])
    raw = next(r["bytes"] for r in codec_rows if r["codec"].startswith("raw")) / 1024
    ax.axhline(raw, color=METHOD_COLORS["raw"], ls="--", lw=1.5, label=f"raw image, 8-bit ({raw:.0f} KB)")
    base = len(labels)
    codec_x, codec_labels = [], []
    for k, r in enumerate(r for r in codec_rows if not r["codec"].startswith("raw")):
        name = r["codec"] + (f" q{r['quality']}" if r["quality"] is not None else "")
        codec_x.append(base + 0.5 + k * 0.55)
        codec_labels.append(name)
        fam = r["codec"] if r["codec"] in METHOD_COLORS else "PNG"
        ax.bar(codec_x[-1], r["bytes"] / 1024, 0.45, color=METHOD_COLORS[fam], label=fam)
    ax.set_yscale("log")
    ax.set_xticks(list(xs) + codec_x)
    ax.set_xticklabels(labels + codec_labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("KB per image to send (1 KB = 1024 B, log scale)")
    ax.set_title(title or "Splitting the unmodified teacher sends more than the image itself")
    handles, names = ax.get_legend_handles_labels()
    seen, h2, n2 = set(), [], []
    for h, n in zip(handles, names):
        if n not in seen and not n.startswith("_"):
            seen.add(n)
            h2.append(h)
            n2.append(n)
    ax.legend(h2, n2, fontsize=8, ncol=2, loc="upper right")
    return ax


def plot_rd(res: dict, ax=None, methods=None, annotate: bool = True, image_pixels: int | None = None,
            title: str | None = None, clip: float | None = 15.0):
    """Accuracy against KB per image for every method in ``res`` (:func:`minist.pretrained.results`, or
    ``data/results_imagenette.json``).

    Rate on a log x axis in KB (1 KB = 1024 B, headers included), bpp on the secondary axis; the
    teacher's accuracy on uncompressed images is the dashed reference line. Feature-compression
    methods are solid, input-compression ones dashed. The y axis spans where the comparison happens: from
    ``clip`` points below the teacher (or the lowest point above that) to just above it; a point further down (a
    collapsed student, JPEG at q1) is named in a note at the foot of the axes, not drawn to scale
    (``clip=None`` shows everything). Returns the axes.
    """
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    t = res["teacher_accuracy"]
    n = res["val_set"]["n"] if "val_set" in res else res.get("n")
    counts = {p["n"] for p in res["points"] if p["method"] in (methods or METHOD_LABELS) and "n" in p}
    if n is not None and counts - {n}:
        raise ValueError(f"a comparison on different images: the teacher was scored on {n} images, points on "
                         f"{sorted(counts)}; score every method on the same set (or pass `methods=` to draw fewer)")
    floor = t - clip if clip is not None else -1.0
    present = rd.held(res, METHOD_LABELS)
    shown, below = [], []
    for m in (methods or present):
        pts = sorted((p for p in res["points"] if p["method"] == m), key=lambda p: p["kb_mean"])
        if not pts:
            continue
        label = METHOD_LABELS.get(m, m)
        style = "-" if m in FEATURE_METHODS else "--"
        ax.plot([p["kb_mean"] for p in pts], [p["accuracy"] for p in pts], style, marker="o", ms=4, lw=1.8,
                color=METHOD_COLORS.get(label), label=label, zorder=3 if m == "entropic" else 2)
        shown += [p["accuracy"] for p in pts if p["accuracy"] >= floor]
        below += [(label, p) for p in pts if p["accuracy"] < floor]
        if annotate and m in ("entropic", "crbq"):
            for p in pts:
                if p["accuracy"] >= floor:
                    ax.annotate(f"{KNOB_SYMBOLS.get(p['knob'], p['knob'])}={p['value']:g}",
                                (p["kb_mean"], p["accuracy"]), textcoords="offset points", xytext=(4, -10),
                                fontsize=7, color=METHOD_COLORS.get(label))
    ax.axhline(t, color=METHOD_COLORS["teacher"], ls=":", lw=1.5, label=f"teacher, uncompressed ({t:.1f} %)")
    if clip is not None:
        ax.set_ylim(min(shown + [t]) - 1.0, max(shown + [t]) + 1.0)
    if below:
        note = "\n".join(f"{lab} {KNOB_SYMBOLS.get(p['knob'], p['knob'])}={p['value']:g}: {p['accuracy']:.1f} % at "
                         f"{p['kb_mean']:.2f} KB" for lab, p in below)
        ax.text(0.01, 0.98, "below the axis:\n" + note, transform=ax.transAxes, fontsize=7, color="#555555",
                va="top", bbox=dict(facecolor="white", edgecolor="none", alpha=0.8))
    ax.set_xscale("log")
    _plain_log_labels(ax.xaxis)
    ax.set_xlabel("KB per image (1 KB = 1024 B, headers included; log scale)")
    ax.set_ylabel("top-1 accuracy after real decoding (%)")
    pixels = image_pixels or 128 * 128
    sec = ax.secondary_xaxis("top", functions=(lambda kb: kb * 8192 / pixels, lambda bpp: bpp * pixels / 8192))
    sec.set_xlabel(f"bits per pixel ({int(pixels ** 0.5)}×{int(pixels ** 0.5)} input)")
    _plain_log_labels(sec.xaxis)
    default = f"Rate vs accuracy, {res.get('preset', '')} setting, {n or 0:,} val images"
    ax.set_title(title if title is not None else default, fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    return ax


# the last two: the real-photo ablation's best arm (32 + 8 epochs, decoder ×2, straight-through rounding) and its
# second seed, drawn where a study has them, so the figure shows the student curves that cross the teacher − 1 pt on
# photos, and how far two seeds of one recipe lie apart
STUDY_METHODS = ("entropic", "variable-rate", "stage1-only", "jpeg", "webp", "entropic-long-dec2x-ste",
                 "entropic-long-dec2x-ste-s1")


def plot_rd_studies(methods=STUDY_METHODS):
    """Both shipped studies side by side, the same methods in the same colours, each against its own teacher and
    each on its test split, which no choice saw: Fashion-on-Photos (:func:`minist.pretrained.test_results`: 10,000
    images, the per-β students, the variable-rate student's anchors, JPEG and WebP) and real photographs
    (:func:`minist.pretrained.photo_results`, Imagenette's 3,925 official val photos, with its straight-through
    ablation arm). A method a study lacks is left out of its panel. Returns the figure."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    mini = pretrained.test_results()
    photos = pretrained.photo_results()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, res, name in ((axes[0], mini, "Fashion-on-Photos"), (axes[1], photos, "Imagenette (real photos)")):
        n = res["n"]
        plot_rd(res, ax=ax, methods=rd.held(res, methods),
                title=f"{name}: {n:,} test images, 128×128, real bytes")
    fig.tight_layout()
    return fig


def _plain_log_labels(axis) -> None:
    """A log axis labelled 0.1, 1, 10, not 1e−01; and 2, 5 × those where it spans under two decades (2, 3, 4, 6 ×
    under one)."""
    from matplotlib.ticker import FuncFormatter

    def minor(x, _):
        lo, hi = sorted(axis.get_view_interval())
        lead = round(x / 10 ** np.floor(np.log10(x)), 6) if x > 0 else 0
        if lo <= 0 or hi / lo >= 100:
            return ""
        return f"{x:g}" if lead in ((2, 3, 4, 6) if hi / lo < 10 else (2, 5)) else ""
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _plain_kb_ticks(ax, ticks) -> None:
    """A log KB axis labelled 0.1, 0.2, 0.5, 1 … instead of powers of ten."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_bits_on_product(res: dict, methods, ax=None, area: float | None = None):
    """Where the bits go, per method: the share (%) of the coded bits inside the product's mask against KB per
    image, for every point that records ``bits_on_object`` (the stage-1 loss ablation); ``area``: the product's
    share of the image, the line a codec that spread its bits evenly would sit on. Returns the axes."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        pts = sorted((p for p in res["points"] if p["method"] == m and p.get("bits_on_object") is not None),
                     key=lambda p: p["kb_mean"])
        if pts:
            label = METHOD_LABELS.get(m, m)
            ax.plot([p["kb_mean"] for p in pts], [p["bits_on_object"] for p in pts], "-", marker="o", ms=4,
                    color=METHOD_COLORS.get(label), label=label)
    if area is not None:
        ax.axhline(area, color=METHOD_COLORS["teacher"], ls=":", lw=1.5, label=f"the product's area ({area:.1f} %)")
    ax.set_xscale("log")
    _plain_kb_ticks(ax, [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
    ax.set_ylim(0, 100)
    ax.set_xlabel("KB per image (log scale)")
    ax.set_ylabel("coded bits inside the product's mask (%)")
    ax.legend(fontsize=8, loc="upper right")
    return ax


TASK_METRIC_LABELS = {"map": "mAP@[.5:.95] (%)", "map_50": "mAP@.5 (%)", "miou": "mIoU (%)",
                      "pixel_accuracy": "pixel accuracy (%)"}


def draw_predictions(x: torch.Tensor, boxes=None, semantic=None, classes=None, score_thresh: float = 0.5,
                     alpha: float = 0.45, scale: int = 1) -> torch.Tensor:
    """One image with predicted boxes (``{"boxes", "labels", "scores"}``) and a semantic map drawn on; uint8.

    Boxes with a score ≥ ``score_thresh`` are drawn, one per object (class-agnostic NMS at IoU 0.5). Labels follow
    the detection convention (0 = background, k = ``classes[k - 1]``); the semantic map's colours are
    :func:`class_colors`. ``scale`` > 1 draws on an image that many times larger (nearest), so box labels fit.
    """
    if scale > 1:
        x = torch.nn.functional.interpolate(x[None].float(), scale_factor=scale, mode="nearest")[0]
        semantic = None if semantic is None else torch.nn.functional.interpolate(
            semantic[None, None].float(), scale_factor=scale, mode="nearest")[0, 0].long()
        boxes = None if boxes is None else {**boxes, "boxes": boxes["boxes"] * scale}
    img = _as_uint8(x)
    if semantic is not None:
        present = [int(k) for k in semantic.unique() if int(k) != 0]
        if present:
            masks = torch.stack([semantic == k for k in present])
            img = draw_segmentation_masks(img, masks, alpha=alpha, colors=[PALETTE[(k - 1) % len(PALETTE)]
                                                                           for k in present])
    if boxes is not None:
        from torchvision.ops import nms
        keep = torch.zeros(len(boxes["scores"]), dtype=torch.bool)
        # for the eye: one box per object (the detector's own NMS is per class, so classes may overlap)
        keep[nms(boxes["boxes"].float(), boxes["scores"].float(), iou_threshold=0.5)] = True
        keep &= boxes["scores"] >= score_thresh
        if keep.any():
            names = [f"{classes[int(k) - 1] if classes else int(k)} {float(s):.2f}"
                     for k, s in zip(boxes["labels"][keep], boxes["scores"][keep])]
            img = draw_bounding_boxes(img, boxes["boxes"][keep], labels=names, colors="yellow", width=1)
    return img


def class_colors(semantic, classes) -> dict:
    """``{class name: colour}`` for the classes present in a semantic map: the key to :func:`draw_predictions`."""
    return {classes[int(k) - 1]: PALETTE[(int(k) - 1) % len(PALETTE)] for k in semantic.unique() if int(k) != 0}


def plot_task_rd(res: dict, task: str, metric: str, ax=None, title: str | None = None):
    """A task's metric against KB per image (:func:`minist.pretrained.task_results`): the task student at each β
    (and the one on the variable-rate bitstream at its anchors, where shipped), the task teacher on JPEG/WebP-decoded
    images, and the task teacher on the original pixels (dotted)."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    pts = [p for p in res["points"] if p["task"] == task]
    suffix = {"entropic": " (shared encoder, one task student per β)",
              "variable-rate": " (shared bitstream, one task student for every β)"}
    for m in ("entropic", "variable-rate", "jpeg", "webp"):
        mp = sorted((p for p in pts if p["method"] == m), key=lambda p: p["kb_mean"])
        if not mp:
            continue
        label = METHOD_LABELS[m] + suffix.get(m, " + task teacher")
        ax.plot([p["kb_mean"] for p in mp], [p[metric] for p in mp], "-" if m in suffix else "--", marker="o",
                ms=4, lw=1.8, color=METHOD_COLORS[METHOD_LABELS[m]], label=label)
        if m == "entropic":
            for p in mp:
                ax.annotate(f"β={p['value']:g}", (p["kb_mean"], p[metric]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color=METHOD_COLORS[METHOD_LABELS[m]])
    teacher = next((p for p in pts if p["method"] == "teacher"), None)
    if teacher:
        ax.axhline(teacher[metric], color=METHOD_COLORS["teacher"], ls=":", lw=1.5,
                   label=f"task teacher, uncompressed ({teacher[metric]:.1f})")
    ax.set_xscale("log")
    _plain_kb_ticks(ax, [0.1, 0.2, 0.5, 1, 2, 5, 10])
    ax.set_xlabel("KB per image (1 KB = 1024 B, headers included; log scale)")
    ax.set_ylabel(TASK_METRIC_LABELS.get(metric, metric))
    ax.set_title(title or f"{task}: {TASK_METRIC_LABELS.get(metric, metric)} vs rate", fontsize=11)
    ax.legend(fontsize=8, loc="center right")
    return ax
