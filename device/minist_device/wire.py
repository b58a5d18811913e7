"""minist's wire format and TCP frames, as in ``minist/models/wire.py`` and ``minist/split/protocol.py``.

Message: ``b"MN" | codec id | C | h (u16) | w (u16) | fingerprint (4 B) [| grid index of β (1 B), codec 3] |
rANS payload | CRC-32``, big-endian.
Frame: ``length (u32, bytes of type + body) | type (u8) | body``.

The fingerprint is the first 4 bytes of a SHA-256 over the coding tables (CDFs, offsets, lengths as int32,
medians as float32, in that order; a variable-rate bundle's gains at every rate after them, float32) and then
the SHA-256 of the encoder's rounded latent (int32) of :func:`probe_image`: the device computes it from the
bundle it really runs.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np

MAGIC = b"MN"
HEAD = struct.Struct(">2sBBHH")
HEADER_BYTES = HEAD.size + 4 + 4          # a one-rate message's: common header, fingerprint, CRC
INFER, RESULT, ERROR, PING, PONG = 1, 2, 3, 4, 5
PREFIX = struct.Struct(">IB")
FRAME_OVERHEAD = PREFIX.size
PROBE_SIZE = 64


def message(codec_id: int, c: int, h: int, w: int, fields: bytes, payload: bytes) -> bytes:
    body = HEAD.pack(MAGIC, codec_id, c, h, w) + fields + payload
    return body + struct.pack(">I", zlib.crc32(body))


def probe_image(size: int = PROBE_SIZE) -> np.ndarray:
    """The fixed probe (1, 3, size, size) float32 in [0, 1] (the same formula as minist's)."""
    c, i, j = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    return (((7 * i + 13 * j + 31 * c + (i * j) // 5) % 251) / np.float32(250.0)).astype(np.float32)[None]


def fingerprint(cdfs, offsets, lengths, medians, probe_latent, gains=None) -> bytes:
    h = hashlib.sha256()
    arrays = [(cdfs, np.int32), (offsets, np.int32), (lengths, np.int32), (medians, np.float32)]
    for a, dtype in arrays + ([] if gains is None else [(gains, np.float32)]):
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    h.update(hashlib.sha256(np.rint(probe_latent).astype(np.int32).tobytes()).digest())
    return h.digest()[:4]


def frame(kind: int, body: bytes = b"") -> bytes:
    return PREFIX.pack(len(body) + 1, kind) + body


def parse_json(body: bytes) -> dict:
    return json.loads(body.decode())
