"""The wire format every minist message uses, and the one table of codec ids.

A message is one image's bitstream, all integers big-endian::

    offset  size  field
    0       2     magic b"MN"
    2       1     codec id (CODEC_IDS below; the torch-free device calls it the same)
    3       1     C, latent channels
    4       2     h, latent height
    6       2     w, latent width
    8       k     the codec's fields (its own chapter says which):
                    1 factorized   fingerprint (4 B)
                    2 8bit         lo, step (float32 each: value = lo + code · step)
                    3 gained       fingerprint (4 B), grid index of β (1 B)
                    4, 5 image     the byte length of every rANS string but the last (uint32 each)
    8+k     n     payload: the rANS stream(s), or C·h·w uint8 codes, C-major (id 2)
    8+k+n   4     CRC-32 of everything before it

The 8 + k + 4 header bytes are ours and reported apart from the payload (docs/design.md §4). A header can lie (the CRC
is public), so :func:`unpack` checks what it can before any decoding: the codec id, C, the latent size (against
the sizes a server accepts, and :data:`MAX_LATENT_POSITIONS` always, before anything is allocated).

**The fingerprint** (ids 1 and 3) is the first 4 bytes of a SHA-256 over the coding tables *and* the encoder's
answer to a fixed probe image (:func:`probe_image`: the rounded latent, int32). A message from another model's
encoder or tables is refused, and the torch-free device computes the same 4 bytes from the bundle it runs.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import torch

MAGIC = b"MN"
COMMON = struct.Struct(">2sBBHH")    # magic, codec id, C, h, w
TRAILER = 4                          # CRC-32

#: every codec that writes minist messages, by name → its id on the wire (one id, one codec: tests check it)
CODEC_IDS = {"factorized": 1, "8bit": 2, "gained": 3, "image-factorized": 4, "image-hyperprior": 5}

# most bits one symbol can cost: an in-range one ≤ 16 (CompressAI's CDF precision), an out-of-range one the
# 16-bit escape symbol + ≤ 9 four-bit bypass chunks (int32 values)
BYPASS_BITS = 16 + 4 * 9
# |symbol| the format carries. CompressAI's encoder loops forever on symbols near ±2³¹ (its bypass length
# loop shifts a negative number), so larger ones (a NaN or Inf latent, a forged stream) are refused first.
MAX_SYMBOL = 1 << 24
#: the largest latent (h · w positions) any message may claim: a 4096 × 4096 image's. Larger claims are refused
#: before a decoder allocates anything.
MAX_LATENT_POSITIONS = 1024 * 1024


class PayloadError(ValueError):
    """Bytes that this model cannot decode: corrupt, truncated, foreign, forged, or from another model."""


def payload_bounds(symbols: int) -> tuple[int, int]:
    """Fewest and most bytes CompressAI's rANS writes for ``symbols`` symbols (32-bit words, 8-byte flush)."""
    return 8, 8 + 4 * (-(-symbols * BYPASS_BITS // 32) + 1)


def pack(codec_id: int, z_shape, fields: bytes, payload: bytes) -> bytes:
    """Header + codec fields + payload + CRC-32 for one latent of shape (1, C, h, w)."""
    _, c, h, w = z_shape
    if not (0 < h < 65536 and 0 < w < 65536):
        raise ValueError(f"latent size {h}×{w} does not fit the wire format")
    body = COMMON.pack(MAGIC, codec_id, c, h, w) + fields + payload
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data, codec_id: int, channels: int, fields: int, latent_sizes=None) -> tuple[bytes, bytes, int, int]:
    """Check the common header and CRC of a message for this codec; return (fields, payload, h, w)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < COMMON.size + fields + TRAILER:
        raise PayloadError(f"message too short ({len(data)} bytes; a header alone is "
                           f"{COMMON.size + fields + TRAILER}): truncated?")
    magic, cid, c, h, w = COMMON.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"not a minist message (magic {magic!r}, expected {MAGIC!r})")
    if cid != codec_id:
        raise PayloadError(f"message is for codec {cid} ({codec_name(cid)}), this model decodes codec {codec_id} "
                           f"({codec_name(codec_id)}): another kind of model, or a newer minist")
    if zlib.crc32(data[:-TRAILER]) != struct.unpack_from(">I", data, len(data) - TRAILER)[0]:
        raise PayloadError("checksum mismatch: the message is corrupt or truncated")
    if c != channels:
        raise PayloadError(f"message has {c} latent channels, this model {channels}: made by another model")
    if h == 0 or w == 0 or h * w > MAX_LATENT_POSITIONS:
        raise PayloadError(f"latent size {h}×{w} is empty or over the format's {MAX_LATENT_POSITIONS} positions")
    if latent_sizes is not None and (h, w) not in latent_sizes:
        accepted = ", ".join(f"{a}×{b}" for a, b in sorted(latent_sizes))
        raise PayloadError(f"latent size {h}×{w} is not one this model accepts here ({accepted})")
    return data[COMMON.size:COMMON.size + fields], data[COMMON.size + fields:-TRAILER], h, w


def codec_name(codec_id: int) -> str:
    return next((n for n, i in CODEC_IDS.items() if i == codec_id), "unknown")


def payload_bits(data: bytes, header_bytes: int = COMMON.size + 4 + TRAILER) -> int:
    """Bits of the payload alone (without our header and trailer; default: a factorized message's 16 bytes)."""
    return 8 * (len(data) - header_bytes)


# ---- the fingerprint ---------------------------------------------------------------------------------------------
PROBE_SIZE = 64


def probe_image(size: int = PROBE_SIZE) -> np.ndarray:
    """The fixed probe (1, 3, size, size) float32 in [0, 1] whose latent the fingerprint covers: a stripe pattern
    any runtime can make (``minist_device.wire.probe_image`` is the same formula)."""
    c, i, j = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    return (((7 * i + 13 * j + 31 * c + (i * j) // 5) % 251) / np.float32(250.0)).astype(np.float32)[None]


def probe_digest(latent: torch.Tensor) -> bytes:
    """SHA-256 of the encoder's latent of the probe, rounded half to even to int32 (torch.round = numpy.rint)."""
    return hashlib.sha256(torch.round(latent.detach().float().cpu()).to(torch.int32).numpy().tobytes()).digest()


def fingerprint(tables, seal: bytes) -> bytes:
    """The 4 bytes a message carries: SHA-256 over the tables' bytes (in order), then the encoder's ``seal``."""
    h = hashlib.sha256()
    for t in tables:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(seal)
    return h.digest()[:4]
