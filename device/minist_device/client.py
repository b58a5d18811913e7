"""One TCP connection to ``minist serve``: INFER frames out, RESULT or ERROR frames back."""

from __future__ import annotations

import socket
import time

from . import wire


class ServerError(RuntimeError):
    """The server answered with an ERROR frame."""


class Client:
    def __init__(self, host: str = "127.0.0.1", port: int = 8765, timeout: float = 30.0):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port must be an integer in 1…65535, got {port!r}")
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ConnectionError(f"cannot reach a minist server at {host}:{port} ({e}); start one with "
                                  f"`minist serve`") from e

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        return bytes(buf)

    def infer(self, message: bytes) -> dict:
        tic = time.perf_counter()
        self.sock.sendall(wire.frame(wire.INFER, message))
        length, kind = wire.PREFIX.unpack(self._recv(wire.PREFIX.size))
        body = self._recv(length - 1)
        if kind == wire.ERROR:
            raise ServerError(wire.parse_json(body).get("error", "unknown server error"))
        if kind != wire.RESULT:
            raise ConnectionError(f"unexpected frame type {kind} from the server")
        out = wire.parse_json(body)
        out["bytes_sent"] = len(message) + wire.FRAME_OVERHEAD
        out["round_trip_ms"] = 1000 * (time.perf_counter() - tic)
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
