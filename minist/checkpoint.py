"""Checkpoints: atomic writes, metadata beside the weights, safe loading.

A checkpoint is one ``torch.save`` file holding ``{"format", "kind", "config",
"meta", "state_dict", ...}``. It is written to a temporary file in the same
folder and moved into place with ``os.replace``, so a crash mid-save leaves the
previous file intact. Loading uses ``weights_only=True``: no pickled code runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "minist-checkpoint-v1"


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(file_object)`` on a temp file, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a file into place atomically (a crash mid-copy leaves the old ``dest``), e.g. into ``data/``."""
    import shutil
    with open(src, "rb") as f_in:
        return atomic_write_bytes(dest, lambda f: shutil.copyfileobj(f_in, f))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def save(path: str | os.PathLike, *, kind: str, config: dict, state_dict: dict,
         meta: dict | None = None, half: bool = False, **extra: Any) -> Path:
    """Save a checkpoint atomically; with ``half=True`` float weights are stored as fp16."""
    if half:
        state_dict = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in state_dict.items()}
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    # config and meta become plain JSON types, so weights_only loading accepts them
    config, meta = (json.loads(json.dumps(d or {}, default=str)) for d in (config, meta))
    obj = {"format": FORMAT, "kind": kind, "config": config, "meta": meta,
           "state_dict": state_dict, **extra}
    return atomic_write_bytes(path, lambda f: torch.save(obj, f))


def load(path: str | os.PathLike, *, kind: str | None = None) -> dict:
    """Load a checkpoint written by :func:`save` (``weights_only=True``); check its kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or unsafe pickle
        raise ValueError(f"{path} is not a readable minist checkpoint ({type(e).__name__}: {e}). "
                         "Re-create it with the command in data/README.md.") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not a minist checkpoint (expected format {FORMAT!r}).")
    if kind is not None and obj.get("kind") != kind:
        raise ValueError(f"{path} holds a {obj.get('kind')!r} checkpoint, expected {kind!r}.")
    return obj


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, data settings)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
