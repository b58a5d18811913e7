"""The server side of the split: bytes in, prediction out, over TCP frames.

Safe by default: binds to 127.0.0.1, refuses frames over ``max_frame`` bytes,
times out slow or silent clients, answers a malformed or foreign message with
an ERROR frame and keeps serving, and serves many clients at once (asyncio;
inference runs one request at a time in a worker thread, so memory stays bounded).

Against a sender who forges headers: only the latent sizes of the accepted input
sizes are decoded (``latent_sizes``, by default the model's training size), the rANS
decoder runs in a process of its own with a deadline and a re-encoding check
(:mod:`minist.models.sandbox`), any exception in a request becomes an ERROR frame, at
most ``max_connections`` clients are served at once, and a connection ends after
``idle_timeout`` s without a request (PINGs do not count), ``lifetime`` s in all, or
(if set) ``max_bad_payloads`` refused messages. Idle connections hold no lasting claim on the cap: when it is
full, a new client takes the place of the one idle longest (no request for ``evict_idle`` s, none in progress).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time

import torch

from ..models.wire import PayloadError
from . import protocol as P


class SplitServer:
    """Run ``server_part`` (bytes → logits) behind a TCP port."""

    def __init__(self, server_part, host: str = "127.0.0.1", port: int = 0, max_frame: int = P.DEFAULT_MAX_FRAME,
                 timeout: float = 10.0, classes=None, latent_sizes=None, max_connections: int = 64,
                 idle_timeout: float = 60.0, lifetime: float = 600.0, max_bad_payloads: int | None = None,
                 evict_idle: float = 1.0):
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be in 0…65535 (0 picks a free one), got {port}")
        self.server_part, self.host, self.port = server_part, host, int(port)
        self.max_frame, self.timeout, self.classes = max_frame, timeout, classes
        self.max_connections, self.idle_timeout, self.lifetime = max_connections, idle_timeout, lifetime
        self.max_bad_payloads, self.evict_idle = max_bad_payloads, evict_idle
        self.latent_sizes = set(latent_sizes or getattr(server_part, "latent_sizes", None) or ())
        maker = getattr(server_part, "decoder_for_strangers", None)
        self._decode = maker(self.latent_sizes or None) if maker is not None else None
        self.stats = {"requests": 0, "errors": 0, "connections": 0, "refused": 0, "evicted": 0}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="minist-infer")
        self._loop = self._server = self._thread = None
        self._handlers: dict = {}      # task → {"writer", "last_request", "busy"} of each open connection

    # ---- one request ----------------------------------------------------------------------
    def _infer(self, message: bytes) -> dict:
        tic = time.perf_counter()
        with torch.no_grad():
            logits = (self.server_part(message, decode=self._decode) if self._decode is not None
                      else self.server_part(message))[0]
        if not torch.isfinite(logits).all():
            raise PayloadError("the message decodes to non-finite logits: refused")
        label = int(logits.argmax())
        out = {"label": label, "logits": [round(float(v), 5) for v in logits],
               "server_ms": 1000 * (time.perf_counter() - tic)}
        if self.classes is not None:
            out["class"] = self.classes[label]
        return out

    async def _reply_error(self, writer, text: str) -> None:
        self.stats["errors"] += 1
        writer.write(P.encode_json(P.ERROR, {"error": text}))
        await writer.drain()

    def _evict_one(self, now: float) -> bool:
        """Make room: end the connection idle longest, if one has made no request for ``evict_idle`` s."""
        idle = [(c["last_request"], t) for t, c in self._handlers.items()
                if not c["busy"] and now - c["last_request"] >= self.evict_idle]
        if not idle:
            return False
        _, task = min(idle, key=lambda p: p[0])
        conn = self._handlers.pop(task)
        try:
            conn["writer"].write(P.encode_json(P.ERROR, {"error": "connection closed: the server is full and this "
                                                                  "connection was the one idle longest; reconnect"}))
        except (ConnectionError, RuntimeError):
            pass
        task.cancel()
        self.stats["evicted"] += 1
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if len(self._handlers) >= self.max_connections and not self._evict_one(loop.time()):
            self.stats["refused"] += 1
            try:
                await self._reply_error(writer, f"server busy: {self.max_connections} connections open; retry later")
            except ConnectionError:
                pass
            writer.close()
            return
        self.stats["connections"] += 1
        opened = last_request = loop.time()
        conn = self._handlers[asyncio.current_task()] = {"writer": writer, "last_request": opened, "busy": False}
        bad = 0
        try:
            while True:
                now = loop.time()
                if now - opened > self.lifetime or now - last_request > self.idle_timeout:
                    why = "lifetime" if now - opened > self.lifetime else "idle time"
                    await self._reply_error(writer, f"connection closed: over its {why} limit; reconnect")
                    return
                wait = min(self.timeout, self.lifetime - (now - opened), self.idle_timeout - (now - last_request))
                try:
                    head = await asyncio.wait_for(reader.readexactly(P.PREFIX.size), max(wait, 0.01))
                except asyncio.IncompleteReadError:
                    return                                   # client closed (possibly mid-prefix)
                length, kind = P.PREFIX.unpack(head)
                try:
                    P.check_length(length, self.max_frame)
                except P.ProtocolError as e:                 # cannot resynchronise: say why, then close
                    await self._reply_error(writer, str(e))
                    return
                try:
                    body = await asyncio.wait_for(reader.readexactly(length - 1), self.timeout)
                except asyncio.IncompleteReadError:
                    return
                if kind == P.PING:
                    writer.write(P.encode_frame(P.PONG))
                elif kind == P.INFER:
                    self.stats["requests"] += 1
                    last_request = conn["last_request"] = loop.time()
                    conn["busy"] = True
                    try:
                        result = await loop.run_in_executor(self._pool, self._infer, body)
                        writer.write(P.encode_frame(P.RESULT, json.dumps(result).encode()))
                    except PayloadError as e:
                        await self._reply_error(writer, f"bad payload: {e}")
                        bad += 1
                        if self.max_bad_payloads is not None and bad >= self.max_bad_payloads:
                            await self._reply_error(writer, f"connection closed after {bad} bad payloads")
                            return
                        continue
                    except Exception as e:   # noqa: BLE001 (whatever a request breaks, the client hears why)
                        await self._reply_error(writer, f"server error: {type(e).__name__}: {e}")
                        continue
                    finally:
                        conn["busy"] = False
                else:
                    await self._reply_error(writer, f"unexpected frame type {kind}; send INFER (1) or PING (4)")
                    continue
                await writer.drain()
        except asyncio.TimeoutError:
            try:
                await self._reply_error(writer, f"timed out after {self.timeout} s waiting for a frame, or over "
                                                f"the connection's idle ({self.idle_timeout} s) or lifetime limit")
            except ConnectionError:
                pass
        except (ConnectionError, asyncio.CancelledError):   # client gone, or the server shutting down
            pass
        finally:
            self._handlers.pop(asyncio.current_task(), None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    # ---- lifecycle ------------------------------------------------------------------------
    async def serve(self, ready: threading.Event | None = None, on_ready=None) -> None:
        """Serve until cancelled (``asyncio.run(server.serve())`` runs it in the foreground).

        ``ready`` is set, and ``on_ready(self)`` called, once the port is open (``self.port`` is then the bound one).
        """
        self._loop = asyncio.get_running_loop()
        start = getattr(self._decode, "start", None)
        if start is not None:   # the sandboxed decoder's process, ready before the first client
            start()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=self.max_frame + 16)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        if on_ready is not None:
            on_ready(self)
        async with self._server:
            try:
                await self._server.serve_forever()
            except asyncio.CancelledError:
                pass

    def start(self) -> SplitServer:
        """Serve in a background thread (notebooks, tests); returns once the port is open."""
        ready = threading.Event()

        def run():
            asyncio.run(self.serve(ready))

        self._thread = threading.Thread(target=run, name="minist-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the server did not start within 10 s")
        return self

    async def _shutdown(self) -> None:
        tasks = list(self._handlers)
        for t in tasks:          # end open connections first ...
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._server.close()     # ... then the listening socket, which ends serve()

    def stop(self) -> None:
        """Close the port, end every connection, and join the server thread."""
        if self._loop is not None and self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=True)
        close = getattr(self._decode, "close", None)
        if close is not None:   # the sandboxed decoder's process
            close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
