"""The entropy model: a learned factorized prior and real rANS coding, with a small wire format.

The prior is CompressAI's ``EntropyBottleneck`` (Ballé et al., ICLR 2018,
"Variational image compression with a scale hyperprior", appendix 6.1): one
non-parametric density per latent channel. Training sees ``ẑ = z + U(−½, ½)``;
coding rounds around the per-channel medians and rANS-codes the integers with
the CDF tables that ``update()`` builds. The rate of a latent is
``Σ −log2 p(ẑ)`` bits (:func:`rate_bits`); :func:`compress` gives the real bytes.

Wire format (version 1), all integers big-endian::

    offset  size  field
    0       2     magic b"MN"
    2       1     version = 1
    3       1     C, latent channels
    4       2     h, latent height
    6       2     w, latent width
    8       4     fingerprint of the coding tables (first 4 bytes of SHA-256)
    12      n     rANS payload (CompressAI's coder, one string per image)
    12+n    4     CRC-32 of bytes 0 … 12+n−1

The 16 header/trailer bytes are ours and are reported apart from the payload.

A header can lie (the CRC and the fingerprint are public), so :func:`parse` checks
everything it can before any decoding: C against the model, the latent size against
the sizes the caller accepts (``latent_sizes``), and the body's length against what
rANS can produce for that many symbols (:func:`payload_bounds`). CompressAI's decoder
still trusts the body; bytes from strangers go through
:class:`minist.models.sandbox.SandboxedDecoder` (what ``minist serve`` uses).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import torch
from compressai.entropy_models import EntropyBottleneck

MAGIC = b"MN"
VERSION = 1
_HEAD = struct.Struct(">2sBBHH4s")   # magic, version, C, h, w, fingerprint
HEADER_BYTES = _HEAD.size + 4        # + CRC-32 trailer = 16
# most bits one symbol can cost: an in-range one ≤ 16 (CompressAI's CDF precision), an out-of-range one the
# 16-bit escape symbol + ≤ 9 four-bit bypass chunks (int32 values)
BYPASS_BITS = 16 + 4 * 9
# |symbol| this format carries. CompressAI's encoder loops forever on symbols near ±2³¹ (its bypass length
# loop shifts a negative number), so larger ones (a NaN or Inf latent, a forged stream) are refused first.
MAX_SYMBOL = 1 << 24


class PayloadError(ValueError):
    """Bytes that this model cannot decode: corrupt, truncated, foreign, or from another model."""


def build_entropy_bottleneck(channels: int) -> EntropyBottleneck:
    """The factorized prior of DESIGN §2: filters (3, 3, 3, 3), tail mass 1e-9."""
    return EntropyBottleneck(channels, filters=(3, 3, 3, 3), tail_mass=1e-9)


def rate_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Total information content Σ −log2 p of a batch of latents, in bits (a scalar)."""
    return -torch.log2(likelihoods).sum()


def is_updated(eb: EntropyBottleneck) -> bool:
    return eb._offset.numel() > 0


