"""Hostile messages against the server's decoder, in a process of its own (a crash fails the test, not pytest).

    python tests/helpers/fuzz_payloads.py N SEED  →  one JSON line: counts per class and outcome

Every case is header-valid where it matters: the magic, version, channel count and the
model's fingerprint are right and the CRC is recomputed, as an attacker who read
``minist/models/codec.py`` would send. Outcomes: ``clear`` (PayloadError), ``wrong``
(another exception), ``silent`` (an answer for a message that is not one the device made).
A crash or a hang ends this process, which the test sees.
"""

import json
import random
import struct
import sys
import time
import zlib
from collections import Counter

import torch

from minist import pretrained
from minist.config import mini_val_set as val_set
from minist.models.codec import PayloadError


def main(n: int, seed: int) -> None:
    rng = random.Random(seed)
    student = pretrained.student("mini")
    device, server = student.split()
    decode = server.decoder_for_strangers(server.latent_sizes)
    val = val_set(limit=8)
    genuine = [device(val[i][0][None]) for i in range(8)]
    fp, (h0, w0) = genuine[0][8:12], next(iter(server.latent_sizes))

    def forge(h, w, body, c=12):
        b = struct.pack(">2sBBHH4s", b"MN", 1, c, h, w, fp) + body
        return b + struct.pack(">I", zlib.crc32(b))

    def body_of(m):
        return m[12:-4]

    def flip(body):
        b = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)

    def truncate(body):          # whole words, strictly shorter than the genuine body (never the message itself)
        return body[:4 * rng.randint(2, max(2, len(body) // 4 - 1))]

    def splice(a, b):            # the first half of one message's words, the second half of another's
        cut = 4 * (min(len(a), len(b)) // 8)
        return a[:cut] + b[cut:]

    makers = {
        "size: declared sizes ≠ the model's": lambda: forge(rng.choice([1, 2, 30, 32, 48, 64, 1000, 4096, 65535]),
                                                            rng.choice([1, 31, 64, 1000, 65535]), body_of(genuine[0])),
        "length: empty or too short": lambda: forge(h0, w0, bytes(rng.randrange(0, 8))),
        "length: too long": lambda: forge(h0, w0, bytes(80_000 + 4 * rng.randrange(100))),
        "length: not whole words": lambda: forge(h0, w0, body_of(genuine[1])[:-rng.randint(1, 3)]),
        "body: random bytes": lambda: forge(h0, w0, rng.randbytes(4 * rng.randint(2, 900))),
        "body: all 0xFF / all 0x00": lambda: forge(h0, w0, rng.choice([b"\xff", b"\x00"]) * 4 * rng.randint(2, 900)),
        "body: genuine with bit flips": lambda: forge(h0, w0, flip(body_of(rng.choice(genuine)))),
        "body: genuine, truncated": lambda: forge(h0, w0, truncate(body_of(rng.choice(genuine)))),
        "body: two genuine spliced": lambda: forge(h0, w0, splice(body_of(genuine[2]), body_of(genuine[3]))),
        "channels: C ≠ 12": lambda: forge(h0, w0, body_of(genuine[0]), c=rng.choice([0, 1, 11, 13, 255])),
    }
    names = list(makers)
    out, worst_ms = Counter(), 0.0
    genuine_ok = all(torch.equal(server(m, decode=decode), server(m)) for m in genuine)
    for i in range(n):
        kind = names[i % len(names)]
        msg = makers[kind]()
        tic = time.perf_counter()
        try:
            server(msg, decode=decode)
            outcome = "silent" if msg not in genuine else "genuine"
        except PayloadError:
            outcome = "clear"
        except Exception as e:   # noqa: BLE001 (counted as the wrong kind of error)
            outcome = f"wrong ({type(e).__name__}: {str(e)[:80]})"
        worst_ms = max(worst_ms, 1000 * (time.perf_counter() - tic))
        out[f"{kind} | {outcome}"] += 1
    print(json.dumps({"cases": dict(out), "genuine_ok": genuine_ok, "worst_ms": worst_ms}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
