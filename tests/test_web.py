"""The β explorer's web page (``minist web``): its JavaScript against minist's Python halves.

The rANS port runs in Node (when Node is installed); the whole page runs in headless Chromium through Playwright
(when Chromium, Playwright and ``web/node_modules`` are there; ``make web`` installs the last, ``.ci/run`` all three).
"""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from minist import pretrained
from minist.experiments import web

ORT = web.WEB_SOURCE / "node_modules" / "onnxruntime-web"


@pytest.fixture(scope="module")
def student():
    return pretrained.variable_student().eval()


def test_server_onnx_is_the_python_server(student):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    device, server = student.split()
    sess = ort.InferenceSession(web.server_onnx_bytes(student, (12, 31, 31)))
    torch.manual_seed(0)
    for beta in (0.005, 0.05, 0.6):
        z = device.latent(torch.rand(1, 3, 128, 128))
        msg = device.message(z, beta)
        z_hat = server.codec.decode(msg, server.latent_sizes, trusted=True)
        ours = sess.run(None, {"z_hat": z_hat.numpy()})[0]
        np.testing.assert_allclose(ours, server(msg, trusted=True).numpy(), atol=1e-4)


def test_half_storage_is_lossless():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 8, 3)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())                      # fp16 values, as the shipped checkpoints hold
        net[2].bias.add_(1e-4)                             # a small tensor: stays float32 anyway
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 4, 9, 9),), buf, dynamo=False, opset_version=17, input_names=["x"])
    half = web._half_storage(buf.getvalue())
    assert len(half) < 0.6 * len(buf.getvalue())
    types = {i.data_type for i in onnx.load_from_string(half).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    x = np.random.default_rng(0).standard_normal((1, 4, 9, 9)).astype(np.float32)
    a = ort.InferenceSession(buf.getvalue()).run(None, {"x": x})[0]
    b = ort.InferenceSession(half).run(None, {"x": x})[0]
    assert np.array_equal(a, b)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (apt-get install nodejs)")
def test_rans_js_is_compressai_byte_for_byte(student, tmp_path):
    """rans.js against CompressAI (through the student's codec) on real latents and on far out-of-range values."""
    t = student.codec.bundle_tables()
    device, _ = student.split()
    torch.manual_seed(1)
    z = device.latent(torch.rand(1, 3, 128, 128))
    c, h, w = z.shape[1:]
    cases = []
    for i in (0, 117, 224):
        beta = student.codec.grid.beta(i)
        msg = device.message(z, beta)
        sym = np.rint(z[0].numpy() * t["gains"][i][:, None, None] - t["rate_medians"][i][:, None, None])
        sym = sym.reshape(-1).astype(np.int64)
        payload = msg[13:-4].hex()
        if i == 224:                                       # bypass chunks: values far outside the tables
            sym[[3, 40, 900]] = [300, -1000, 70000]
            payload = None
        cases.append({"i": i, "sym": sym.tolist(), "payload": payload})
    fixture = {"cdfs": t["rate_cdfs"].tolist(), "lengths": t["rate_lengths"].tolist(),
               "offsets": t["rate_offsets"].tolist(), "ch": np.repeat(np.arange(c), h * w).tolist(), "cases": cases}
    (tmp_path / "fixture.json").write_text(json.dumps(fixture))
    script = tmp_path / "check.js"
    script.write_text(f"""
const R = require({json.dumps(str(web.WEB_SOURCE / "rans.js"))});
const f = require({json.dumps(str(tmp_path / "fixture.json"))});
const stride = f.cdfs[0][0].length, out = [];
for (const cs of f.cases) {{
  const cdfs = Int32Array.from(f.cdfs[cs.i].flat()), L = Int32Array.from(f.lengths[cs.i]);
  const O = Int32Array.from(f.offsets[cs.i]), sym = Int32Array.from(cs.sym), ch = Int32Array.from(f.ch);
  const p = R.encode(sym, ch, cdfs, stride, L, O);
  const back = R.decode(p, sym.length, ch, cdfs, stride, L, O);
  out.push({{hex: Buffer.from(p).toString("hex"), roundtrip: back.every((v, k) => v === sym[k])}});
}}
console.log(JSON.stringify(out));
""")
    got = json.loads(subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout)
    from compressai.ans import RansEncoder  # the library's own coder (C++)
    for cs, g in zip(cases, got):
        assert g["roundtrip"], f"rans.js does not decode its own payload at rate {cs['i']}"
        i, n = cs["i"], t["rate_lengths"].shape[1]
        want = RansEncoder().encode_with_indexes(
            cs["sym"], fixture["ch"], [row[:length].tolist() for row, length in zip(t["rate_cdfs"][i],
                                                                                     t["rate_lengths"][i])],
            t["rate_lengths"][i].tolist(), t["rate_offsets"][i].tolist()).hex()
        assert n == c and g["hex"] == want, f"rans.js differs from CompressAI at rate {i}"
        if cs["payload"] is not None:
            assert want == cs["payload"], "the student's own message carries another payload"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (apt-get install nodejs)")
def test_wire_js_is_minists_format_and_refuses_damage(student, tmp_path):
    """wire.js writes minist's header and CRC byte for byte, and refuses a cut, damaged or foreign message."""
    device, _ = student.split()
    msg = device.message(device.latent(torch.rand(1, 3, 128, 128)), 0.02)
    script = tmp_path / "wire.js"
    script.write_text(f"""
const W = require({json.dumps(str(web.WEB_SOURCE / "wire.js"))});
const msg = W.fromHex({json.dumps(msg.hex())});
const m = W.parse(msg, 5);
const again = W.message(m.codecId, m.c, m.h, m.w, m.fields, m.payload);
const refused = [];
for (const [name, bad] of [["cut", msg.subarray(0, msg.length - 7)], ["flipped", Uint8Array.from(msg, (b, i) =>
    i === 20 ? b ^ 1 : b)], ["foreign", new TextEncoder().encode("GET / HTTP/1.1 and some more bytes")],
    ["short", msg.subarray(0, 6)]]) {{
  try {{ W.parse(bad, 5); refused.push([name, null]); }} catch (e) {{ refused.push([name, e.message]); }}
}}
console.log(JSON.stringify({{same: W.toHex(again) === W.toHex(msg), codec: m.codecId, c: m.c, h: m.h, w: m.w,
                             refused}}));
""")
    got = json.loads(subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout)
    assert got["same"] and (got["codec"], got["c"], got["h"], got["w"]) == (3, 12, 31, 31)
    for name, error in got["refused"]:
        assert error, f"wire.js accepted a {name} message"
    assert "CRC" in dict(got["refused"])["flipped"] and "magic" in dict(got["refused"])["foreign"]


def test_build_without_runtime_says_what_to_do(tmp_path):
    src = tmp_path / "web"
    shutil.copytree(web.WEB_SOURCE, src, ignore=shutil.ignore_patterns("node_modules"))
    with pytest.raises(FileNotFoundError, match="npm ci"):
        web.build(tmp_path / "out", source=src)
    assert not (tmp_path / "out").exists()


def _browser_skip() -> str | None:
    if not ORT.is_dir():
        return "ONNX Runtime Web is not installed: `make web` (npm ci --prefix web) first"
    if web.chromium() is None:
        return "no Chromium to run the page: apt-get install chromium (or set MINIST_CHROMIUM)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def page(tmp_path_factory, student):
    reason = _browser_skip()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site") / "web"
    sizes = web.build(out, student=student)
    result = web.run_selftest(out)
    return out, sizes, result, json.loads((out / "reference.json").read_text())


def test_page_sends_python_bytes_and_gets_python_answers(page):
    _, _, result, ref = page
    c = web.compare(result, ref)
    assert c["messages"] == c["images"] * c["levels"] == 6 * 225
    assert c["messages_equal"] == c["messages"], f"{c['messages'] - c['messages_equal']} messages differ"
    assert c["predictions"] >= 6 * 29 and c["predictions_equal"] == c["predictions"]
    assert c["max_logit_difference"] < 1e-3
    assert c["moves"] == 40


def test_page_runs_from_its_folder(page):
    out, sizes, _, _ = page
    html = (out / "index.html").read_text()
    import re
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert "://" not in src and not src.startswith("//"), f"the page loads {src} from the network"
        assert (out / src).is_file(), f"the page refers to {src}, which the build did not write"
    assert page[2]["network_requests"] == [], "the page asked a network for something"
    assert sizes["total"] == sum(sizes["files"].values()) and "reference.json" not in sizes["files"]
