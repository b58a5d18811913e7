"""Single-byte flips in checkpoints: does a damaged file ever load changed weights? (the hardening issue's table)

    python tests/helpers/flip_checkpoints.py [N]   →  counts for (a) a copy of the shipped teacher next to
    data/SHA256SUMS, (b) the same weights re-saved (in-file digest only)
"""

import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from minist import checkpoint
from minist.utils import data_dir


def flip_outcomes(path: Path, n: int, rnd: random.Random) -> dict:
    """Flip one random bit of ``path`` ``n`` times (restored after); count refused / same weights / silent loads."""
    blob, clean = path.read_bytes(), checkpoint.load(path)
    out = {"refused": 0, "same weights": 0, "silent": 0, "other error": 0}
    try:
        for _ in range(n):
            b = bytearray(blob)
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            path.write_bytes(bytes(b))
            try:
                got = checkpoint.load(path)
            except ValueError:
                out["refused"] += 1
                continue
            except Exception:   # noqa: BLE001 (counted: the wrong kind of error)
                out["other error"] += 1
                continue
            same = got["meta"] == clean["meta"] and all(torch.equal(got["state_dict"][k], v)
                                                        for k, v in clean["state_dict"].items())
            out["same weights" if same else "silent"] += 1
    finally:
        path.write_bytes(blob)
    return out


def main(n: int) -> None:
    rnd = random.Random(0)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    shutil.copy(data_dir() / "teacher_mini.pt", tmp / "a" / "teacher_mini.pt")
    shutil.copy(data_dir() / "SHA256SUMS", tmp / "a" / "SHA256SUMS")
    ck = checkpoint.load(data_dir() / "teacher_mini.pt")
    checkpoint.save(tmp / "b" / "t.pt", kind="teacher", config=ck["config"], state_dict=ck["state_dict"],
                    meta=ck["meta"])
    for name, path in (("shipped copy + SHA256SUMS", tmp / "a" / "teacher_mini.pt"),
                       ("re-saved, in-file digest only", tmp / "b" / "t.pt")):
        print(f"{name}: {n} flips → {flip_outcomes(path, n, rnd)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
