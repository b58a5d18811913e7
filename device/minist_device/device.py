"""Image → bytes on the device: ONNX Runtime encoder, rounding around the medians, rANS (NumPy)."""

from __future__ import annotations

import numpy as np

from . import rans, wire
from .bundle import Bundle, BundleError


class Device:
    """``Device(bundle_folder).encode(image) → bytes``, one image per message, one thread by default."""

    def __init__(self, bundle, threads: int = 1):
        import onnxruntime as ort
        self.bundle = b = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(b.onnx, opts, providers=["CPUExecutionProvider"])
            probe = self.session.run(None, {"image": wire.probe_image()})[0]     # the encoder's answer to the probe
        except Exception as e:      # noqa: BLE001  (ONNX Runtime raises its own types for a bad model)
            raise BundleError(f"the bundle's encoder.onnx does not load or run in ONNX Runtime "
                              f"({type(e).__name__}: {str(e)[:200]}); re-export") from e
        if probe.ndim != 4 or probe.shape[1] != b.latent[0]:
            raise BundleError(f"the bundle's encoder makes latents of shape {probe.shape}, its tables are for "
                              f"{b.latent[0]} channels; re-export")
        t = b.raw_tables
        # computed from what this device really runs: the server refuses another model's encoder or tables
        self.fingerprint = wire.fingerprint(t["cdfs"], t["offsets"], t["lengths"], t["medians"], probe,
                                            t.get("gains"))
        if self.fingerprint != b.fingerprint:
            raise BundleError("the bundle's encoder or tables are not the ones its manifest's fingerprint names "
                              "(a part was replaced); re-export it with `minist export`")
        c, h, w = b.latent
        self._channel = np.repeat(np.arange(c), h * w)

    def prepare(self, image) -> np.ndarray:
        """(H, W, 3) uint8, a PIL image or a path (resized to the bundle's input size), or (1, 3, H, W) float
        in [0, 1] → (1, 3, S, S) float32, checked like minist's ``as_images``."""
        from PIL import Image
        s = self.bundle.input_size
        if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
            try:
                with Image.open(image) as im:
                    image = im.convert("RGB")
            except Image.DecompressionBombError as e:
                raise ValueError(f"{image}: {e}") from None
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB").resize((s, s), Image.BILINEAR))
        x = np.asarray(image)
        if x.dtype == np.uint8:
            if x.ndim != 3 or x.shape[-1] != 3:
                raise ValueError(f"uint8 images are (H, W, 3); got shape {x.shape}")
            x = x.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        if x.dtype.kind != "f":
            raise TypeError(f"expected uint8 or float images, got dtype {x.dtype}")
        x = x.astype(np.float32)
        if x.shape != (1, 3, s, s):
            raise ValueError(f"this bundle encodes (1, 3, {s}, {s}) images, got {x.shape}; pass a PIL image or a "
                             f"path to have it resized")
        if not np.isfinite(x).all():
            raise ValueError("images hold NaN or Inf pixels; pixels must be finite values in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"pixels must be in [0, 1]; got min {lo:.4g}, max {hi:.4g}"
                             + (": divide by 255" if hi > 1.5 else ""))
        return x

    def latent(self, image) -> np.ndarray:
        return self.session.run(None, {"image": self.prepare(image)})[0]

    def encode(self, image, beta=None) -> bytes:
        """One image → one minist message (header + rANS payload + CRC) at ``beta`` (a variable-rate bundle: any β
        of its grid; None: the lowest), as ``student.split()[0]`` makes it."""
        b = self.bundle
        i = b.index(beta)
        z = self.latent(image)
        if not np.isfinite(z).all():
            raise ValueError("the latent holds NaN or Inf values")
        u = z[0] if b.gains is None else z[0] * b.gains[i][:, None, None]      # float32, as torch multiplies
        symbols = np.rint(u - b.rate_medians[i][:, None, None]).reshape(-1)   # round half to even, as torch.round
        if np.abs(symbols).max() >= b.max_symbol:
            raise ValueError(f"the latent is over the format's range ({b.max_symbol} from the medians)")
        payload = rans.encode_symbols(symbols.astype(np.int64), self._channel, b.rate_cdfs[i], b.rate_lengths[i],
                                      b.rate_offsets[i])
        c, h, w = b.latent
        fields = self.fingerprint + (bytes([i]) if b.codec_id == 3 else b"")
        return wire.message(b.codec_id, c, h, w, fields, payload)
