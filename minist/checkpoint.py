"""Checkpoints: atomic writes, metadata beside the weights, safe loading.

A checkpoint is one ``torch.save`` file holding ``{"format", "kind", "config",
"meta", "state_dict", ...}``. It is written to a temporary file in the same
folder and moved into place with ``os.replace``, so a crash mid-save leaves the
previous file intact (a temporary file left by a killed process is removed by the
next write to the same path). Loading uses ``weights_only=True``: no pickled code runs.

Integrity: :func:`save` records the SHA-256 of the weights, config and metadata
(:func:`content_digest`) and :func:`load` recomputes it, so a damaged or edited
file fails with a clear message instead of loading changed weights. The files
shipped in ``data/`` are also listed, whole, in ``data/SHA256SUMS``
(:func:`verify_shipped`).
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


class ChecksumError(ValueError):
    """A file whose bytes differ from the digest recorded for it: damaged or edited."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete ``.{name}.{pid}.*.tmp`` files beside ``path`` whose writing process no longer runs."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(file_object)`` on a temp file, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
        out = atomic_write_bytes(dest, lambda f: shutil.copyfileobj(f_in, f))
    record_shipped(out)
    return out


def record_shipped(path: str | os.PathLike) -> None:
    """Write ``path``'s SHA-256 into the ``SHA256SUMS`` of its folder, if that folder keeps one (``data/``)."""
    path = Path(path)
    sums = path.parent / SHIPPED_SUMS
    if not sums.is_file() or path.suffix != ".pt":
        return
    lines = [ln for ln in sums.read_text().splitlines() if ln and ln.partition("  ")[2] != path.name]
    lines.append(f"{file_sha256(path)}  {path.name}")
    text = "\n".join(sorted(lines, key=lambda ln: ln.partition("  ")[2])) + "\n"
    atomic_write_bytes(sums, lambda f: f.write(text.encode()))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def content_digest(obj: dict) -> str:
    """SHA-256 of a checkpoint's kind, config, meta and weights (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(json.dumps([obj.get("kind"), obj.get("config"), obj.get("meta")], sort_keys=True).encode())
    for name in sorted(obj["state_dict"]):
        t = obj["state_dict"][name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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
    obj["sha256"] = content_digest(obj)
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
    missing = [k for k in ("kind", "config", "meta", "state_dict") if k not in obj]
    if missing or not isinstance(obj["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise ChecksumError(f"{path} is damaged: {'missing ' + ', '.join(missing) if missing else 'bad weights'}. "
                            f"{_how_to_restore(path)}")
    verify_shipped(path)
    if "sha256" in obj and content_digest(obj) != obj["sha256"]:
        raise ChecksumError(f"{path} is damaged: its weights or metadata differ from the SHA-256 recorded when it "
                            f"was saved. {_how_to_restore(path)}")
    return obj


SHIPPED_SUMS = "SHA256SUMS"


def _how_to_restore(path: Path) -> str:
    return (f"Restore it (`git checkout -- {path}` for a file shipped in data/) or re-create it with the command in "
            f"data/README.md.")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_shipped(path: str | os.PathLike) -> None:
    """If ``path`` is listed in the ``SHA256SUMS`` of its folder (``data/``), check its bytes against it."""
    path = Path(path)
    sums = path.parent / SHIPPED_SUMS
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name == path.name and file_sha256(path) != digest:
            raise ChecksumError(f"{path} differs from the file that was shipped (SHA-256 in {sums}): damaged or "
                                f"edited. {_how_to_restore(path)}")


def load_weights(module: torch.nn.Module, state_dict: dict, path) -> None:
    """``module.load_state_dict`` with a clear error when the checkpoint was made for another architecture."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ValueError(f"{path} does not fit this model ({first}): it was made by another version or preset. "
                         f"Re-create it with the command in data/README.md.") from e


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, data settings)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
