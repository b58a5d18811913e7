"""The val set's digest under two OpenBLAS kernels, and how many images differ (the fresh-machine issue).

    python tests/helpers/val_digests.py   →  digest with the machine's kernel and with OPENBLAS_CORETYPE=Prescott

On this renderer both equal the shipped 603dcca010da…; run on commit f6c979e (the renderer that used `@`),
Prescott changed 22 of the 2,000 images on an AVX2 machine.
"""

import os
import subprocess
import sys

RENDER = """
import hashlib, numpy as np
from minist.data.synth import FashionOnPhotos
g, h, per = FashionOnPhotos("val", "classification"), hashlib.sha256(), []
for i in range(len(g)):
    b = np.ascontiguousarray(g.render(i)[0].transpose(2, 0, 1)).tobytes()
    h.update(b)
    per.append(hashlib.sha256(b).hexdigest()[:12])
print(h.hexdigest())
print(" ".join(per))
"""


def main() -> None:
    runs = {}
    for core in ("", "Prescott"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if core:
            env["OPENBLAS_CORETYPE"] = core
        out = subprocess.run([sys.executable, "-c", RENDER], env=env, capture_output=True, text=True,
                             check=True).stdout.split("\n")
        runs[core or "default"] = (out[0], out[1].split())
    for name, (digest, _) in runs.items():
        print(f"OpenBLAS kernel {name:9s}: val set sha256 {digest[:12]}…")
    differ = [i for i, (a, b) in enumerate(zip(runs["default"][1], runs["Prescott"][1])) if a != b]
    first = f" (first: {differ[0]})" if differ else ""
    print(f"images that differ: {len(differ)} of {len(runs['default'][1])}{first}")


if __name__ == "__main__":
    main()
