"""A device bundle: everything a device needs to send a student's bitstreams, without PyTorch.

``minist export`` writes a folder that the torch-free ``minist-device`` package (``device/``) loads::

    encoder.onnx    normalisation + the encoder, (1, 3, H, W) float in [0, 1] → latent (1, C, h, w)
    tables.npz      the prior's integer coding tables: cdfs (C, L) int32, lengths (C,), offsets (C,),
                    medians (C,) float32 — exactly what CompressAI's rANS coder uses
    manifest.json   format and version, the model fingerprint (the 4 bytes every message carries), the
                    input size, the latent shape, the codec id, and the SHA-256 of each file

The device's payloads are byte-identical to the PyTorch device part's (same tables, same rANS coder, ported
to NumPy in ``device/minist_device/rans.py``), so ``minist serve`` decodes them unchanged. The device computes
the fingerprint itself, from the tables and its own encoder's answer to the probe image
(:mod:`minist.models.wire`), so a bundle with another model's encoder or tables is refused by the server even
when its manifest was edited to match. A damaged or edited file fails its SHA-256 on load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import torch

from . import __version__, checkpoint
from .models.halves import DeviceNet
from .models.wire import MAX_SYMBOL

BUNDLE_FORMAT = "minist-device-bundle"
BUNDLE_VERSION = 2          # 2: the device computes the fingerprint (encoder + tables); "codec_id" names the id
FILES = ("encoder.onnx", "tables.npz")
ONNX_MISSING = ("exporting a device bundle needs the `onnx` package: pip install 'onnx<1.18' (newer releases pull "
                "ml-dtypes, which wants NumPy 2 and breaks compressai)")


def require_onnx() -> None:
    """torch's ONNX exporter needs the ``onnx`` package; it is optional (only exporting does): say how to get it."""
    if importlib.util.find_spec("onnx") is None:
        raise RuntimeError(ONNX_MISSING)


def onnx_bytes(student, image_size: int) -> bytes:
    """The device network as ONNX (opset 17, fixed input size); needs the ``onnx`` package to serialise."""
    require_onnx()
    net = DeviceNet(student).eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, 3, image_size, image_size),), buf, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["latent"],   # any size: the probe is PROBE_SIZE px
                          dynamic_axes={"image": {2: "height", 3: "width"}, "latent": {2: "h", 3: "w"}})
    return buf.getvalue()


def export_bundle(student, out, image_size: int | None = None) -> Path:
    """Write the bundle of ``student`` (coding tables built) into folder ``out``; return the manifest's path."""
    eb = student.codec
    if not eb.ready():
        raise RuntimeError("the student has no coding tables yet: call student.update() first")
    arrays = eb.bundle_tables()           # the codec says whether a device can code with its tables
    image_size = int(image_size or student.teacher_config.image_size)
    if not 32 <= image_size <= 4096:
        raise ValueError(f"image_size must be in 32…4096, got {image_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = io.BytesIO()
    np.savez_compressed(tables, **arrays)
    blobs = {"encoder.onnx": onnx_bytes(student, image_size), "tables.npz": tables.getvalue()}
    h, w = student.latent_size(image_size)
    manifest = {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "made_by": f"minist {__version__}",
        "fingerprint": eb.fingerprint().hex(), "codec_id": eb.codec_id, "grid": eb.grid.to_dict(),
        "input_size": image_size, "latent": [eb.channels, h, w], "max_symbol": MAX_SYMBOL,
        "sha256": {name: hashlib.sha256(b).hexdigest() for name, b in blobs.items()},
    }
    for name, b in blobs.items():
        checkpoint.atomic_write_bytes(out / name, lambda f, b=b: f.write(b))
    return checkpoint.atomic_write_bytes(out / "manifest.json",
                                         lambda f: f.write(json.dumps(manifest, indent=1).encode()))


# ---- running the torch-free device from here (notebook 05, minist bench device) ----------------------
REPO = Path(__file__).resolve().parents[1]
DEVICE_SOURCES = REPO / "device"
DEVICE_VENV = REPO / ".venv-device"

_SEND = """
import json, sys
sys.modules["torch"] = None                   # the device process cannot import torch
import numpy as np
from minist_device import Client, Device
device = Device(sys.argv[1])
out = []
with Client(port=int(sys.argv[3])) as client:
    for x in np.load(sys.argv[2]):            # uint8 (H, W, 3)
        r = client.infer(device.encode(x))
        out.append({"label": r["label"], "bytes": r["bytes_sent"]})
print(json.dumps({"results": out, "torch_loaded": any(m == "torch" and v is not None for m, v in sys.modules.items())}))
"""


def folder_mb(folder) -> float | None:
    """Size of the files under ``folder`` in MB (links not followed), or None if it does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def device_python() -> tuple[str, dict]:
    """The device environment's Python (``make test-device`` builds ``.venv-device``), else this one with the
    ``device/`` sources on the path; and the environment variables to run it with."""
    import os
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    py = DEVICE_VENV / "bin" / "python"
    if py.exists():
        return str(py), env
    env["PYTHONPATH"] = str(DEVICE_SOURCES)
    return sys.executable, env


def send_from_device_process(bundle, images_uint8, port: int) -> dict:
    """Encode ``images_uint8`` (N, H, W, 3) in a separate process that cannot import torch, send them to the
    server on ``port``; ``{"results": [{"label", "bytes"}, …], "torch_loaded": False}``."""
    import subprocess
    import tempfile
    py, env = device_python()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", np.asarray(images_uint8, dtype=np.uint8))
        run = subprocess.run([py, "-c", _SEND, str(bundle), str(Path(tmp) / "x.npy"), str(port)],
                             capture_output=True, text=True, env=env, timeout=300)
    if run.returncode:
        raise RuntimeError(f"the device process failed: {run.stderr.strip().splitlines()[-1:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])
