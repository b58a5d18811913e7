"""Image formats, the input-compression baselines: JPEG, WebP (and PNG) through Pillow, as real bytes.

The paper's first baseline compresses the *input* image and runs the unmodified
teacher on the decoded pixels. Sizes are the real encoded lengths, headers
included (``optimize=True`` for JPEG: Huffman tables fitted to the image,
≈285 B of header instead of ≈630 B).
"""

from __future__ import annotations

import io
import struct

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
    """Encode an image as JPEG, WebP (lossy) or PNG; returns the bytes that would be sent. Quality 1 … 100, and
    WebP's real smallest setting 0 (every codec's whole range counts: docs/design.md §9)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    lowest = 0 if fmt == "webp" else 1
    if not lowest <= int(quality) <= 100:
        raise ValueError(f"{fmt} quality must be in {lowest}..100, got {quality}")
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


def header_size(data: bytes, fmt: str) -> int:
    """Bytes of ``data`` that are container/header, not entropy-coded image data.

    JPEG: everything up to the end of the start-of-scan (SOS) segment (quantisation and Huffman
    tables, frame header). WebP: the RIFF and chunk headers plus the 10-byte VP8 frame header.
    """
    fmt = fmt.lower()
    if fmt == "jpeg":
        i = 2                                            # after SOI
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise ValueError("not a JPEG marker stream")
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker == 0xDA:                           # SOS: entropy-coded data follows its header
                return i + 2 + length
            i += 2 + length
        raise ValueError("no SOS marker: not a complete JPEG")
    if fmt == "webp":
        if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
            raise ValueError("not a RIFF/WebP stream")
        i = 12
        while i + 8 <= len(data):
            tag, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
            if tag == b"VP8 ":
                return i + 8 + 10                        # chunk header + VP8 frame header
            if tag == b"VP8L":
                return i + 8 + 5                         # lossless: signature + size/flags
            i += 8 + size + (size & 1)
        raise ValueError("no VP8/VP8L chunk in this WebP stream")
    raise ValueError(f"header_size knows jpeg and webp, got {fmt!r}")
