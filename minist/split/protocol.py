"""Frames on the wire between device and server: TCP with a length prefix.

Why TCP with our own frames rather than HTTP: the bytes on the wire are then
exactly the message plus 5 bytes per frame, which is what a lesson on rates
should count; it needs only the standard library; and a malformed frame is
easy to reason about. Every frame is::

    length (4 B, big-endian: bytes of type + body) | type (1 B) | body

Types: INFER (body: a minist message, see ``minist.models.codec``), RESULT
(body: JSON ``{"label", "logits", "server_ms"}``), ERROR (body: JSON
``{"error": …}``), PING / PONG (empty body).
"""

from __future__ import annotations

import json
import struct

INFER, RESULT, ERROR, PING, PONG = 1, 2, 3, 4, 5
TYPES = {INFER: "INFER", RESULT: "RESULT", ERROR: "ERROR", PING: "PING", PONG: "PONG"}
PREFIX = struct.Struct(">IB")        # length, type
FRAME_OVERHEAD = PREFIX.size         # 5 bytes
DEFAULT_MAX_FRAME = 1 << 20          # 1 MiB: far above any message this project sends


class ProtocolError(ValueError):
    """A frame that breaks the framing rules (too large, empty, cut off)."""


def encode_frame(kind: int, body: bytes = b"") -> bytes:
    if kind not in TYPES:
        raise ValueError(f"unknown frame type {kind}")
    return PREFIX.pack(len(body) + 1, kind) + body


def encode_json(kind: int, obj) -> bytes:
    return encode_frame(kind, json.dumps(obj).encode())


def check_length(length: int, max_frame: int) -> None:
    if length < 1:
        raise ProtocolError("empty frame (length 0): every frame has at least a type byte")
    if length - 1 > max_frame:
        raise ProtocolError(f"frame of {length - 1} bytes is over the {max_frame}-byte limit")
