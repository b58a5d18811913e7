"""How much do forged messages slow a genuine client? (the hardening issue's server numbers)

    python tests/helpers/server_flood.py   →  the cost of a lying 1000×1000 header and of the heaviest forgeries,
    and a genuine client's latency alone and while 4 clients flood the server with forgeries
"""

import os
import statistics as st
import struct
import threading
import time
import zlib

import torch

from minist import pretrained
from minist.split import SplitClient, SplitServer
from minist.split.client import ServerError


def main() -> None:
    device, server_part = pretrained.student("mini").split()
    msg = device(torch.rand(1, 3, 128, 128))

    def forge(h, w, body):
        b = struct.pack(">2sBBHH4s", b"MN", 1, 12, h, w, msg[8:12]) + body
        return b + struct.pack(">I", zlib.crc32(b))

    n = 74968   # the longest body a 12×31×31 latent may have, in whole words
    cases = {"1000×1000 declared, real body": forge(1000, 1000, msg[12:-4]),
             "heaviest random body": forge(31, 31, os.urandom(n)), "heaviest all-ones body": forge(31, 31, b"\xff" * n)}
    from minist.config import mini_val_set as val_set
    from minist.models.sandbox import SandboxedDecoder
    val = val_set(limit=100)
    msgs = [device(val[i][0][None]) for i in range(100)]
    tic = time.perf_counter()
    sandbox = SandboxedDecoder(server_part.codec, server_part.latent_sizes)
    sandbox(msgs[0])
    print(f"a sandbox process started and decoded its first message in {1000 * (time.perf_counter() - tic):.0f} ms")
    for name, f in (("in-process decode", lambda m: server_part(m)),
                    ("sandboxed decode", lambda m: server_part(m, decode=sandbox))):
        tic = time.perf_counter()
        for m in msgs:
            f(m)
        print(f"server part, {name:18s}: {1000 * (time.perf_counter() - tic) / len(msgs):.2f} ms per message")
    sandbox.close()
    with SplitServer(server_part) as server:
        with SplitClient(port=server.port) as c:
            c.infer(msg)
            for name, m in cases.items():
                ts = []
                for _ in range(30):
                    t = time.perf_counter()
                    try:
                        c.infer(m)
                    except ServerError:
                        pass
                    ts.append(1000 * (time.perf_counter() - t))
                print(f"{name:32s} refused in {st.median(ts):6.2f} ms (median of 30)")
            alone = []
            for _ in range(50):
                t = time.perf_counter()
                c.infer(msg)
                alone.append(1000 * (time.perf_counter() - t))
        for name in ("heaviest random body", "heaviest all-ones body"):
            stop = time.monotonic() + 6

            def attack(m=cases[name], stop=stop):
                with SplitClient(port=server.port) as a:
                    while time.monotonic() < stop:
                        try:
                            a.infer(m)
                        except ServerError:
                            pass

            threads = [threading.Thread(target=attack) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            lat = []
            with SplitClient(port=server.port) as c:
                while time.monotonic() < stop - 0.5:
                    t = time.perf_counter()
                    c.infer(msg)
                    lat.append(1000 * (time.perf_counter() - t))
            for t in threads:
                t.join()
            print(f"genuine client: alone {st.median(alone):.1f} ms; while 4 clients flood '{name}': median "
                  f"{st.median(lat):.1f} ms, p95 {sorted(lat)[int(0.95 * len(lat))]:.1f} ms ({len(lat)} requests)")


if __name__ == "__main__":
    main()
