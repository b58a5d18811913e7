"""kill -9 a process in the middle of checkpoint saves, 12 times; count the temporaries left; save once more.

    python tests/helpers/kill_during_save.py
"""

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from minist import checkpoint

SAVER = """
import sys, torch
from minist import checkpoint
state = {"w": torch.randn(25_000_000)}     # 95 MB: a save takes long enough to be killed in the middle
while True:
    checkpoint.save(sys.argv[1], kind="toy", config={}, state_dict=state)
"""


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    target = folder / "c.pt"
    for i in range(12):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(target)])
        time.sleep(4 + 0.37 * i)
        p.send_signal(signal.SIGKILL)
        p.wait()
    left = list(folder.glob(".c.pt.*.tmp"))
    print(f"after 12 kills: {len(left)} temporaries, {sum(f.stat().st_size for f in left) / 2**20:.0f} MB")
    checkpoint.save(target, kind="toy", config={}, state_dict={"w": torch.zeros(3)})
    print(f"after the next save: {len(list(folder.glob('.c.pt.*.tmp')))} temporaries; the file loads as "
          f"{checkpoint.load(target)['kind']!r}")


if __name__ == "__main__":
    main()
