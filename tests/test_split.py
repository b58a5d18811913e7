"""The split runtime: a real server on 127.0.0.1, good and bad frames, many clients at once."""

import ipaddress
import json
import random
import resource
import socket
import threading

import pytest
import torch

from minist.models.student import EntropicStudent
from minist.models.teacher import build_teacher
from minist.split import SplitClient, SplitServer, get_channel
from minist.split import protocol as P
from minist.split.channel import Channel
from minist.split.client import ServerError
from minist.split.latency import (
    FRAME_OVERHEAD,
    crossover_bps,
    device_cost,
    end_to_end_ms,
    export_encoder,
    measure_strategies,
    natural_images,
    paper_pair,
    region_table,
)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    s = EntropicStudent(build_teacher("mini")).eval()
    s.update(force=True)
    return s, *s.split()


@pytest.fixture(scope="module")
def server(parts):
    srv = SplitServer(parts[2], max_frame=64 * 1024, timeout=5.0).start()
    yield srv
    srv.stop()


def _raw(port, data: bytes, read: bool = True):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if not read:
            return None
        head = s.recv(P.PREFIX.size, socket.MSG_WAITALL)
        length, kind = P.PREFIX.unpack(head)
        return kind, s.recv(length - 1, socket.MSG_WAITALL)


def test_binds_to_localhost_by_default(server):
    """The listening socket is on the loopback interface only: other machines cannot connect."""
    host = server._server.sockets[0].getsockname()[0]
    assert ipaddress.ip_address(host).is_loopback


def test_result_equals_local_prediction(parts, server):
    student, device, srv_part = parts
    x = torch.rand(1, 3, 128, 128)
    with SplitClient(port=server.port) as c:
        assert c.ping()
        r = c.infer(device(x))
    with torch.no_grad():
        local = student(x)["logits"][0]
    assert r["label"] == int(local.argmax())
    assert torch.allclose(torch.tensor(r["logits"]), local, atol=1e-4)
    assert r["bytes_sent"] == len(device(x)) + 5


def test_a_thousand_bad_frames_and_the_server_stays_up(parts, server):
    student, device, _ = parts
    good = device(torch.rand(1, 3, 128, 128))
    rng = random.Random(0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = 0
    with SplitClient(port=server.port) as c:
        for i in range(1000):
            kind = i % 5
            if kind == 0:
                body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))   # random junk
            elif kind == 1:
                body = good[: rng.randrange(len(good))]                               # truncated
            elif kind == 2:
                b = bytearray(good)
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)                     # one bit flipped
                body = bytes(b)
            elif kind == 3:
                body = b"MN\x01" + bytes(rng.randrange(256) for _ in range(40))     # foreign but plausible
            else:
                c.sock.sendall(P.PREFIX.pack(4, rng.choice([0, 2, 3, 5, 9, 200])) + b"xyz")   # wrong types
                length, rk = P.PREFIX.unpack(c._recv_exact(P.PREFIX.size))
                assert rk == P.ERROR and "frame type" in json.loads(c._recv_exact(length - 1))["error"]
                errors += 1
                continue
            with pytest.raises(ServerError):
                c.infer(body)
            errors += 1
        assert c.infer(good)["label"] >= 0                                           # same connection still works
    # oversized and empty frames: an ERROR reply, then the server closes that connection
    for length in (64 * 1024 + 2, 10**9, 0):
        kind, body = _raw(server.port, struct_prefix(length, P.INFER))
        assert kind == P.ERROR and ("limit" in body.decode() or "empty" in body.decode())
        errors += 1
    for _ in range(20):                                                               # half a prefix, then hang up
        _raw(server.port, b"\x00\x00", read=False)
    with SplitClient(port=server.port) as c:
        assert c.infer(good)["label"] >= 0
    assert errors >= 1000 and server.stats["errors"] >= 1000
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rss_after - rss_before < 200 * 1024      # KiB: memory stays bounded


def struct_prefix(length, kind):
    return P.PREFIX.pack(length, kind) if length < 2**32 else P.PREFIX.pack(2**32 - 1, kind)


