"""The Entropic Student's bottleneck: a tiny encoder on the device, a decoder on the server.

DESIGN §2 (Matsubara et al., WACV 2022, Fig. 2): the encoder maps an image to a
``C``-channel latent at stride 4 with widths 4C, 2C, C; the decoder rebuilds the
``T``-channel tensor the teacher's ``layer1`` outputs, with widths 2T, T, T.
GDN1 is the simplified GDN of Johnston et al. (2019); IGDN is its inverse.
All convolutions have no bias. C and T come from :class:`minist.config.BottleneckConfig`.
For the ``paper`` preset (C = 24, T = 256) a 224×224 image gives a 24×55×55 latent and a 256×56×56 decoder output.
"""

from __future__ import annotations

from compressai.layers import GDN1
from torch import nn


class Encoder(nn.Sequential):
    """Image (B, 3, H, W) → latent (B, C, H/4 − 1, W/4 − 1). Runs on the device."""

    def __init__(self, c: int):
        super().__init__(
            nn.Conv2d(3, 4 * c, 5, stride=2, padding=2, bias=False), GDN1(4 * c),   # (B, 4C, H/2, W/2)
            nn.Conv2d(4 * c, 2 * c, 5, stride=2, padding=2, bias=False), GDN1(2 * c),  # (B, 2C, H/4, W/4)
            nn.Conv2d(2 * c, c, 2, stride=1, padding=0, bias=False),             # (B, C, H/4 − 1, W/4 − 1)
        )


class Decoder(nn.Sequential):
    """Latent (B, C, h, w) → (B, T, h + 1, w + 1), the shape of the teacher's layer1 output. Runs on the server."""

    def __init__(self, c: int, t: int):
        super().__init__(
            nn.Conv2d(c, 2 * t, 2, stride=1, padding=1, bias=False), GDN1(2 * t, inverse=True),  # (B, 2T, h+1, w+1)
            nn.Conv2d(2 * t, t, 2, stride=1, padding=0, bias=False), GDN1(t, inverse=True),      # (B, T, h, w)
            nn.Conv2d(t, t, 2, stride=1, padding=1, bias=False),                                 # (B, T, h+1, w+1)
        )