def table_fingerprint(eb: EntropyBottleneck) -> bytes:
    """4 bytes that change whenever the coding tables (CDFs, offsets, medians) change."""
    if not is_updated(eb):
        raise RuntimeError("the entropy model has no coding tables yet: call update() first")
    h = hashlib.sha256()
    for t in (eb._quantized_cdf, eb._offset, eb._cdf_length, eb._get_medians().detach().float()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()[:4]


@torch.no_grad()
def compress(eb: EntropyBottleneck, z: torch.Tensor) -> bytes:
    """One latent (1, C, h, w) → the bytes of one message (header + rANS payload + CRC)."""
    if z.dim() != 4 or z.shape[0] != 1:
        raise ValueError(f"compress takes one latent (1, C, h, w), got {tuple(z.shape)}: one image → one bitstream")
    _, c, h, w = z.shape
    if not is_updated(eb):
        raise RuntimeError("the entropy model has no coding tables yet: call update() first")
    if c != eb.channels:
        raise ValueError(f"latent has {c} channels, the entropy model {eb.channels}")
    if not (0 < h < 65536 and 0 < w < 65536):
        raise ValueError(f"latent size {h}×{w} does not fit the wire format")
    payload = payload_of(eb, z)
    head = _HEAD.pack(MAGIC, VERSION, c, h, w, table_fingerprint(eb))
    body = head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def payload_bounds(symbols: int) -> tuple[int, int]:
    """Fewest and most bytes CompressAI's rANS writes for ``symbols`` symbols (32-bit words, 8-byte flush)."""
    return 8, 8 + 4 * (-(-symbols * BYPASS_BITS // 32) + 1)


def parse(data: bytes, eb: EntropyBottleneck, latent_sizes=None) -> tuple[bytes, tuple[int, int]]:
    """Check a message against this model; return its rANS payload and latent size, or raise PayloadError.

    ``latent_sizes``: the (h, w) the caller accepts (e.g. a server's, from its input sizes); ``None`` accepts any.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise PayloadError(f"message too short ({len(data)} bytes; a header alone is {HEADER_BYTES}): truncated?")
    magic, version, c, h, w, fp = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"not a minist message (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise PayloadError(f"wire format version {version} is not supported (this minist reads {VERSION})")
    (crc,) = struct.unpack_from(">I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise PayloadError("checksum mismatch: the message is corrupt or truncated")
    if c != eb.channels:
        raise PayloadError(f"message has {c} latent channels, this model {eb.channels}: made by another model")
    if fp != table_fingerprint(eb):
        raise PayloadError("message was made with different coding tables (another model, β or checkpoint)")
    if h == 0 or w == 0:
        raise PayloadError(f"empty latent size {h}×{w}")
    if latent_sizes is not None and (h, w) not in latent_sizes:
        raise PayloadError(f"latent size {h}×{w} is not one this model accepts here ({_sizes(latent_sizes)})")
    payload = data[_HEAD.size:-4]
    lo, hi = payload_bounds(c * h * w)
    if not lo <= len(payload) <= hi or len(payload) % 4:
        raise PayloadError(f"a {c}×{h}×{w} latent codes to {lo}…{hi} bytes in 4-byte words, "
                           f"this body has {len(payload)}: forged or corrupt")
    return payload, (h, w)


def _sizes(sizes) -> str:
    return ", ".join(f"{h}×{w}" for h, w in sorted(sizes))


def check_symbols(eb: EntropyBottleneck, z: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``z`` is finite and its symbols fit the format (``|round(z − median)| < 2²⁴``)."""
    if not torch.isfinite(z).all():
        raise ValueError("the latent holds NaN or Inf values (were the pixels finite and in [0, 1]?)")
    dev = (z - eb._get_medians().detach().reshape(1, -1, 1, 1)).abs().max()
    if float(dev) >= MAX_SYMBOL:
        raise ValueError(f"the latent reaches {float(dev):.3g} from its medians, over the format's {MAX_SYMBOL}")


def payload_of(eb: EntropyBottleneck, z: torch.Tensor) -> bytes:
    """The rANS payload our encoder writes for one latent (1, C, h, w) (no header)."""
    check_symbols(eb, z)
    return eb.compress(z)[0]


@torch.no_grad()
def decompress(eb: EntropyBottleneck, data: bytes, latent_sizes=None) -> torch.Tensor:
    """Bytes of one message → the decoded latent ẑ (1, C, h, w), exactly round(z − median) + median.

    In this process: for your own messages. Bytes from strangers: :class:`minist.models.sandbox.SandboxedDecoder`.
    """
    if not is_updated(eb):
        raise RuntimeError("the entropy model has no coding tables yet: call update() first")
    payload, (h, w) = parse(data, eb, latent_sizes)
    return eb.decompress([payload], (h, w))


def payload_bits(data: bytes) -> int:
    """Bits of the rANS payload alone (without our 16-byte header and trailer)."""
    return 8 * (len(data) - HEADER_BYTES)
