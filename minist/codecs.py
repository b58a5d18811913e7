"""Input-compression baselines: JPEG and WebP through Pillow, as real bytes.

The paper's first baseline compresses the *input* image and runs the unmodified
teacher on the decoded pixels. Sizes are the real encoded lengths, headers
included (``optimize=True`` for JPEG: Huffman tables fitted to the image,
≈285 B of header instead of ≈630 B).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

FORMATS = ("jpeg", "webp", "png")


def to_pil(x) -> Image.Image:
    """An image tensor (3, H, W) in [0, 1] or a uint8 array (H, W, 3) → PIL RGB image."""
    if isinstance(x, Image.Image):
        return x.convert("RGB")
    if isinstance(x, torch.Tensor):
        if x.dim() != 3 or x.shape[0] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float tensor (3, H, W) in [0, 1], got {x.dtype} {tuple(x.shape)}")
        x = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 array (H, W, 3), got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr)


def encode(x, fmt: str = "jpeg", quality: int = 75) -> bytes:
    """Encode an image as JPEG, WebP (lossy) or PNG; returns the bytes that would be sent."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    im = to_pil(x)
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=int(quality), optimize=True)
    elif fmt == "webp":
        im.save(buf, format="WEBP", quality=int(quality), method=6)
    else:
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode(data: bytes) -> torch.Tensor:
    """Bytes of any Pillow-readable image → float tensor (3, H, W) in [0, 1]."""
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def roundtrip(x, fmt: str = "jpeg", quality: int = 75) -> tuple[torch.Tensor, int]:
    """Encode then decode; returns the decoded image and the number of bytes sent."""
    data = encode(x, fmt, quality)
    return decode(data), len(data)
