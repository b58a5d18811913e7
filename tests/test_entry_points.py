"""Every entry point as safe as ``minist serve``; the rate as an argument; one table of codec ids."""

import importlib.util
import socket
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from minist import cli, pretrained
from minist.models import wire
from minist.models.codec import FactorizedCodec, PayloadError
from minist.models.crbq import Quantize8Codec
from minist.models.gained import GainedCodec
from minist.models.image_codecs import CODEC_IDS as IMAGE_IDS
from minist.split import SplitClient, SplitServer
from minist.split.adaptive import Trace, load_trace
from minist.split.client import ServerError

DEVICE_SOURCES = Path(__file__).resolve().parents[1] / "device"


@pytest.fixture(scope="module")
def student():
    return pretrained.student("mini")


@pytest.fixture(scope="module")
def message(student):
    torch.manual_seed(0)
    return student.compress(torch.rand(1, 3, 128, 128))


def _reseal(data: bytes, h: int | None = None, w: int | None = None, body: bytes | None = None) -> bytes:
    """A forgery with a valid CRC: the real header (fingerprint included), a lying size and/or another body."""
    head = bytearray(data[:12])
    if h is not None:
        struct.pack_into(">HH", head, 4, h, w)
    b = bytes(head) + (data[12:-4] if body is None else body)
    return b + struct.pack(">I", zlib.crc32(b))


def _forgeries(data: bytes) -> dict:
    n = len(data) - 16
    rng = np.random.default_rng(0)
    return {"1000×1000 with a real body": _reseal(data, 1000, 1000), "961×31": _reseal(data, 961, 31),
            "32×30": _reseal(data, 32, 30), "65535×65535": _reseal(data, 65535, 65535),
            "random body": _reseal(data, body=rng.integers(0, 256, n, dtype=np.uint8).tobytes()),
            "random body 2": _reseal(data, body=rng.integers(0, 256, n, dtype=np.uint8).tobytes()),
            "all-zero body": _reseal(data, body=bytes(n)), "all-0xFF body": _reseal(data, body=b"\xff" * n)}


# ---- the in-process server half ----------------------------------------------------------------------------
def test_the_in_process_server_half_refuses_every_forgery(student, message):
    _, server = student.split()
    assert server(message).shape == (1, 10)
    for name, forged in _forgeries(message).items():
        for decode in (server, student.decompress):
            tic = time.perf_counter()
            with pytest.raises(PayloadError):
                decode(forged)
            assert time.perf_counter() - tic < 2.0, name          # refused before any large allocation
    assert torch.equal(server(message, trusted=True), server(message))      # the check changes no answer


def test_absurd_sizes_are_refused_even_where_any_size_is_accepted(student, message):
    with pytest.raises(PayloadError, match="over the format's"):
        student.codec.decode(_reseal(message, 65535, 65535), latent_sizes=None)


def test_the_fingerprint_covers_the_encoder(student, message):
    other = pretrained.student("mini")
    with torch.no_grad():
        other.encoder[0].weight[0, 0, 0, 0] += 0.5         # same tables, another encoder
    other.update(force=True)
    assert other.codec.fingerprint() != student.codec.fingerprint()
    with pytest.raises(PayloadError, match="another model"):
        student.decompress(other.compress(torch.rand(1, 3, 128, 128)))


def test_the_device_packages_fingerprint_is_the_servers(student):
    sys.path.insert(0, str(DEVICE_SOURCES))
    try:
        dwire = importlib.import_module("minist_device.wire")
    finally:
        sys.path.remove(str(DEVICE_SOURCES))
    assert np.array_equal(dwire.probe_image(), wire.probe_image())
    cb = student.codec
    t = cb.bundle_tables()
    with torch.no_grad():
        probe = student.encode(torch.from_numpy(wire.probe_image())).numpy()
    assert dwire.fingerprint(t["cdfs"], t["offsets"], t["lengths"], t["medians"], probe) == cb.fingerprint()
    assert dwire.HEAD.size == wire.COMMON.size


