"""The Entropic Student's bottleneck: a tiny encoder on the device, a decoder on the server.

docs/design.md §2 (Matsubara et al., WACV 2022, Fig. 2): the encoder maps an image to a ``C``-channel latent at stride 4
with widths 4C, 2C, C; the decoder rebuilds the ``T``-channel tensor the teacher's ``layer1`` outputs, with widths
2T, T, T. GDN1 is the simplified GDN of Johnston et al. (2019); IGDN is its inverse. In the paper no convolution
has a bias; then, since GDN is odd, ``encoder(−x) = −encoder(x)`` exactly, which cannot rebuild a ReLU output
whose mean is half its energy: the mini preset adds biases (``bias=True``; see data/README.md's ablations).
C, T, the hidden widths and the biases come from :class:`minist.config.BottleneckConfig`. For the ``paper``
preset (C = 24, T = 256) a 224×224 image gives a 24×55×55 latent and a 256×56×56 decoder output.
"""

from __future__ import annotations

from compressai.layers import GDN1
from torch import nn


class Encoder(nn.Sequential):
    """Image (B, 3, H, W) → latent (B, C, H/4 − 1, W/4 − 1), hidden widths ``(a, b)`` (paper: 4C, 2C). Device."""

    def __init__(self, c: int, widths: tuple[int, int] | None = None, bias: bool = False):
        a, b = widths or (4 * c, 2 * c)
        super().__init__(
            nn.Conv2d(3, a, 5, stride=2, padding=2, bias=bias), GDN1(a),     # (B, a, H/2, W/2)
            nn.Conv2d(a, b, 5, stride=2, padding=2, bias=bias), GDN1(b),     # (B, b, H/4, W/4)
            nn.Conv2d(b, c, 2, stride=1, padding=0, bias=bias),              # (B, C, H/4 − 1, W/4 − 1)
        )


class Decoder(nn.Sequential):
    """Latent (B, C, h, w) → (B, T, h + 1, w + 1), the teacher's layer1 shape; hidden ``(a, b)`` (paper: 2T, T)."""

    def __init__(self, c: int, t: int, widths: tuple[int, int] | None = None, bias: bool = False):
        a, b = widths or (2 * t, t)
        super().__init__(
            nn.Conv2d(c, a, 2, stride=1, padding=1, bias=bias), GDN1(a, inverse=True),   # (B, a, h+1, w+1)
            nn.Conv2d(a, b, 2, stride=1, padding=0, bias=bias), GDN1(b, inverse=True),   # (B, b, h, w)
            nn.Conv2d(b, t, 2, stride=1, padding=1, bias=bias),                          # (B, T, h+1, w+1)
        )
