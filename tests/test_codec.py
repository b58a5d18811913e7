"""The latent codecs: the from-scratch prior agrees with CompressAI; one wire format refuses bad bytes."""

import random
import struct
import zlib

import pytest
import torch

from minist.models.codec import FactorizedCodec, PayloadError, payload_bits, rate_bits
from minist.models.crbq import Quantize8Codec
from minist.models.prior import FactorizedDensity


def _trained_like_bottleneck(channels=6, seed=0):
    """An EntropyBottleneck with random (not initial) parameters, its tables built."""
    g = torch.Generator().manual_seed(seed)
    eb = FactorizedCodec(channels)
    with torch.no_grad():
        for p in list(eb.matrices) + list(eb.biases) + list(eb.factors):
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        eb.quantiles.copy_(torch.tensor([-8.0, 0.3, 9.0]).repeat(channels, 1, 1))
    eb.update(force=True)
    return eb


def test_scratch_prior_equals_compressai():
    eb = _trained_like_bottleneck()
    prior = FactorizedDensity.from_compressai(eb)
    z_hat = torch.randn(2, 6, 5, 7) * 4
    ref, _, _ = eb._likelihood(z_hat.permute(1, 0, 2, 3).reshape(6, 1, -1))
    ours = prior.likelihood(z_hat)
    assert torch.allclose(ours, ref.reshape(6, 2, 5, 7).permute(1, 0, 2, 3), atol=1e-6)
    # the eval-mode forward of CompressAI quantises and returns (bounded) likelihoods: same numbers
    eb.eval()
    q, lik = eb(z_hat)
    assert torch.allclose(prior.likelihood(q).clamp_min(1e-9), lik, atol=1e-6)
    # the scratch prior starts where CompressAI's starts
    fresh = FactorizedCodec(3)
    p2 = FactorizedDensity(3)
    for a, b in zip(p2.matrices, fresh.matrices):
        assert torch.allclose(a, b)


def test_scratch_prior_is_a_density():
    prior = FactorizedDensity.from_compressai(_trained_like_bottleneck())
    grid = torch.linspace(-1e4, 1e4, 20001).view(1, 1, -1).expand(6, 1, -1).contiguous()
    cdf = prior.cdf(grid)
    assert (cdf[..., 1:] >= cdf[..., :-1]).all()                      # monotone: softplus keeps slopes > 0
    assert cdf[..., 0].max() < 1e-6 and cdf[..., -1].min() > 1 - 1e-6   # from 0 to 1


def test_round_trip_is_exact_and_rate_matches():
    eb = _trained_like_bottleneck()
    z = torch.randn(1, 6, 9, 11) * 3
    data = eb.encode(z)
    z_hat = eb.decode(data)
    eb.eval()
    with torch.no_grad():
        rounded, lik = eb(z)
    assert torch.equal(z_hat, rounded)
    est = float(rate_bits(lik)[0])
    assert est == pytest.approx(float(eb.estimate_bits(z)[0]))
    assert payload_bits(data) == 8 * (len(data) - 16)
    assert abs(payload_bits(data) - est) < 0.1 * est + 64


def test_update_is_required_first():
    eb = FactorizedCodec(4)
    with pytest.raises(RuntimeError, match="update"):
        eb.encode(torch.zeros(1, 4, 3, 3))


def _corruptions(data: bytes, rng: random.Random):
    """Truncations, bit flips, byte edits, random junk, empty and oversized inputs."""
    yield b""
    yield data[:5]
    for _ in range(60):
        yield data[: rng.randrange(len(data))]                       # truncated
    for _ in range(120):
        b = bytearray(data)
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)                               # one flipped bit
        yield bytes(b)
    for _ in range(60):
        b = bytearray(data)
        for _ in range(rng.randint(2, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)           # several changed bytes
        if bytes(b) != data:
            yield bytes(b)
    for _ in range(60):
        yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))   # foreign junk
    for _ in range(20):
        yield data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 50)))   # trailing garbage
    yield b"MN" + bytes(30)


def test_hundreds_of_bad_payloads_all_get_the_clear_error():
    eb = _trained_like_bottleneck()
    data = eb.encode(torch.randn(1, 6, 8, 8) * 3)
    rng = random.Random(0)
    n = 0
    for bad in _corruptions(data, rng):
        with pytest.raises(PayloadError):
            eb.decode(bad)
        n += 1
    assert n >= 300
    with pytest.raises(PayloadError, match="expected bytes"):
        eb.decode("not bytes")


def test_messages_from_another_model_are_refused():
    a, b = _trained_like_bottleneck(seed=0), _trained_like_bottleneck(seed=1)
    data = a.encode(torch.randn(1, 6, 4, 4))
    with pytest.raises(PayloadError, match="another model"):
        b.decode(data)
    c = _trained_like_bottleneck(channels=8)
    with pytest.raises(PayloadError, match="another model"):
        c.decode(data)


def test_wire_format_fields():
    eb = _trained_like_bottleneck()
    data = eb.encode(torch.randn(1, 6, 9, 11))
    magic, codec_id, c, h, w, fp = struct.unpack_from(">2sBBHH4s", data)
    assert (magic, codec_id, c, h, w, fp) == (b"MN", 1, 6, 9, 11, eb.fingerprint())
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])
    bumped = bytearray(data)
    bumped[2] = 2
    bumped[-4:] = struct.pack(">I", zlib.crc32(bytes(bumped[:-4])))
    with pytest.raises(PayloadError, match="codec 2"):
        eb.decode(bytes(bumped))
    with pytest.raises(ValueError, match="one latent"):
        eb.encode(torch.randn(2, 6, 4, 4))


def test_the_8bit_codec_shares_the_format_and_each_codec_refuses_the_other():
    """One wire format: the codec id in byte 2 tells them apart; each codec refuses the other's messages."""
    eb, q8 = _trained_like_bottleneck(), Quantize8Codec(6)
    z = torch.randn(1, 6, 9, 11) * 3
    a, b = eb.encode(z), q8.encode(z)
    assert a[:2] == b[:2] == b"MN" and (a[2], b[2]) == (1, 2) and a[3:8] == b[3:8]
    assert len(b) == q8.header_bytes + 6 * 9 * 11 and q8.header_bytes == 20
    assert (q8.decode(b) - z).abs().max() <= (z.max() - z.min()) / 255 / 2 + 1e-5   # within half a step
    assert torch.equal(q8.decode(b), q8(z, training=False)[0])      # the server sees what eval-mode forward gives
    assert float(q8.estimate_bits(z)[0]) == 8 * 6 * 9 * 11
    with pytest.raises(PayloadError, match="codec 2"):
        eb.decode(b)
    with pytest.raises(PayloadError, match="codec 1"):
        q8.decode(a)
