"""One way to get a device, one way to seed, one place for paths."""

from __future__ import annotations

import inspect
import os
import random
from pathlib import Path

import numpy as np
import torch


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else the best available of cuda, mps, cpu."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast speeds training up on ``device``: CUDA with bf16, or a CPU with AMX or AVX-512 bf16
    instructions. Measured on a 2-core Xeon with AMX (``minist bench train``: one thread, batch 32,
    channels_last): the mini teacher's training step 119 → 218 images/s, a stage-1 step 61 → 80. A CPU without them
    (AVX2 only) emulates bf16 and gains nothing, so the recipes' ``amp=None`` (auto) leaves it off there."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return any(c() for c in checks if c is not None)
    return False


def resolve_amp(amp: bool | None, device: torch.device | str) -> bool:
    """A recipe's ``amp`` setting: True/False as given, None → :func:`fast_bf16` on this device."""
    return fast_bf16(device) if amp is None else bool(amp)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def live_threads(load: float | None = None, cores: int | None = None) -> int:
    """Threads for a chapter's live cells: every core on a quiet machine, fewer on a busy one. Measured on a 2-core
    CPU running two one-thread trainings, a student step took 692–919 ms on 1 thread and 939–988 ms on 2: an
    oversubscribed core is slower than none. So: the cores minus the 1-minute load average, at least 1.
    ``MINIST_THREADS`` overrides."""
    if os.environ.get("MINIST_THREADS"):
        return max(1, int(os.environ["MINIST_THREADS"]))
    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
    return max(1, min(cores, cores - int(round(load))))


def quick_mode() -> bool:
    """True when ``MINIST_QUICK`` is set to a non-empty value other than ``0``.

    Notebooks and benchmarks shrink their work in quick mode so CI can execute
    them in seconds to minutes (nbdev's ``IN_TEST`` idea).
    """
    return os.environ.get("MINIST_QUICK", "") not in ("", "0", "false", "False")


def data_dir() -> Path:
    """The project's ``data/`` folder (shipped subsets, checkpoints, results).

    ``MINIST_DATA`` overrides it; otherwise it is the ``data/`` beside the
    package in a source checkout (``pip install -e .``).
    """
    env = os.environ.get("MINIST_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"minist's data folder was not found at {path}. Install minist from a source "
            "checkout with `pip install -e .`, or set MINIST_DATA to the checkout's data/ folder."
        )
    return path


def cache_dir() -> Path:
    """Where generated data (e.g. the cached validation set) is kept.

    ``MINIST_CACHE`` overrides the default ``~/.cache/minist``.
    """
    env = os.environ.get("MINIST_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "minist"
    path.mkdir(parents=True, exist_ok=True)
    return path


def show_source(obj, start: str | None = None, omit: tuple[str, ...] = ()) -> None:
    """Print the source of a function or class of minist, with the file and line it comes from (the notebooks
    show the code that runs, not a paraphrase of it).

    ``start``: begin at the first line containing this text; ``omit``: leave out every line containing one of
    these texts together with the block indented under it. What is left out is marked in place (``# … n lines
    left out: …``), so the lines shown are the real ones, in order."""
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    root = Path(__file__).resolve().parents[1]
    where = path.relative_to(root) if path.is_relative_to(root) else path
    indent = lambda line: len(line) - len(line.lstrip())            # noqa: E731
    begin = 0
    if start is not None:
        found = [i for i, line in enumerate(lines) if start in line]
        if not found:
            raise ValueError(f"{start!r} is not in the source of {getattr(obj, '__qualname__', obj)}")
        begin = found[0]
    out, i = [], begin
    while i < len(lines):
        line = lines[i]
        if any(o in line for o in omit):
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or indent(lines[j]) > indent(line)):
                j += 1
            code = line.split("#")[0].strip()[:70]
            out.append(" " * indent(line) + f"# … {j - i} line{'s' * (j - i > 1)} left out: {code}\n")
            i = j
            continue
        out.append(line)
        i += 1
    print(f"# {where}, line {first + begin}" + (f" (lines {first} … {first + begin - 1} above)" if begin else "")
          + "\n" + "".join(out))
