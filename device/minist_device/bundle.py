"""Load and check a device bundle (``minist export``): manifest, SHA-256 of every part, coding tables.

Everything that can be wrong with a bundle is a :class:`BundleError` with one line that says what and what to do:
a missing or renamed key, a value of the wrong type, a part outside the bundle's folder or over its size cap, a
damaged part, tables of the wrong shape. Only plain files directly inside the bundle folder are read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minist-device-bundle"
VERSIONS = (2,)
CODECS = (1, 3)                      # the factorized prior at one β; the gained codec at any β of its grid
PARTS = ("encoder.onnx", "tables.npz")
MAX_PART_BYTES = 64 * 2**20          # a part of a bundle is at most this big (the mini encoder: ≈ 60 KB)
MAX_MANIFEST_BYTES = 2**20


class BundleError(ValueError):
    """A bundle that is missing, damaged, of an unknown format, or made for another model."""


def _read(folder: Path, name: str, cap: int) -> bytes:
    """A plain file directly inside ``folder``, at most ``cap`` bytes; anything else is a BundleError."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise BundleError(f"bundle part {name!r} is not a file name inside the bundle folder; re-export")
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file():
            raise BundleError(f"bundle part {name} is missing from {folder} (or not a plain file); re-export")
        with path.open("rb") as f:
            blob = f.read(cap + 1)
    except OSError as e:
        raise BundleError(f"bundle part {name} in {folder} cannot be read ({e}); re-export") from e
    if len(blob) > cap:
        raise BundleError(f"bundle part {name} is over {cap // 2**20} MiB: not a minist bundle part")
    return blob


