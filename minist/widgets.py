"""The rate–distortion explorer: move β, pick an image and a bandwidth, see bytes, accuracy and time.

Nothing here trains. A change looks the point up in the shipped results
(:func:`minist.pretrained.results`) and runs *one* image through the shipped
student at that β — real bytes, real decoding — and through JPEG/WebP at the
quality that matches the student's accuracy, then redraws one figure::

    from minist.widgets import Explorer
    Explorer().show()          # in JupyterLab

:meth:`Explorer.compute` is the numbers alone, :meth:`Explorer.panels` what a move redraws (both timed by
``minist bench explorer``): PIL images and HTML bars, with the RD panel rendered once per β.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import codecs, pretrained
from .config import mini_val_set
from .data.fashion import CLASSES
from .plots import METHOD_COLORS, plot_rd


def matching_quality(res: dict, method: str, accuracy: float) -> dict:
    """The cheapest ``method`` (jpeg/webp) point whose val accuracy reaches ``accuracy`` (else the best one)."""
    pts = pretrained.points(res, method)
    good = [p for p in pts if p["accuracy"] >= accuracy]
    return min(good, key=lambda p: p["kb_mean"]) if good else max(pts, key=lambda p: p["accuracy"])


class Explorer:
    """β × image × bandwidth → payload, prediction, bits map, RD point, transmission times."""

    def __init__(self, preset: str = "mini", images: int = 24, res: dict | None = None, dataset=None,
                 students: dict | None = None, teacher=None):
        self.res = res if res is not None else pretrained.results(preset)
        self.preset = preset
        self._students = dict(students or {})
        self.betas = sorted(self._students) if students else pretrained.betas(preset)
        if not self.betas:
            raise FileNotFoundError(f"no shipped {preset} students: run `minist sweep --parts students --ship`")
        self.teacher = teacher if teacher is not None else pretrained.teacher(preset)
        self.dataset = dataset if dataset is not None else mini_val_set(limit=images)
        self.fig = None
        self._rd_cache: dict[float, bytes] = {}

    def student(self, beta: float):
        if beta not in self._students:
            self._students[beta] = pretrained.student(self.preset, beta=beta)
        return self._students[beta]

    def point(self, method: str, value) -> dict | None:
        return next((p for p in self.res["points"] if p["method"] == method and p["value"] == value), None)

    @torch.no_grad()
    def compute(self, beta: float, index: int, kbps: float) -> dict:
        """Everything one redraw shows, for image ``index`` at β and ``kbps`` kbit/s of uplink."""
        if beta not in self.betas:
            raise ValueError(f"β = {beta} is not shipped; choose one of {self.betas}")
        if not 0 <= index < len(self.dataset):
            raise IndexError(f"image {index} is outside 0 … {len(self.dataset) - 1}")
        if kbps <= 0:
            raise ValueError(f"bandwidth must be > 0 kbit/s, got {kbps}")
        student = self.student(beta)
        _, server = student.split()
        x, y = self.dataset[index]
        z = student.encode(x.unsqueeze(0))
        data = student.codec.encode(z)                                 # the real message
        probs = server(data).softmax(1)[0]                             # after real decoding
        bits = student.codec.estimate_bits(z, per_position=True)[0]   # (h, w) bits per latent position
        point = self.point("entropic", beta)
        out = {"beta": beta, "index": index, "label": int(y), "image": x, "bytes": len(data),
               "pred": int(probs.argmax()), "confidence": float(probs.max()), "bits_map": bits.numpy(),
               "point": point, "kbps": kbps, "seconds": {"Entropic Student": 8 * len(data) / (kbps * 1000)}}
        for fmt, name in (("jpeg", "JPEG"), ("webp", "WebP")):
            ref = matching_quality(self.res, fmt, point["accuracy"] if point else 0.0)
            coded = codecs.encode(x, fmt, ref["value"])
            pred = int(self.teacher(codecs.decode(coded).unsqueeze(0)).argmax(1))
            out[fmt] = {"quality": ref["value"], "bytes": len(coded), "pred": pred, "val_accuracy": ref["accuracy"]}
            out["seconds"][f"{name} q{ref['value']}"] = 8 * len(coded) / (kbps * 1000)
        return out

    # ---- drawing ----------------------------------------------------------------------------
    def _build(self):
        self.fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.7, 1.3]})
        self.ax_img, self.ax_bits, self.ax_rd, self.ax_time = axes
        for ax in (self.ax_img, self.ax_bits):
            ax.axis("off")
        self._im = self.ax_img.imshow(np.zeros((8, 8, 3)))
        self._bits = self.ax_bits.imshow(np.zeros((8, 8)), cmap="magma")
        self.fig.colorbar(self._bits, ax=self.ax_bits, fraction=0.046, pad=0.04, label="bits")
        plot_rd(self.res, ax=self.ax_rd, annotate=False, title="")
        self.ax_rd.legend(fontsize=6, loc="lower right")
        self.ax_rd.set_xlabel("KB per image", fontsize=8)
        self.ax_rd.set_ylabel("accuracy (%)", fontsize=8)
        self._marker, = self.ax_rd.plot([], [], marker="*", ms=16, color="red", ls="", zorder=5)
        self.fig.tight_layout()

    def draw(self, r: dict):
        """Update the figure from :meth:`compute`'s result (artists are reused: no new figure)."""
        if self.fig is None:
            self._build()
        self._im.set_data(r["image"].permute(1, 2, 0).numpy())
        ok = "✓" if r["pred"] == r["label"] else "✗"
        self.ax_img.set_title(f"{CLASSES[r['label']]} → {CLASSES[r['pred']]} {ok} ({r['confidence']:.0%})", fontsize=9)
        self._bits.set_data(r["bits_map"])
        self._bits.set_clim(0, max(float(r["bits_map"].max()), 1e-3))
        self.ax_bits.set_title(f"β = {r['beta']:g}: {r['bytes']} B sent ({r['bits_map'].sum() / 8:.0f} B of "
                               "information)", fontsize=9)
        if r["point"]:
            self._marker.set_data([r["point"]["kb_mean"]], [r["point"]["accuracy"]])
        self.ax_time.clear()
        names, secs = list(r["seconds"]), list(r["seconds"].values())
        colors = [METHOD_COLORS["Entropic Student"], METHOD_COLORS["JPEG"], METHOD_COLORS["WebP"]]
        self.ax_time.barh(names, [1000 * s for s in secs], color=colors)
        for i, s in enumerate(secs):
            self.ax_time.text(1000 * s, i, f" {1000 * s:.1f} ms", va="center", fontsize=8)
        self.ax_time.set_xlabel(f"transmission time at {r['kbps']:g} kbit/s (ms, no RTT)", fontsize=8)
        self.ax_time.tick_params(labelsize=8)
        self.ax_time.set_xlim(0, 1000 * max(secs) * 1.45)
        return self.fig

    def render_png(self, beta: float, index: int, kbps: float) -> bytes:
        """The whole figure of one setting as a PNG (for static copies; the widget redraws panels instead)."""
        self.draw(self.compute(beta, index, kbps))
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=72)
        return buf.getvalue()

    # ---- the widget: panels that redraw cheaply ------------------------------------------------
    def rd_png(self, beta: float) -> bytes:
        """The RD curves with the current β marked, rendered once per β and cached (it changes only with β)."""
        cache = self._rd_cache
        if beta not in cache:
            fig, ax = plt.subplots(figsize=(6.2, 3.8))
            plot_rd(self.res, ax=ax, annotate=False, title="")
            ax.legend(fontsize=7, loc="lower right")
            p = self.point("entropic", beta)
            if p:
                ax.plot([p["kb_mean"]], [p["accuracy"]], marker="*", ms=18, color="red", ls="", zorder=5)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=72)
            plt.close(fig)
            cache[beta] = buf.getvalue()
        return cache[beta]

    def panels(self, r: dict) -> dict:
        """What one slider move shows: PNGs of the image, the bits map and the RD point; HTML time bars."""
        from matplotlib import colormaps
        from PIL import Image as PILImage

        def png(arr, scale: int) -> bytes:
            im = PILImage.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), PILImage.NEAREST)
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        img = (r["image"].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        bits = r["bits_map"]
        top = max(float(bits.max()), 1e-3)
        heat = (colormaps["magma"](bits / top)[..., :3] * 255).round().astype(np.uint8)
        longest = max(r["seconds"].values())
        colors = [METHOD_COLORS["Entropic Student"], METHOD_COLORS["JPEG"], METHOD_COLORS["WebP"]]
        bars = "".join(
            f"<div style='display:flex;align-items:center;margin:2px 0'><span style='width:120px'>{name}</span>"
            f"<span style='background:{c};height:14px;width:{max(2, 260 * s / longest):.0f}px'></span>"
            f"<span style='margin-left:6px'>{1000 * s:.1f} ms</span></div>"
            for (name, s), c in zip(r["seconds"].items(), colors))
        ok = "✓" if r["pred"] == r["label"] else "✗"
        return {"image": png(img, 2), "bits": png(heat, 256 // bits.shape[0]), "rd": self.rd_png(r["beta"]),
                "caption": f"{CLASSES[r['label']]} → <b>{CLASSES[r['pred']]}</b> {ok} ({r['confidence']:.0%}) "
                           f"from {r['bytes']} B; bits map: 0 … {top:.1f} bits per latent position",
                "times": f"<div style='font-size:12px'><b>transmission at {r['kbps']:g} kbit/s</b> "
                         f"(serialisation only, no RTT){bars}</div>"}

    def show(self):
        """The ipywidgets UI (JupyterLab): β slider, image picker, bandwidth slider, panels redrawn per move."""
        import ipywidgets as W
        from IPython.display import display
        beta = W.SelectionSlider(options=[(f"{b:g}", b) for b in self.betas],
                                 value=pretrained.DEFAULT_BETA.get(self.preset, self.betas[0]), description="β",
                                 continuous_update=False)
        index = W.IntSlider(0, 0, len(self.dataset) - 1, description="image", continuous_update=False)
        kbps = W.FloatLogSlider(value=250, base=10, min=0, max=5, step=0.1, description="kbit/s",
                                continuous_update=False)
        image, bits = W.Image(format="png", width=256), W.Image(format="png", width=248)
        rd, caption, times, status = W.Image(format="png", width=446), W.HTML(), W.HTML(), W.HTML()

        def update(_=None):
            r = self.compute(beta.value, index.value, kbps.value)
            p = self.panels(r)
            image.value, bits.value, rd.value = p["image"], p["bits"], p["rd"]
            caption.value, times.value = p["caption"], p["times"]
            pt = r["point"]
            status.value = (f"<b>β = {r['beta']:g}</b> on the val set: {pt['kb_mean']:.3f} KB ± {pt['kb_std']:.3f}, "
                            f"{pt['accuracy']:.1f} % (teacher {self.res['teacher_accuracy']:.1f} %). The same "
                            f"accuracy costs JPEG q{r['jpeg']['quality']} {r['jpeg']['bytes']} B, "
                            f"WebP q{r['webp']['quality']} {r['webp']['bytes']} B for this image." if pt else "")

        for b in self.betas:      # once, up front (≈0.6 s per β), so that every move stays fast
            self.student(b)
            self.rd_png(b)
        for w in (beta, index, kbps):
            w.observe(update, names="value")
        update()
        ui = W.VBox([W.HBox([beta, index, kbps]), status, caption, W.HBox([image, bits, rd]), times])
        display(ui)
        return ui
