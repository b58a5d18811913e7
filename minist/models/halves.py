"""The two halves of a student that run apart, and the device's network.

* :class:`DevicePart` (image → bytes): the one door for "the latent once, a message at any rate";
* :class:`ServerPart` (bytes → logits): every message checked as ``minist serve`` checks it;
* :func:`analysis` / :class:`DeviceNet`: normalise, then encode — written once, exported as it runs.

``student.split()`` gives the halves; ``server(device(x))`` equals the student's own eval prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from .rates import BetaGrid
from .teacher import as_images

TAIL = ("layer2", "layer3", "layer4", "head")


def analysis(encoder: nn.Module, mean: torch.Tensor, std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Normalise, then encode: images (B, 3, H, W) in [0, 1] → latent z (B, C, H/4 − 1, W/4 − 1). The device's
    whole network: the student, its device half, :class:`DeviceNet` (exports) and the task students call this."""
    return encoder((x - mean) / std)


class DeviceNet(nn.Module):
    """The device's network as one module for exporters (ONNX, ``torch.export``): :func:`analysis`, with the
    normalisation as buffers. It checks nothing (tracers need straight-line code): check images before."""

    def __init__(self, student):
        super().__init__()
        self.encoder = student.encoder
        self.register_buffer("mean", student.mean.clone())
        self.register_buffer("std", student.std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return analysis(self.encoder, self.mean, self.std, x)


class DevicePart(nn.Module):
    """What runs on the device: image (1, 3, H, W) in [0, 1] → bytes. The one door for "the latent once, a message
    at any rate": ``z = device.latent(x)``, then ``device.message(z, beta)`` for as many β as you like."""

    def __init__(self, student):
        super().__init__()
        self.encoder, self.codec = student.encoder, student.codec
        self.register_buffer("mean", student.mean.clone(), persistent=False)
        self.register_buffer("std", student.std.clone(), persistent=False)
        self.eval()

    @property
    def grid(self) -> BetaGrid:
        """The rates this device can send at."""
        return self.codec.grid

    @torch.no_grad()
    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """One image (1, 3, H, W): float in [0, 1], or uint8 (divided by 255); anything else is refused → z."""
        x = as_images(x)
        if x.shape[0] != 1:
            raise ValueError(f"the device sends one image per message, got a batch of {x.shape[0]}")
        return analysis(self.encoder, self.mean, self.std, x)

    def message(self, z: torch.Tensor, beta=None) -> bytes:
        """The message of latent ``z`` at rate ``beta`` (a float on :attr:`grid`; None: its lowest β)."""
        return self.codec.encode(z, beta=beta)

    def bits(self, z: torch.Tensor, beta=None, per_position: bool = False) -> torch.Tensor:
        """The prior's Σ −log2 p(ẑ) of ``z`` at ``beta``: a number per image, or a map (B, h, w)."""
        return self.codec.estimate_bits(z, per_position=per_position, beta=beta)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, with_rate: bool = False, beta=None):
        """One image → its message at ``beta``; ``with_rate=True``: ``(bytes, estimated bits)``."""
        z = self.latent(x)
        data = self.message(z, beta)
        return (data, float(self.bits(z, beta)[0])) if with_rate else data


class ServerPart(nn.Module):
    """What runs on the server: bytes → logits (1, num_classes). Bad bytes raise ``PayloadError``.

    In this process, every message's header is checked (C, the fingerprint, the latent size against
    ``latent_sizes``) and its symbols re-encoded: a payload that is not exactly our encoder's is refused.
    ``trusted=True`` skips the re-encoding (your own messages). :meth:`decoder_for_strangers` decodes in a
    separate, capped process as well (``minist serve``)."""

    def __init__(self, student, latent_sizes=None):
        super().__init__()
        self.codec, self.decoder = student.codec, student.decoder
        for name in TAIL:
            setattr(self, name, getattr(student, name))
        #: what a server accepts by default: the latent of the training image size (docs/design.md §5)
        self.latent_sizes = set(latent_sizes) if latent_sizes else {
            student.latent_size(student.teacher_config.image_size)}
        self.eval()

    def decoder_for_strangers(self, latent_sizes):
        """A ``bytes → ẑ`` for untrusted messages (the codec's: sandboxed and re-encoding-checked for rANS)."""
        return self.codec.untrusted_decoder(latent_sizes)

    @torch.no_grad()
    def forward(self, data: bytes, decode=None, trusted: bool = False) -> torch.Tensor:
        z_hat = decode(data) if decode is not None else self.codec.decode(data, self.latent_sizes, trusted=trusted)
        h = self.decoder(z_hat)
        for name in TAIL:
            h = getattr(self, name)(h)
        return h