def test_thirty_two_clients_at_once(parts, server):
    student, device, _ = parts
    torch.manual_seed(1)
    xs = [torch.rand(1, 3, 128, 128) for _ in range(32)]
    msgs = [device(x) for x in xs]
    with torch.no_grad():
        expected = [int(student(x)["logits"].argmax()) for x in xs]
    got, fails = [None] * 32, []

    def run(i):
        try:
            with SplitClient(port=server.port) as c:
                got[i] = c.infer(msgs[i])["label"]
        except Exception as e:   # noqa: BLE001 - collected and reported below
            fails.append(repr(e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not fails and got == expected


def test_silent_client_times_out(parts):
    srv = SplitServer(parts[2], timeout=0.3).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            head = s.recv(P.PREFIX.size, socket.MSG_WAITALL)
            length, kind = P.PREFIX.unpack(head)
            assert kind == P.ERROR and b"timed out" in s.recv(length - 1, socket.MSG_WAITALL)
    finally:
        srv.stop()


def test_client_error_when_no_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="minist serve"):
        SplitClient(port=port, timeout=1)


def test_channel_model_and_latency_model():
    ch = Channel("test", uplink_bps=8000, downlink_bps=80000, rtt_s=0.1)
    assert ch.uplink_seconds(1000) == pytest.approx(0.05 + 1.0)
    assert get_channel("lora").uplink_bps < get_channel("ble").uplink_bps < get_channel("4g").uplink_bps
    with pytest.raises(ValueError, match="unknown channel"):
        get_channel("carrier-pigeon")
    local = {"device_ms": 50.0, "bytes": 0.0, "server_ms": 0.0}
    split = {"device_ms": 5.0, "bytes": 1000.0, "server_ms": 5.0}
    assert end_to_end_ms(local, 1e3, 0.1) == 50.0
    # split: 5 + 1000·(0.1 + 8000/bw + 8·64/bw) + 5
    assert end_to_end_ms(split, 1e6, 0.01) == pytest.approx(5 + 10 + 8 + 0.512 + 5)
    bw = crossover_bps(split, local, rtt_s=0.01)
    assert end_to_end_ms(split, bw * 1.01, 0.01) < 50 < end_to_end_ms(split, bw * 0.99, 0.01) + 1


def test_device_cost_and_export(parts):
    student = parts[0]
    cost = device_cost(student.encoder, torch.rand(1, 3, 128, 128))
    assert cost["parameters"] == sum(p.numel() for p in student.encoder.parameters())
    # two convolutions dominate: 2 · (24·3·25·64·64 + 16·24·25·32·32) multiply-adds = 2 · 17.2 M (+ GDN, biases)
    assert 3.5e7 < cost["flops"] < 4.5e7
    exp = export_encoder(student, torch.rand(1, 3, 128, 128))
    assert exp["match"] and exp["bytes"] > 0


def test_cli_send_against_a_running_server(capsys):
    """`minist send` (the device half) against a server holding the shipped student's server half."""
    from minist import pretrained
    from minist.cli import main
    _, server_part = pretrained.student("mini").split()
    with SplitServer(server_part) as srv:
        assert main(["send", "--port", str(srv.port), "--n", "2", "--channel", "wifi"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "bytes" in out[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["send", "--port", str(port), "--n", "1"]) == 2
    assert "minist serve" in capsys.readouterr().err


def test_split_region_names_the_fastest_strategy_and_the_splits_margin():
    from minist.split import PRESETS
    from minist.split.latency import end_to_end_ms, split_region
    rows = [{"strategy": "Entropic Student", "device_ms": 2.0, "bytes": 300.0, "server_ms": 2.0},
            {"strategy": "teacher on device", "device_ms": 10.0, "bytes": 0.0, "server_ms": 0.0},
            {"strategy": "JPEG q75 + teacher", "device_ms": 0.3, "bytes": 3000.0, "server_ms": 3.0}]
    region = split_region(rows, slowdowns=(1, 10))
    assert len(region) == 2 * len(PRESETS)
    for r in region:
        ch = PRESETS[r["link"]]
        t = {x["strategy"]: end_to_end_ms(x, ch.uplink_bps, ch.rtt_s, r["slowdown"], ch.downlink_bps) for x in rows}
        assert r["fastest"] == min(t, key=t.get) and (r["margin_ms"] > 0) == (r["fastest"] == "Entropic Student")
    at = {(r["link"], r["slowdown"]): r for r in region}
    assert at[("ble", 1)]["fastest"] == "teacher on device"        # a fast device: nothing beats running locally
    assert at[("ble", 10)]["fastest"] == "Entropic Student"       # slow device, slow link: the split
    assert at[("wifi", 10)]["fastest"] == "JPEG q75 + teacher"    # slow device, fast link: send the image


def test_paper_pair_latency_map_uses_the_given_message_size():
    """The paper's pair is timed for real; its message size is the one passed (an untrained model's means nothing)."""
    student, teacher = paper_pair()
    assert student.codec.channels == 24 and teacher.config.image_size == 224
    images = natural_images(224, 1)
    assert images[0].shape == (3, 224, 224) and 0 <= float(images[0].min()) and float(images[0].max()) <= 1
    rows = measure_strategies(student, teacher, images, repeats=1, message_bytes=5000)
    assert rows[0]["bytes"] == 5000 + FRAME_OVERHEAD
    assert rows[2]["strategy"].startswith("JPEG") and rows[2]["bytes"] > 2000       # a real photo's JPEG
    assert rows[4]["bytes"] == 256 * 56 * 56 * 4 + FRAME_OVERHEAD                   # ResNet-50's layer1, float32
    table = region_table(rows)
    assert len(table.splitlines()) == 1 + 6 + 2 and "cells" in table.splitlines()[-1]
