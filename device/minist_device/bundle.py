"""Load and check a device bundle (``minist export``): manifest, SHA-256 of every part, coding tables."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

FORMAT = "minist-device-bundle"
VERSIONS = (1,)


class BundleError(ValueError):
    """A bundle that is missing, damaged, of an unknown format, or made for another model."""


class Bundle:
    """``bundle.onnx`` (bytes), the tables as int64 arrays, and the manifest's fields."""

    def __init__(self, folder):
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise BundleError(f"no device bundle in {folder} (manifest.json missing); make one with "
                              f"`minist export --out {folder}`")
        try:
            m = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{path} is not readable JSON ({e}); re-create the bundle with `minist export`") from e
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(f"{path} is not a minist device bundle (format {m.get('format')!r})")
        if m.get("version") not in VERSIONS:
            raise BundleError(f"bundle format version {m.get('version')} is not supported (this minist-device "
                              f"reads {VERSIONS}); update minist-device or re-export")
        blobs = {}
        for name, digest in m["sha256"].items():
            try:
                blob = (folder / name).read_bytes()
            except OSError as e:
                raise BundleError(f"bundle part {name} is missing from {folder} ({e}); re-export") from e
            if hashlib.sha256(blob).hexdigest() != digest:
                raise BundleError(f"bundle part {name} is damaged: its SHA-256 differs from the manifest's; re-export "
                                  f"it with `minist export`")
            blobs[name] = blob
        self.manifest = m
        self.onnx = blobs["encoder.onnx"]
        with np.load(io.BytesIO(blobs["tables.npz"]), allow_pickle=False) as t:
            self.cdfs, self.lengths, self.offsets = (t[k].astype(np.int64) for k in ("cdfs", "lengths", "offsets"))
            self.medians = t["medians"].astype(np.float32)
        self.fingerprint = bytes.fromhex(m["fingerprint"])
        self.input_size = int(m["input_size"])
        self.latent = tuple(int(v) for v in m["latent"])
        self.max_symbol = int(m["max_symbol"])
        self.wire_version = int(m["wire_version"])
        c = self.latent[0]
        if not (len(self.fingerprint) == 4 and self.cdfs.shape[0] == c == len(self.lengths) == len(self.offsets)
                == len(self.medians)):
            raise BundleError(f"bundle in {folder} is inconsistent (tables for {self.cdfs.shape[0]} channels, "
                              f"latent {self.latent}); re-export")