def _field(m: dict, key: str, kind, where: Path):
    if key not in m:
        raise BundleError(f"{where} has no {key!r} field: damaged or from another minist; re-export")
    v = m[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise BundleError(f"{where}: {key!r} is {type(v).__name__} {v!r}, not {getattr(kind, '__name__', kind)}; "
                          "re-export")
    return v


class Bundle:
    """``bundle.onnx`` (bytes), the tables as arrays, and the manifest's fields."""

    def __init__(self, folder):
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise BundleError(f"no device bundle in {folder} (manifest.json missing); make one with "
                              f"`minist export --out {folder}`")
        try:
            m = json.loads(_read(folder, "manifest.json", MAX_MANIFEST_BYTES).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{path} is not readable JSON ({e}); re-create the bundle with `minist export`") from e
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(f"{path} is not a minist device bundle (format "
                              f"{m.get('format') if isinstance(m, dict) else type(m).__name__!r})")
        if m.get("version") not in VERSIONS:
            raise BundleError(f"bundle format version {m.get('version')!r} is not supported (this minist-device "
                              f"reads {VERSIONS}); re-export it with this minist, or update minist-device")
        digests = _field(m, "sha256", dict, path)
        if set(digests) != set(PARTS):
            raise BundleError(f"{path} lists parts {sorted(digests)}, a bundle has {list(PARTS)}; re-export")
        blobs = {}
        for name in PARTS:
            blob = _read(folder, name, MAX_PART_BYTES)
            if not isinstance(digests[name], str) or hashlib.sha256(blob).hexdigest() != digests[name].lower():
                raise BundleError(f"bundle part {name} is damaged: its SHA-256 differs from the manifest's; re-export "
                                  f"it with `minist export`")
            blobs[name] = blob
        self.manifest = m
        self.onnx = blobs["encoder.onnx"]
        try:
            self.fingerprint = bytes.fromhex(_field(m, "fingerprint", str, path))
        except ValueError as e:
            raise BundleError(f"{path}: the fingerprint is not hex ({e}); re-export") from e
        self.input_size = _field(m, "input_size", int, path)
        latent = _field(m, "latent", list, path)
        self.max_symbol = _field(m, "max_symbol", int, path)
        self.codec_id = _field(m, "codec_id", int, path)
        if not (len(latent) == 3 and all(isinstance(v, int) and 0 < v < 65536 for v in latent)):
            raise BundleError(f"{path}: latent {latent!r} is not [C, h, w] of positive sizes; re-export")
        self.latent = tuple(latent)
        if not (0 <= self.codec_id <= 255 and 32 <= self.input_size <= 4096 and 0 < self.max_symbol <= 2**24
                and len(self.fingerprint) == 4):
            raise BundleError(f"{path}: codec id {self.codec_id}, input size {self.input_size}, max symbol "
                              f"{self.max_symbol} or a {len(self.fingerprint)}-byte fingerprint is out of range; "
                              "re-export")
        if self.codec_id not in CODECS:
            raise BundleError(f"{path}: codec id {self.codec_id} is not one this minist-device sends ({CODECS}); "
                              "update minist-device")
        grid = _field(m, "grid", dict, path)
        try:
            self.beta_min, self.doublings, self.steps = (float(grid["beta_min"]), int(grid["doublings"]),
                                                         int(grid["steps"]))
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{path}: the grid {grid!r} lacks beta_min, doublings or steps; re-export") from e
        self.levels = self.doublings * self.steps + 1
        if not (self.beta_min >= 0 and self.doublings >= 0 and self.steps >= 1 and self.levels <= 256
                and (self.codec_id == 3 or self.levels == 1)):
            raise BundleError(f"{path}: the grid {grid!r} is not one codec {self.codec_id} codes at; re-export")
        self._tables(blobs["tables.npz"], path)
        c = self.latent[0]
        if not (self.cdfs.shape[0] == c == len(self.lengths) == len(self.offsets) == len(self.medians)):
            raise BundleError(f"bundle in {folder} is inconsistent (tables for {self.cdfs.shape[0]} channels, "
                              f"latent {self.latent}); re-export")

    def _tables(self, blob: bytes, where: Path) -> None:
        keys = ("cdfs", "lengths", "offsets", "medians") + (
            ("rate_cdfs", "rate_lengths", "rate_offsets", "rate_medians", "gains") if self.codec_id == 3 else ())
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as t:
                raw = {k: t[k] for k in keys}
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise BundleError(f"tables.npz of {where.parent} lacks one of {', '.join(keys)}, or is not a NumPy "
                              f"archive ({e}); re-export") from e
        cdfs, lengths, offsets, medians = (raw[k] for k in ("cdfs", "lengths", "offsets", "medians"))
        ok = (cdfs.ndim == 2 and cdfs.dtype == np.int32 and lengths.shape == offsets.shape == medians.shape
              == (cdfs.shape[0],) and lengths.dtype == offsets.dtype == np.int32 and medians.dtype == np.float32
              and cdfs.shape[0] > 0 and cdfs.shape[1] >= 3 and np.all(lengths >= 3) and np.all(lengths <= cdfs.shape[1])
              and np.all(np.isfinite(medians)))
        if not ok:
            raise BundleError(f"tables.npz of {where.parent} has tables of the wrong shape or type (cdfs "
                              f"{cdfs.shape} {cdfs.dtype}, lengths {lengths.shape}); re-export")
        self.raw_tables = raw                       # as stored: what the fingerprint covers
        self.cdfs, self.lengths, self.offsets = (a.astype(np.int64) for a in (cdfs, lengths, offsets))
        self.medians = medians
        if self.codec_id == 1:                      # one rate: its tables are the density's
            self.rate_cdfs, self.rate_lengths = self.cdfs[None], self.lengths[None]
            self.rate_offsets, self.rate_medians, self.gains = self.offsets[None], medians[None], None
            return
        r, c = self.levels, cdfs.shape[0]
        rc, rl, ro, rm, g = (raw[k] for k in ("rate_cdfs", "rate_lengths", "rate_offsets", "rate_medians", "gains"))
        ok = (rc.ndim == 3 and rc.shape[:2] == (r, c) and rc.shape[2] >= 3 and rc.dtype == rl.dtype == ro.dtype
              == np.int32 and rl.shape == ro.shape == rm.shape == g.shape == (r, c) and rm.dtype == g.dtype
              == np.float32 and np.all(rl >= 3) and np.all(rl <= rc.shape[2]) and np.all(np.isfinite(rm))
              and np.all(np.isfinite(g)) and np.all(g > 0))
        if not ok:
            raise BundleError(f"tables.npz of {where.parent} has per-rate tables of the wrong shape or type (for "
                              f"{r} rates × {c} channels: cdfs {rc.shape}, gains {g.shape}); re-export")
        self.rate_cdfs, self.rate_lengths, self.rate_offsets = (a.astype(np.int64) for a in (rc, rl, ro))
        self.rate_medians, self.gains = rm, g

    def index(self, beta=None) -> int:
        """The grid index of ``beta`` (None: the lowest β), as minist's ``BetaGrid.index`` rounds it."""
        if beta is None:
            return 0
        beta = float(beta)
        if not (beta > 0 and math.isfinite(beta)) or self.beta_min <= 0:
            raise ValueError(f"β must be a positive number on this bundle's grid, got {beta}")
        i = round(self.steps * math.log2(beta / self.beta_min))
        if not 0 <= i < self.levels:
            top = self.beta_min * 2.0 ** ((self.levels - 1) / self.steps)
            raise ValueError(f"β = {beta:g} is outside this bundle's rates {self.beta_min:g} … {top:g}")
        return i
