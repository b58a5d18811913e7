"""CompressAI's rANS encoder, byte for byte, in NumPy and plain Python (no torch, no compiled extension).

A port of ``RansEncoder.encode_with_indexes`` from CompressAI 1.2 (``cpp_exts/rans/rans_interface.cpp``,
which builds on Fabian Giesen's public-domain ``rans64.h``): a 64-bit state, 32-bit output words
(little-endian), 16-bit CDF precision, and out-of-range values sent as 4-bit "bypass" chunks. Because the
bytes are identical, ``minist serve`` decodes them with CompressAI unchanged; ``tests/test_device.py``
compares the two coders on real latents and on values far outside the tables.

Encoding runs backwards (rANS is last-in, first-out): symbols are turned into (start, frequency) pairs
first (vectorised), then pushed into the state from the last to the first.
"""

from __future__ import annotations

import numpy as np

PRECISION = 16          # CDF precision of CompressAI's tables
BYPASS_BITS = 4         # width of one bypass chunk
MAX_BYPASS = (1 << BYPASS_BITS) - 1
RANS_L = 1 << 31        # lower bound of the normalised state
_MASK32 = (1 << 32) - 1


def symbols_to_ranges(symbols: np.ndarray, channel: np.ndarray, cdfs: np.ndarray, lengths: np.ndarray,
                      offsets: np.ndarray):
    """(start, range, bypass) for every coded unit, in encoding order (CompressAI's ``_syms``).

    Without out-of-range symbols, the arrays ``(start, range)`` instead (the fast path).
    """
    max_value = lengths[channel] - 2
    value = symbols.astype(np.int64) - offsets[channel]
    escape = (value < 0) | (value >= max_value)
    v = np.where(escape, max_value, value)
    start = cdfs[channel, v]
    rng = cdfs[channel, v + 1] - start
    if not escape.any():   # the common case: no bypass units, one (start, range) per symbol
        return start, rng
    out = []
    raw_all = np.where(value < 0, -2 * value - 1, 2 * (value - max_value))
    for s, r, e, raw in zip(start.tolist(), rng.tolist(), escape.tolist(), raw_all.tolist()):
        out.append((s, r, False))
        if not e:
            continue
        raw &= _MASK32                           # CompressAI keeps it in a uint32
        n = 0
        while n < 8 and (raw >> (n * BYPASS_BITS)) != 0:
            n += 1
        val = n
        while val >= MAX_BYPASS:
            out.append((MAX_BYPASS, MAX_BYPASS + 1, True))
            val -= MAX_BYPASS
        out.append((val, val + 1, True))
        for j in range(n):
            chunk = (raw >> (j * BYPASS_BITS)) & MAX_BYPASS
            out.append((chunk, chunk + 1, True))
    return out


def _encode_plain(start: np.ndarray, freq: np.ndarray) -> bytes:
    """The fast path (no bypass units): the same arithmetic as :func:`encode`, with x_max precomputed."""
    x = RANS_L
    words = []
    push = words.append
    x_max = (((RANS_L >> PRECISION) << 32) * freq.astype(np.uint64)).tolist()
    for s, f, m in zip(start[::-1].tolist(), freq[::-1].tolist(), x_max[::-1]):
        if x >= m:
            push(x & _MASK32)
            x >>= 32
        x = ((x // f) << PRECISION) + x % f + s
    push(x >> 32)
    push(x & _MASK32)
    words.reverse()
    return np.asarray(words, dtype="<u4").tobytes()


def encode(units: list[tuple[int, int, bool]]) -> bytes:
    """Push the units into a rANS state backwards; return the flushed words as bytes (little-endian)."""
    x = RANS_L
    words = []
    push = words.append
    bound = (RANS_L >> PRECISION) << 32          # x_max = bound · freq
    bypass_freq = 1 << (PRECISION - BYPASS_BITS)
    for start, freq, bypass in reversed(units):
        if bypass:
            if x >= bound * bypass_freq:
                push(x & _MASK32)
                x >>= 32
            x = (x << BYPASS_BITS) | start
        else:
            if x >= bound * freq:
                push(x & _MASK32)
                x >>= 32
            x = ((x // freq) << PRECISION) + (x % freq) + start
    push(x >> 32)                                # the flush writes the state's low word first in memory …
    push(x & _MASK32)
    words.reverse()                              # … and the words were written from the end of the buffer
    return np.asarray(words, dtype="<u4").tobytes()


def encode_symbols(symbols, channel, cdfs, lengths, offsets) -> bytes:
    """Integer symbols (any shape) with their table index per symbol → CompressAI's rANS payload."""
    units = symbols_to_ranges(np.asarray(symbols).reshape(-1), np.asarray(channel).reshape(-1), cdfs, lengths,
                              offsets)
    return _encode_plain(*units) if isinstance(units, tuple) else encode(units)
