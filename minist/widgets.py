"""The rate–distortion explorer: move β continuously, pick an image and a bandwidth, see bytes, accuracy and time.

Nothing here trains. One variable-rate student (:func:`minist.pretrained.variable_student`) serves every β of its
grid, so a move runs *one* image through the student at exactly that β (real bytes, real decoding), looks up the
student's measured val-set point at that β (the fine grid of ``data/results_variable_mini.json``), and compares
with the cheapest JPEG/WebP setting of the study that really reaches that accuracy, or says that none does::

    from minist.widgets import Explorer
    Explorer().show()          # in JupyterLab

:meth:`Explorer.compute` is the numbers alone, :meth:`Explorer.panels` what a move redraws (both timed by
``minist bench explorer``): PIL images and HTML bars. The RD panel is drawn once; a move only paints the marker.
"""

from __future__ import annotations

import io
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import image_formats, pretrained, rd
from .config import mini_val_set
from .data.fashion import CLASSES
from .plots import METHOD_COLORS, METHOD_LABELS, plot_rd

VARIABLE_LABEL = METHOD_LABELS["variable-rate"]
VARIABLE_COLOR = METHOD_COLORS[VARIABLE_LABEL]
# the time bars' fixed scale: log10 of milliseconds, 0.1 ms … 100 s, so a bandwidth move visibly moves every bar
BAR_LOG_MS, BAR_PX = (-1.0, 5.0), 300


def matching_quality(res: dict, method: str, accuracy: float) -> dict | None:
    """The cheapest ``method`` (jpeg/webp) point whose val accuracy reaches ``accuracy``; None if none does."""
    good = [p for p in pretrained.points(res, method) if p["accuracy"] >= accuracy]
    return min(good, key=lambda p: p["kb_mean"]) if good else None


def fmt_beta(beta: float) -> str:
    """β as the slider shows it (3 significant digits)."""
    return f"{beta:.3g}"


def _bar_px(ms: float) -> float:
    lo, hi = BAR_LOG_MS
    return BAR_PX * min(1.0, max(0.0, (math.log10(max(ms, 1e-9)) - lo) / (hi - lo)))