# ---- one table of codec ids --------------------------------------------------------------------------------
def test_no_two_codecs_share_an_id():
    ids = list(wire.CODEC_IDS.values())
    assert len(set(ids)) == len(ids) and all(0 < i < 256 for i in ids)
    assert {FactorizedCodec.codec_id, Quantize8Codec.codec_id, GainedCodec.codec_id, *IMAGE_IDS.values()} == set(ids)
    for name, cls in (("factorized", FactorizedCodec), ("8bit", Quantize8Codec), ("gained", GainedCodec)):
        assert wire.CODEC_IDS[name] == cls.codec_id


def test_a_learned_image_codec_refuses_a_latent_message():
    from minist.models import image_codecs
    model = image_codecs.build("factorized", 16, 12).eval()
    model.update(force=True)
    variable = pretrained.variable_student("mini")
    msg = variable.compress(torch.rand(1, 3, 128, 128), beta=0.02)
    with pytest.raises(PayloadError, match="codec 3 \\(gained\\)"):
        image_codecs.decode(model, msg)


# ---- the rate door -----------------------------------------------------------------------------------------
def test_the_rate_is_an_argument_all_the_way_to_the_wire(student):
    variable = pretrained.variable_student("mini")
    x = torch.rand(1, 3, 128, 128)
    device, server = variable.split()
    z = device.latent(x)
    sizes = [len(device.message(z, b)) for b in (0.005, 0.04, 0.32)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert device.message(z, 0.04) == device(x, beta=0.04) == variable.compress(x, beta=0.04)
    with torch.no_grad():
        out = variable.eval()(x, beta=0.04)["logits"]
    assert torch.allclose(server(device(x, beta=0.04)), out, atol=1e-5)
    assert not hasattr(variable.codec, "beta")
    one, _ = student.split()
    assert one.message(one.latent(x), 0.005) == one(x)               # a one-rate student: its own β
    with pytest.raises(ValueError, match="codes at β = 0.005 only"):
        student(x, beta=0.08)
    assert one.bits(one.latent(x), per_position=True).shape == (1, 31, 31)


# ---- traces ------------------------------------------------------------------------------------------------
def test_trace_csv_errors_name_the_file_and_a_bom_is_accepted(tmp_path):
    good = tmp_path / "excel.csv"
    good.write_bytes("\ufefftime_s,uplink_kbps,rtt_ms\n0,1000,50\n1,500,60\n".encode())
    assert isinstance(Trace.from_csv(good), Trace)
    long = tmp_path / "long.csv"
    long.write_text("time_s,uplink_kbps,rtt_ms\n0,1000," + "9" * (200 * 1024) + "\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("time_s,uplink_kbps,rtt_ms\n0,1000,50 \xb5s\n".encode("latin-1"))
    for path in (long, latin):
        with pytest.raises(ValueError) as e:
            load_trace(str(path))
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    tic = time.perf_counter()
    with pytest.raises(ValueError, match="seconds must be a whole number in 1 … 86400"):
        load_trace("markov:4g:0:100000000")
    assert time.perf_counter() - tic < 1


def test_send_with_a_trace_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe not csv")
    assert cli.main(["send", "--deadline-ms", "150", "--trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err


# ---- the CLI -----------------------------------------------------------------------------------------------
def test_send_variable_at_a_beta(capsys):
    variable = pretrained.variable_student("mini")
    with SplitServer(variable.split()[1]) as srv:
        sizes = {}
        for beta in ("0.005", "0.32"):
            assert cli.main(["send", "--variable", "--beta", beta, "--port", str(srv.port), "--n", "3"]) == 0
            rows = capsys.readouterr().out.splitlines()[1:]
            sizes[beta] = [int(r.split()[3]) for r in rows]
    assert all(a > b for a, b in zip(sizes["0.005"], sizes["0.32"])), sizes


def test_export_without_onnx_is_one_line(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert cli.main(["export", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'onnx<1.18'" in err


# ---- the server's connection cap ---------------------------------------------------------------------------
def test_ping_only_connections_hold_no_lasting_claim_on_the_cap(student, message):
    _, server_part = student.split()
    with SplitServer(server_part, max_connections=4, evict_idle=0.5) as srv:
        idle = [SplitClient(port=srv.port).__enter__() for _ in range(4)]
        for c in idle:
            c.ping()
        time.sleep(0.6)
        for c in idle:
            c.ping()                       # PINGs are not requests: they keep no claim
        tic = time.perf_counter()
        with SplitClient(port=srv.port) as c:
            assert c.infer(message)["label"] == int(server_part(message).argmax())
        waited = time.perf_counter() - tic
        assert waited < 5.0 and srv.stats["evicted"] >= 1 and srv.stats["refused"] == 0
        for c in idle:
            try:
                c.__exit__(None, None, None)
            except (ServerError, OSError):
                pass


def test_a_busy_full_server_still_refuses_clearly(student, message):
    _, server_part = student.split()
    with SplitServer(server_part, max_connections=2, evict_idle=60) as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        time.sleep(0.2)
        with pytest.raises((ServerError, ConnectionError), match="server busy|closed"):
            with SplitClient(port=srv.port) as c:
                c.infer(message)
        for s in held:
            s.close()


def test_messages_are_byte_identical_to_before_the_rate_door_but_for_the_fingerprint():
    """Header (magic, codec id, C, h, w), rate index and rANS body of the shipped students' messages on the first 20
    val images, against digests recorded with the code before this refactor (28895e8): only the 4 fingerprint bytes,
    which now cover the encoder, and so the CRC, changed."""
    import hashlib

    from minist.config import mini_val_set
    val = mini_val_set(limit=20)
    one, _ = pretrained.student("mini").split()
    var, _ = pretrained.variable_student("mini").split()
    h, g = hashlib.sha256(), hashlib.sha256()
    for i in range(20):
        m = one(val[i][0][None])
        h.update(m[:8] + m[12:-4])
        m = var(val[i][0][None], beta=0.02)
        g.update(m[:8] + m[12:-4])
    assert h.hexdigest() == "ed0c104459e0f500f1fad3336c31429ed7afbfed98d5137216ee5ca5d8a3eb44"
    assert g.hexdigest() == "829e6dbdb07dbeb88f88222628505946c60762fe308e75003c62c755902cd56e"


def test_no_function_level_imports_of_minist_modules():
    """Imports at the top of the file: a function-level import usually hides a cycle (STYLE.md)."""
    import ast
    root = Path(__file__).resolve().parents[1] / "minist"
    found = []
    for path in root.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    ours = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith(
                        "minist"))) or (isinstance(node, ast.Import) and any(a.name.startswith("minist")
                                                                             for a in node.names))
                    if ours:
                        found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert not found, found


def test_code_cites_only_documents_in_the_repository():
    """A "docs/design.md §N" in a docstring points at a section that exists; no bare "DESIGN §N" is left."""
    import re
    root = Path(__file__).resolve().parents[1]
    sections = set(re.findall(r"^## (\d+)\.", (root / "docs" / "design.md").read_text(), re.M))
    for path in list((root / "minist").rglob("*.py")) + list((root / "device").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"\bDESIGN §", text), f"{path}: cites DESIGN, which is not in the repository"
        for n in re.findall(r"docs/design\.md §(\d+)", text):
            assert n in sections, f"{path}: docs/design.md has no §{n}"


def test_show_source_leaves_out_blocks_and_says_so(capsys):
    from minist import recipes
    from minist.utils import show_source
    show_source(recipes.stage1_step, start="def step", omit=("if cfg.mixup",))
    out = capsys.readouterr().out
    assert "def step(batch):" in out and "def stage1_step" not in out and "above)" in out
    assert "left out: if cfg.mixup > 0:" in out and "torch.distributions.Beta" not in out
    assert "stage1_loss(" in out                               # what follows the block is still shown
    with pytest.raises(ValueError, match="not in the source"):
        show_source(recipes.stage1_step, start="no such line")
