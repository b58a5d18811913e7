"""minist's wire format (version 1) and TCP frames, as in ``minist/models/entropy.py`` and ``minist/split/protocol.py``.

Message: ``b"MN" | version | C | h (u16) | w (u16) | fingerprint (4 B) | rANS payload | CRC-32``, big-endian.
Frame: ``length (u32, bytes of type + body) | type (u8) | body``.
"""

from __future__ import annotations

import json
import struct
import zlib

MAGIC = b"MN"
HEAD = struct.Struct(">2sBBHH4s")
HEADER_BYTES = HEAD.size + 4
INFER, RESULT, ERROR, PING, PONG = 1, 2, 3, 4, 5
PREFIX = struct.Struct(">IB")
FRAME_OVERHEAD = PREFIX.size


def message(version: int, c: int, h: int, w: int, fingerprint: bytes, payload: bytes) -> bytes:
    body = HEAD.pack(MAGIC, version, c, h, w, fingerprint) + payload
    return body + struct.pack(">I", zlib.crc32(body))


def frame(kind: int, body: bytes = b"") -> bytes:
    return PREFIX.pack(len(body) + 1, kind) + body


def parse_json(body: bytes) -> dict:
    return json.loads(body.decode())