class Explorer:
    """β (continuous, on the student's grid) × image × bandwidth → payload, prediction, bits map, RD point, times."""

    def __init__(self, preset: str = "mini", images: int = 24, res: dict | None = None, dataset=None,
                 student=None, curve: list[dict] | None = None, teacher=None):
        self.res = res if res is not None else pretrained.results(preset)
        self.preset = preset
        self.student = student if student is not None else pretrained.variable_student(preset)
        self._device, self._server = self.student.split()
        self.grid = self._device.grid
        if self.grid.levels < 2:
            raise ValueError("the explorer's slider needs a student with more than one rate "
                             "(pretrained.variable_student)")
        self.curve = sorted(curve if curve is not None else pretrained.variable_results(preset)["fine"],
                            key=lambda p: p["beta"])
        self.teacher = teacher if teacher is not None else pretrained.teacher(preset)
        self.dataset = dataset if dataset is not None else mini_val_set(limit=images)
        self.fig = None
        self._rd = None                # (PIL image, data → pixel function), drawn once
        self.controls: dict = {}
        self.outputs: dict = {}

    @property
    def beta_range(self) -> tuple[float, float]:
        return self.grid.beta_min, self.grid.beta_max

    def snap(self, beta: float) -> float:
        """The grid β nearest to ``beta`` (what the message carries); outside the grid: ValueError."""
        return float(self.grid.beta(self.grid.index(beta)))

    def expected(self, beta: float) -> dict:
        """The student's measured val-set point at ``beta``: linear in log β between the fine grid's points."""
        lb = math.log(beta)
        pts = self.curve
        xs = [math.log(p["beta"]) for p in pts]
        j = int(np.clip(np.searchsorted(xs, lb), 1, len(pts) - 1))
        t = float(np.clip((lb - xs[j - 1]) / (xs[j] - xs[j - 1]), 0.0, 1.0))
        a, b = pts[j - 1], pts[j]
        return {"beta": beta, "accuracy": (1 - t) * a["accuracy"] + t * b["accuracy"],
                "kb_mean": (1 - t) * a["kb_mean"] + t * b["kb_mean"]}

    @torch.no_grad()
    def compute(self, beta: float, index: int, kbps: float) -> dict:
        """Everything one redraw shows, for image ``index`` at β and ``kbps`` kbit/s of uplink."""
        if not 0 <= index < len(self.dataset):
            raise IndexError(f"image {index} is outside 0 … {len(self.dataset) - 1}")
        if not kbps > 0:
            raise ValueError(f"bandwidth must be > 0 kbit/s, got {kbps}")
        beta = self.snap(beta)
        x, y = self.dataset[index]
        z = self._device.latent(x.unsqueeze(0))
        data = self._device.message(z, beta)                                   # the real message
        probs = self._server(data).softmax(1)[0]                               # after real decoding
        bits = self._device.bits(z, beta, per_position=True)[0]                # (h, w) bits per position
        point = self.expected(beta)
        out = {"beta": beta, "grid_index": self.grid.index(beta), "index": index, "label": int(y), "image": x,
               "bytes": len(data), "pred": int(probs.argmax()), "confidence": float(probs.max()),
               "bits_map": bits.numpy(), "point": point, "kbps": kbps,
               "seconds": {"Entropic Student": 8 * len(data) / (kbps * 1000)}}
        for fmt, name in (("jpeg", "JPEG"), ("webp", "WebP")):
            ref = matching_quality(self.res, fmt, point["accuracy"])
            if ref is None:
                best = max(pretrained.points(self.res, fmt), key=lambda p: p["accuracy"])
                out[fmt] = {"quality": None, "best_quality": best["value"], "best_accuracy": best["accuracy"]}
                continue
            coded = image_formats.encode(x, fmt, ref["value"])
            pred = int(self.teacher(image_formats.decode(coded).unsqueeze(0)).argmax(1))
            out[fmt] = {"quality": ref["value"], "bytes": len(coded), "pred": pred, "val_accuracy": ref["accuracy"],
                        "kb_mean": ref["kb_mean"]}
            out["seconds"][f"{name} q{ref['value']}"] = 8 * len(coded) / (kbps * 1000)
        return out

    def status(self, r: dict) -> str:
        """The status line: the val-set point at this β and what each codec needs for that accuracy."""
        pt = r["point"]
        parts = []
        for fmt, name in (("jpeg", "JPEG"), ("webp", "WebP")):
            c = r[fmt]
            if c["quality"] is None:
                parts.append(f"no {name} quality of the study reaches {pt['accuracy']:.1f} % (its best: "
                             f"q{c['best_quality']}, {c['best_accuracy']:.1f} %)")
            else:
                parts.append(f"{name} needs q{c['quality']} ({c['val_accuracy']:.1f} %, {c['kb_mean']:.3f} KB on "
                             f"average; {c['bytes']} B for this image)")
        return (f"<b>β = {fmt_beta(r['beta'])}</b> (grid rate {r['grid_index']}): on the val set "
                f"{pt['accuracy']:.1f} % at {pt['kb_mean']:.3f} KB (teacher {self.res['teacher_accuracy']:.1f} %). "
                f"To reach that accuracy, " + "; ".join(parts) + ".")

    # ---- the RD panel: drawn once, the marker painted per move ----------------------------------------
    def _draw_rd(self, ax, ncol: int) -> None:
        """The study's curves and the variable-rate student's, with the legend below the axes. No title (the status
        line says it); accuracy from just below the variable-rate curve's lowest point to above the teacher (a
        collapsed per-β point further down is left out of view, and said so)."""
        plot_rd(self.res, ax=ax, annotate=False, title="", clip=None,
                methods=rd.held(self.res, ("entropic", "stage1-only", "crbq", "jpeg", "webp")))
        ax.plot([p["kb_mean"] for p in self.curve], [p["accuracy"] for p in self.curve], "-", lw=1.4,
                color=VARIABLE_COLOR, label=VARIABLE_LABEL, zorder=4)
        ax.set_xlabel("KB per image (log)", fontsize=9)
        ax.set_ylabel("accuracy (%)", fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)
        ax.set_title("")
        low = min(p["accuracy"] for p in self.curve)
        bottom = max(0.0, min(low, 80.0) - 3.0)
        ax.set_ylim(bottom, self.res["teacher_accuracy"] + 2.0)
        hidden = [p for p in self.res["points"] if p["accuracy"] < bottom and p["method"] in
                  ("entropic", "stage1-only", "crbq", "jpeg", "webp")]
        if hidden:
            ax.text(0.01, 0.02, f"{len(hidden)} point(s) below {bottom:.0f} % not shown", transform=ax.transAxes,
                    fontsize=7, color="#666666")

    def _rd_base(self):
        if self._rd is None:
            from PIL import Image as PILImage
            fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=72)
            self._draw_rd(ax, ncol=3)
            ax.tick_params(labelsize=8)
            fig.tight_layout()
            fig.canvas.draw()
            height = fig.canvas.get_width_height()[1]
            trans = ax.transData

            def to_px(kb, acc):
                x, y = trans.transform((kb, acc))
                return float(x), float(height - y)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=72)
            plt.close(fig)
            self._rd = (PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"), to_px)
        return self._rd

    def rd_png(self, beta: float) -> bytes:
        """The RD curves with the variable-rate student's val-set point at ``beta`` marked."""
        from PIL import ImageDraw
        base, to_px = self._rd_base()
        im = base.copy()
        p = self.expected(self.snap(beta))
        x, y = to_px(p["kb_mean"], p["accuracy"])
        d = ImageDraw.Draw(im)
        d.ellipse((x - 7, y - 7, x + 7, y + 7), outline=(200, 0, 0), width=3)
        d.line((x - 11, y, x + 11, y), fill=(200, 0, 0), width=1)
        d.line((x, y - 11, x, y + 11), fill=(200, 0, 0), width=1)
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    # ---- the widget's panels -------------------------------------------------------------------------
    def panels(self, r: dict) -> dict:
        """What one move shows: PNGs of the image, the bits map (with its colour bar) and the RD point; HTML bars."""
        from matplotlib import colormaps
        from PIL import Image as PILImage
        from PIL import ImageDraw

        def png(im) -> bytes:
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        img = (r["image"].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        image = PILImage.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), PILImage.NEAREST)
        bits = r["bits_map"]
        top = max(float(bits.max()), 1e-3)
        cmap = colormaps["magma"]
        heat = (cmap(bits / top)[..., :3] * 255).round().astype(np.uint8)
        side = 224
        heat_im = PILImage.fromarray(heat).resize((side, side), PILImage.NEAREST)
        canvas = PILImage.new("RGB", (side + 70, side + 20), "white")
        canvas.paste(heat_im, (0, 10))
        ramp = (cmap(np.linspace(1, 0, side))[:, :3] * 255).round().astype(np.uint8)
        canvas.paste(PILImage.fromarray(np.repeat(ramp[:, None], 14, axis=1)), (side + 8, 10))
        draw = ImageDraw.Draw(canvas)
        for frac in (0.0, 0.5, 1.0):
            yy = 10 + (1 - frac) * (side - 1)
            draw.line((side + 22, yy, side + 26, yy), fill="black")
            draw.text((side + 28, yy - 6), f"{frac * top:.1f}", fill="black")
        draw.text((side + 8, side + 10 - 1), "bits", fill="black")

        bars = []
        for (name, s), c in zip(r["seconds"].items(), [METHOD_COLORS["Entropic Student"], METHOD_COLORS["JPEG"],
                                                       METHOD_COLORS["WebP"]]):
            bars.append(f"<div style='display:flex;align-items:center;margin:2px 0'><span style='width:130px'>{name}"
                        f"</span><span style='background:{c};height:14px;width:{max(2, _bar_px(1000 * s)):.0f}px'>"
                        f"</span><span style='margin-left:6px'>{1000 * s:.1f} ms</span></div>")
        for fmt, name in (("jpeg", "JPEG"), ("webp", "WebP")):
            if r[fmt]["quality"] is None:
                bars.append(f"<div style='margin:2px 0'><span style='width:130px'>{name}</span> no quality reaches "
                            f"{r['point']['accuracy']:.1f} %</div>")
        scale = " · ".join(f"{10.0 ** e:g} ms" for e in range(int(BAR_LOG_MS[0]), int(BAR_LOG_MS[1]) + 1, 2))
        ok = "✓" if r["pred"] == r["label"] else "✗"
        return {"image": png(image), "bits": png(canvas), "rd": self.rd_png(r["beta"]),
                "caption": f"{CLASSES[r['label']]} → <b>{CLASSES[r['pred']]}</b> {ok} ({r['confidence']:.0%}) "
                           f"from {r['bytes']} B at β = {fmt_beta(r['beta'])}; bits map: 0 … {top:.1f} bits per "
                           "latent position",
                "times": f"<div style='font-size:12px'><b>transmission at {r['kbps']:.3g} kbit/s</b> (serialisation "
                         f"only, no RTT; bars on a fixed log scale, {scale} at every 2 decades from the left)"
                         + "".join(bars) + "</div>"}

    def show(self, display: bool = True):
        """The ipywidgets UI (JupyterLab): a continuous β slider, an image picker, a bandwidth slider.
        ``display=False`` builds it without showing it (benchmarks, tests)."""
        import ipywidgets as W
        from IPython.display import display as show_ui
        g = self.grid
        lo, hi = math.log2(g.beta_min), math.log2(g.beta_max)
        default = pretrained.DEFAULT_BETA.get(self.preset, g.beta_min)
        beta = W.FloatLogSlider(value=self.snap(default), base=2, min=lo, max=hi, step=1 / g.steps,
                                description="β", readout_format=".3g", continuous_update=True,
                                layout=W.Layout(width="380px"))
        index = W.IntSlider(0, 0, len(self.dataset) - 1, description="image", continuous_update=False)
        kbps = W.FloatLogSlider(value=250, base=10, min=0, max=5, step=0.1, description="kbit/s",
                                readout_format=".3g", continuous_update=True)
        image, bits = W.Image(format="png", width=256), W.Image(format="png", width=294)
        rd_image, caption, times, status = W.Image(format="png", width=461), W.HTML(), W.HTML(), W.HTML()
        self.controls = {"beta": beta, "image": index, "kbps": kbps}
        self.outputs = {"image": image, "bits": bits, "rd": rd_image, "caption": caption, "times": times,
                        "status": status}

        def update(_=None):
            r = self.compute(beta.value, index.value, kbps.value)
            p = self.panels(r)
            image.value, bits.value, rd_image.value = p["image"], p["bits"], p["rd"]
            caption.value, times.value = p["caption"], p["times"]
            status.value = self.status(r)
            self.last = r

        self._rd_base()           # drawn once, before the first move
        for w in (beta, index, kbps):
            w.observe(update, names="value")
        update()
        ui = W.VBox([W.HBox([beta, index, kbps]), status, caption, W.HBox([image, bits, rd_image]), times])
        if display:
            show_ui(ui)
        return ui

    # ---- a static copy (one matplotlib figure) ----------------------------------------------------------
    def _build(self):
        self.fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1.15, 1.7, 1.3]})
        self.ax_img, self.ax_bits, self.ax_rd, self.ax_time = axes
        for ax in (self.ax_img, self.ax_bits):
            ax.axis("off")
        self._im = self.ax_img.imshow(np.zeros((8, 8, 3)))
        self._bits = self.ax_bits.imshow(np.zeros((8, 8)), cmap="magma")
        self.fig.colorbar(self._bits, ax=self.ax_bits, fraction=0.046, pad=0.04, label="bits per latent position")
        self._draw_rd(self.ax_rd, ncol=2)
        self._marker, = self.ax_rd.plot([], [], marker="o", ms=12, mfc="none", mew=2.5, color="#c00000", ls="",
                                        zorder=6)
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
        self.ax_bits.set_title(f"β = {fmt_beta(r['beta'])}: {r['bytes']} B sent ({r['bits_map'].sum() / 8:.0f} B of "
                               "information)", fontsize=9)
        self._marker.set_data([r["point"]["kb_mean"]], [r["point"]["accuracy"]])
        self.ax_time.clear()
        names, secs = list(r["seconds"]), [1000 * s for s in r["seconds"].values()]
        colors = [METHOD_COLORS["Entropic Student"], METHOD_COLORS["JPEG"], METHOD_COLORS["WebP"]]
        self.ax_time.barh(names, secs, color=colors[:len(names)])
        for i, s in enumerate(secs):
            self.ax_time.text(s, i, f" {s:.1f} ms", va="center", fontsize=8)
        self.ax_time.set_xscale("log")
        self.ax_time.set_xlim(10.0 ** BAR_LOG_MS[0], 10.0 ** BAR_LOG_MS[1])      # fixed: bandwidth moves show
        self.ax_time.set_xlabel(f"transmission at {r['kbps']:.3g} kbit/s (ms, no RTT; fixed log scale)", fontsize=8)
        self.ax_time.tick_params(labelsize=8)
        return self.fig

    def render_png(self, beta: float, index: int, kbps: float) -> bytes:
        """The whole figure of one setting as a PNG (for static copies; the widget redraws panels instead)."""
        self.draw(self.compute(beta, index, kbps))
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=72)
        return buf.getvalue()
