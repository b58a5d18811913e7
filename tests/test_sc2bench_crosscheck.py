"""Cross-check against the authors' implementation (``sc2bench``, optional: skipped when not installed).

``pip install sc2bench`` gives the seed authors' ``FPBasedResNetBottleneck`` — the ResNet-50 Entropic Student
bottleneck of docs/design.md §2. We build theirs and ours, compare every parameter's name and shape, load the same
weights into both, and check that one image gives the same rANS payload: our message is their string plus our
16 bytes (12-byte header: magic, version, C, h, w, table fingerprint; 4-byte CRC-32 trailer), nothing else.
"""

import struct
import zlib

import pytest
import torch

layer = pytest.importorskip("sc2bench.models.layer", reason="sc2bench is optional: pip install sc2bench")

from minist.config import BottleneckConfig  # noqa: E402
from minist.models.bottleneck import Decoder, Encoder  # noqa: E402
from minist.models.codec import FactorizedCodec  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = BottleneckConfig.preset_config("paper")
    theirs = layer.FPBasedResNetBottleneck(3, cfg.channels, cfg.target_channels).eval()
    enc, dec, eb = Encoder(cfg.channels), Decoder(cfg.channels, cfg.target_channels), \
        FactorizedCodec(cfg.channels)
    with torch.no_grad():      # give the prior a non-trivial density so the tables are not the initial ones
        for p in eb.parameters():
            p.add_(0.05 * torch.randn_like(p))
    theirs.encoder.load_state_dict(enc.state_dict())
    theirs.decoder.load_state_dict(dec.state_dict())
    theirs.entropy_bottleneck.load_state_dict(eb.state_dict())
    eb.update(force=True)
    theirs.update(force=True)
    return theirs, enc.eval(), dec.eval(), eb.eval()


def test_same_parameters_and_shapes(pair):
    theirs, enc, dec, eb = pair
    for mine, other in ((enc, theirs.encoder), (dec, theirs.decoder), (eb, theirs.entropy_bottleneck)):
        a = {k: tuple(v.shape) for k, v in mine.named_parameters()}
        b = {k: tuple(v.shape) for k, v in other.named_parameters()}
        assert a == b
    assert sum(p.numel() for p in enc.parameters()) == 138_672
    assert (eb.filters, eb.tail_mass) == (theirs.entropy_bottleneck.filters, theirs.entropy_bottleneck.tail_mass)


def test_same_bitstream_up_to_our_header(pair):
    theirs, enc, dec, eb = pair
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ref = theirs.encode(x)
        z = enc(x)
        ours = eb.encode(z)
    payload = ref["strings"][0][0]
    assert tuple(ref["shape"]) == (55, 55)
    assert len(ours) == len(payload) + eb.header_bytes
    assert ours[12:-4] == payload                                   # the rANS payload, byte for byte
    magic, codec_id, c, h, w, _ = struct.unpack(">2sBBHH4s", ours[:12])
    assert (magic, codec_id, c, h, w) == (b"MN", 1, 24, 55, 55)
    assert struct.unpack(">I", ours[-4:])[0] == zlib.crc32(ours[:-4])
    with torch.no_grad():
        assert torch.equal(dec(eb.decode(ours)), theirs.decode(ref["strings"], ref["shape"]))
