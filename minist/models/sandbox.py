"""Decode untrusted bytes without trusting CompressAI's decoder: a process of its own, and a re-encoding check.

Header checks (:meth:`minist.models.codec.FactorizedCodec.parse_rate`) refuse a lying latent size or a
body of impossible length before any decoding. What they cannot rule out: a forged
body of plausible length whose rANS stream makes CompressAI's C++ decoder read past
its buffer (it has no bound; the bypass path for out-of-range symbols can be driven to
read far). So the server decodes in :mod:`minist.models.rans_worker`, a small process
that holds only the coding tables (a variable-rate model's: one set per rate, sent when first used), with a
memory cap and a deadline:

* the process crashes (an out-of-bounds read) → ``PayloadError``, and a new process;
* it takes longer than ``timeout`` s → killed → ``PayloadError``;
* it returns → the symbols are **re-encoded** here, and a message whose payload is not
  exactly what our encoder would have written for them is refused. A forged body can
  decode to *some* latent; only the one stream our encoder makes passes, so no forged
  message gets an answer computed from garbage.

Cost (default student, one thread, measured with ``tests/helpers/server_flood.py`` and the
hardening issue's closing note): ≈ 3 ms more per genuine message (decode in the process 1.3 ms,
re-encode 1.65 ms); a process starts in ≈ 63 ms (no torch, no NumPy), and a spare is kept ready.
"""

from __future__ import annotations

import importlib.util
import json
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .wire import PayloadError

WORKER = Path(__file__).with_name("rans_worker.py")
# Two consecutive 0xFFFFFFFF words: in a genuine (near-random) stream about once in 2⁶⁴ word pairs; in a forged one,
# the cheapest way to make the decoder's bypass loop run off the end. Refused before decoding (the process is the
# guarantee; this only saves it a restart).
_ALL_ONES_RUN = b"\xff" * 8


def refuse_forged_runs(payload: bytes) -> None:
    """Refuse a payload holding a run of all-ones words (it drives CompressAI's bypass loop far past the body)."""
    if _ALL_ONES_RUN in payload:
        raise PayloadError("the payload holds a run of all-ones words that no encoder writes: forged, refused")


def check_reencodes(coder, z_hat: torch.Tensor, payload: bytes) -> None:
    """Refuse a payload that is not exactly what our encoder writes for the latent ``z_hat`` it decodes to."""
    try:
        again = coder.payload_of(z_hat)
    except ValueError:
        raise PayloadError("the payload decodes to symbols no encoder writes: forged or corrupt, refused") from None
    if again != payload:
        raise PayloadError("the payload is not what the encoder writes for the latent it decodes to: "
                           "forged or corrupt, refused")


class SandboxedDecoder:
    """``decoder(message) → ẑ (1, C, h, w)`` for one entropy bottleneck, in a separate process.

    ``start()`` and ``close()`` manage the process (a server calls them as it opens and stops)."""

    def __init__(self, eb, latent_sizes=None, timeout: float = 5.0, max_mb: int = 512):
        if not eb.ready():
            raise RuntimeError("the entropy model has no coding tables yet: call update() first")
        self.eb, self.latent_sizes, self.timeout, self.max_mb = eb, latent_sizes, timeout, max_mb
        # a variable-rate codec (GainedCodec) has one set of tables per grid rate, sent to the process when first used
        self._table_json: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._spare: subprocess.Popen | None = None   # started ahead: a crash costs a swap, not a start-up
        self._has: dict[int, set] = {}                # process id → the table sets it holds
        self.restarts = 0

    def _tables(self, key: int) -> bytes:
        """The worker's JSON of table set ``key`` (a grid rate of a variable-rate codec; 0 for a one-rate one)."""
        if key not in self._table_json:
            eb = self.eb.tables(key)
            self._table_json[key] = json.dumps({
                "cdfs": eb._quantized_cdf.tolist(), "lengths": eb._cdf_length.reshape(-1).int().tolist(),
                "offsets": eb._offset.reshape(-1).int().tolist()}).encode()
        return self._table_json[key]

    # ---- the worker process -----------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        ans = importlib.util.find_spec("compressai.ans").origin
        proc = subprocess.Popen([sys.executable, "-I", str(WORKER), ans, str(self.max_mb)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._has[proc.pid] = set()
        return proc

    def _ensure(self) -> None:
        """A live decoder process in ``_proc`` (the spare, if one is ready), and a new spare behind it."""
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            spare, self._spare = self._spare, None
            self._proc = spare if spare is not None and spare.poll() is None else self._start()
        if self._spare is None or self._spare.poll() is not None:
            self._spare = self._start()

    @staticmethod
    def _end(proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:   # a dead reader: the unflushed request goes nowhere, which is fine
                pass

    def _kill(self) -> None:
        if self._proc is not None:
            self._has.pop(self._proc.pid, None)
            self._end(self._proc)
            self._proc = None
            self.restarts += 1

    def start(self) -> None:
        """Start the decoder process now rather than at the first message (a server calls this as it opens)."""
        with self._lock:
            self._ensure()

    def close(self) -> None:
        with self._lock:
            self._kill()
            if self._spare is not None:
                self._end(self._spare)
                self._spare = None

    def __del__(self):
        try:
            self.close()
        except Exception:   # noqa: BLE001 (interpreter shutdown)
            pass

    def _read(self, n: int, deadline: float) -> bytes:
        out = self._proc.stdout
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError
            chunk = out.read1(n - got)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _symbols(self, payload: bytes, c: int, h: int, w: int, key: int = 0) -> np.ndarray:
        n = c * h * w
        with self._lock:
            self._ensure()
            deadline = time.monotonic() + self.timeout
            try:
                has = self._has.setdefault(self._proc.pid, set())
                if key not in has:      # this process has not seen this rate's tables yet
                    tables = self._tables(key)
                    self._proc.stdin.write(struct.pack("=III", 1, key, len(tables)) + tables)
                    has.add(key)
                self._proc.stdin.write(struct.pack("=IIIIII", 0, key, c, h, w, len(payload)) + payload)
                self._proc.stdin.flush()
                status = self._read(1, deadline)
                if status == b"\0":
                    return np.frombuffer(self._read(4 * n, deadline), dtype=np.intc)
                (k,) = struct.unpack("=I", self._read(4, deadline))
                raise PayloadError(f"the rANS decoder refused the payload ({self._read(k, deadline).decode()})")
            except TimeoutError:
                self._kill()
                raise PayloadError(f"decoding took longer than {self.timeout} s: refused") from None
            except (EOFError, BrokenPipeError, OSError):
                self._kill()
                raise PayloadError("the rANS decoder crashed on this payload (a forged stream): refused") from None

    # ---- one message -------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, data: bytes) -> torch.Tensor:
        """A message → ẑ (1, C, h, w), or ``PayloadError``; the payload must be exactly our encoder's."""
        payload, (h, w), key = self.eb.parse_rate(data, self.latent_sizes)      # key: the message's rate
        refuse_forged_runs(payload)    # measured: such a run crashes CompressAI's decoder
        c, coder = self.eb.channels, self.eb.tables(key)
        values = torch.from_numpy(self._symbols(payload, c, h, w, key).astype(np.float32)).view(1, c, h, w)
        z_hat = values + coder._get_medians().detach().reshape(1, -1, 1, 1).float()
        check_reencodes(coder, z_hat, payload)
        return self.eb.output(z_hat, key)

    __call__ = decode
