"""Learned image codecs, the input-compression baseline: CompressAI's architectures, with minist's wire format.

The paper compares the Entropic Student with learned *image* codecs followed by the unmodified teacher
(docs/design.md §3): the factorized prior of Ballé et al. (ICLR 2018, ``bmshj2018-factorized``) and the mean-scale
hyperprior of Minnen et al. (NeurIPS 2018, ``mbt2018-mean``). minist trains them (narrower: N = 64, M = 96) on
Fashion-on-Photos itself (:func:`minist.recipes.train_image_codec`).

Messages use the one wire format (:mod:`minist.models.wire`): ``b"MN"``, codec id 4 (factorized image
codec) or 5 (hyperprior), C = M, the coded latent's h and w, then as the codec's fields the length of every rANS
string but the last (uint32 each), the strings, and a CRC-32.
"""

from __future__ import annotations

import struct

import torch
from compressai.models import FactorizedPrior as BalleFactorizedPrior
from compressai.models import MeanScaleHyperprior

from .wire import CODEC_IDS as WIRE_IDS
from .wire import COMMON, TRAILER, pack, unpack

ARCHS = {"factorized": BalleFactorizedPrior, "hyperprior": MeanScaleHyperprior}
CODEC_IDS = {arch: WIRE_IDS[f"image-{arch}"] for arch in ARCHS}      # their ids in the one table


def build(arch: str, N: int, M: int):
    if arch not in ARCHS:
        raise ValueError(f"unknown learned codec {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](N, M)


def _arch(model) -> str:
    return "hyperprior" if hasattr(model, "h_a") else "factorized"


def device_parameters(model) -> int:
    """Parameters the sender runs: the analysis transform and the entropy models it codes with."""
    parts = [model.g_a, model.entropy_bottleneck] + ([model.h_a] if hasattr(model, "h_a") else [])
    return sum(p.numel() for m in parts for p in m.parameters())


def header_bytes(model) -> int:
    """Our bytes per message: the common header, the string lengths and the CRC."""
    return COMMON.size + 4 * (_strings(model) - 1) + TRAILER


def _strings(model) -> int:
    return 2 if hasattr(model, "h_a") else 1


def encode(model, x: torch.Tensor) -> bytes:
    """One image (1, 3, H, W) in [0, 1] → one message."""
    enc = model.compress(x)
    strings = [s[0] for s in enc["strings"]]
    lengths = b"".join(struct.pack(">I", len(s)) for s in strings[:-1])
    return pack(CODEC_IDS[_arch(model)], (1, model.M, *enc["shape"]), lengths, b"".join(strings))


def decode(model, data: bytes) -> torch.Tensor:
    """One message → the decoded image (1, 3, H, W), clamped to [0, 1]."""
    n = _strings(model)
    fields, payload, h, w = unpack(data, CODEC_IDS[_arch(model)], model.M, 4 * (n - 1))
    lengths = list(struct.unpack(f">{n - 1}I", fields)) if n > 1 else []
    pos, strings = 0, []
    for k in lengths:
        strings.append([payload[pos:pos + k]])
        pos += k
    strings.append([payload[pos:]])
    return model.decompress(strings, (h, w))["x_hat"].clamp_(0, 1)


@torch.no_grad()
def roundtrip(model, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One image (3, H, W) in [0, 1] → (decoded image, bytes sent)."""
    data = encode(model, x.unsqueeze(0))
    return decode(model, data)[0], len(data)
