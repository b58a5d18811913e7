"""The device side of the split: image → bytes (encoder + rANS) → server, through a channel model."""

from __future__ import annotations

import json
import socket
import time

from . import protocol as P
from .channel import Channel


class ServerError(RuntimeError):
    """The server answered with an ERROR frame."""


class SplitClient:
    """One TCP connection to a :class:`~minist.split.server.SplitServer`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, channel: Channel | None = None,
                 timeout: float = 30.0, max_frame: int = P.DEFAULT_MAX_FRAME):
        self.channel, self.max_frame = channel, max_frame
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port must be an integer in 1…65535, got {port!r}")
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ConnectionError(f"cannot reach a minist server at {host}:{port} ({e}); "
                                  "start one with `minist serve`") from e

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        return bytes(buf)

    def send_frame(self, kind: int, body: bytes = b"") -> tuple[int, bytes, float]:
        """Send one frame and wait for the reply frame: ``(type, body, channel seconds)``."""
        frame = P.encode_frame(kind, body)
        wire = self.channel.wait_uplink(len(frame)) if self.channel else 0.0
        self.sock.sendall(frame)
        length, rkind = P.PREFIX.unpack(self._recv_exact(P.PREFIX.size))
        P.check_length(length, self.max_frame)
        rbody = self._recv_exact(length - 1)
        if self.channel:
            wire += self.channel.wait_downlink(P.PREFIX.size + len(rbody))
        return rkind, rbody, wire

    def infer(self, message: bytes) -> dict:
        """Send one message; return the server's result with the time spent on the wire and in total."""
        tic = time.perf_counter()
        kind, body, wire = self.send_frame(P.INFER, message)
        reply = json.loads(body or b"{}")
        if kind == P.ERROR:
            raise ServerError(reply.get("error", "unknown error"))
        if kind != P.RESULT:
            raise ServerError(f"unexpected reply frame type {kind}")
        reply["channel_ms"] = 1000 * wire
        reply["round_trip_ms"] = 1000 * (time.perf_counter() - tic)
        reply["bytes_sent"] = len(message) + P.FRAME_OVERHEAD
        return reply

    def ping(self) -> bool:
        return self.send_frame(P.PING)[0] == P.PONG

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
