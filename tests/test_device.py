"""minist export and the torch-free device coder (device/), checked against PyTorch + CompressAI in this env."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minist import pretrained
from minist.config import mini_val_set as val_set
from minist.export import export_bundle
from minist.split import SplitServer

DEVICE = Path(__file__).resolve().parents[1] / "device"
sys.path.insert(0, str(DEVICE))
from minist_device import Bundle, BundleError, Device, rans  # noqa: E402


@pytest.fixture(scope="module")
def student():
    return pretrained.student("mini")


@pytest.fixture(scope="module")
def bundle(student, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    export_bundle(student, out)
    return out


def _tables(eb):
    return (eb._quantized_cdf.numpy().astype(np.int64), eb._cdf_length.numpy().astype(np.int64),
            eb._offset.numpy().astype(np.int64))


def test_numpy_rans_is_byte_identical_to_compressai(student):
    """Real latents and values far outside the tables (CompressAI's bypass path), same bytes."""
    eb = student.codec
    med = eb._get_medians().detach().reshape(1, -1, 1, 1)
    g = torch.Generator().manual_seed(0)
    latents = [student.encode(val_set(limit=4)[i][0][None]).detach() for i in range(4)]
    wild = med + torch.randn(1, 12, 31, 31, generator=g) * 3
    wild[0, :, 0, :12] += torch.tensor([1e3, -1e3, 1e6, -1e6, 70, -70, 2.0 ** 23, -(2.0 ** 23), 15, -15, 16, -16])
    for z in latents + [wild, med.expand(1, 12, 31, 31).clone()]:
        symbols = torch.round(z - med).int().numpy()[0]
        channel = np.broadcast_to(np.arange(12)[:, None, None], symbols.shape)
        assert rans.encode_symbols(symbols, channel, *_tables(eb)) == eb.compress(z)[0]


def test_device_payloads_equal_pytorch_and_decode_on_the_server(student, bundle):
    device, server = Device(bundle), student.split()
    val = val_set(limit=30)
    for i in range(len(val)):
        x = val[i][0][None]
        message = device.encode(x.numpy())
        assert message == server[0](x)
    assert device.encode((x[0].permute(1, 2, 0) * 255).round().byte().numpy()) == server[0](x)   # uint8 HWC


def test_bundle_manifest_and_damage(bundle, tmp_path):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["format"] == "minist-device-bundle" and m["latent"] == [12, 31, 31] and m["input_size"] == 128
    b = Bundle(bundle)
    assert b.fingerprint.hex() == m["fingerprint"] and b.cdfs.shape[0] == 12
    (tmp_path / "b").mkdir()
    for f in bundle.iterdir():
        (tmp_path / "b" / f.name).write_bytes(f.read_bytes())
    blob = bytearray((tmp_path / "b" / "encoder.onnx").read_bytes())
    blob[100] ^= 4
    (tmp_path / "b" / "encoder.onnx").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="encoder.onnx is damaged"):
        Bundle(tmp_path / "b")


_TORCHLESS = """
import sys
sys.modules["torch"] = None          # importing torch now fails
sys.path.insert(0, sys.argv[1])
from minist_device import Client, Device
d = Device(sys.argv[2])
from PIL import Image
import numpy as np
x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
with Client(port=int(sys.argv[3])) as c:
    r = c.infer(d.encode(x))
print(r["label"], r["bytes_sent"], any(m == "torch" and v is not None for m, v in sys.modules.items()))
"""


def test_the_device_client_runs_with_torch_unimportable(student, bundle):
    device_part, server_part = student.split()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32))
    with torch.no_grad():
        expected = int(server_part(device_part(x)).argmax())
    with SplitServer(server_part) as srv:
        run = subprocess.run([sys.executable, "-c", _TORCHLESS, str(DEVICE), str(bundle), str(srv.port)],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    label, sent, torch_loaded = run.stdout.split()
    assert int(label) == expected and int(sent) == len(device_part(x)) + 5 and torch_loaded == "False"


def test_export_needs_coding_tables(tmp_path):
    from minist.models.student import EntropicStudent
    from minist.models.teacher import build_teacher
    with pytest.raises(RuntimeError, match="update"):
        export_bundle(EntropicStudent(build_teacher("mini")), tmp_path)


def test_a_variable_rate_bundle_is_byte_identical_at_any_grid_beta(tmp_path):
    """The variable-rate student exports too: per-rate tables, medians and gains; the device sends at any β of the
    grid the bytes PyTorch's device half sends, and the server decodes them."""
    variable = pretrained.variable_student("mini")
    export_bundle(variable, tmp_path)
    device, (torch_device, server) = Device(tmp_path), variable.split()
    b = Bundle(tmp_path)
    assert b.codec_id == 3 and b.levels == variable.codec.grid.levels and b.rate_cdfs.shape[:2] == (225, 12)
    assert (tmp_path / "tables.npz").stat().st_size < 600_000
    val = val_set(limit=6)
    for i, beta in enumerate((0.005, 0.0071, 0.02, 0.0833, 0.3, 0.64)):
        x = val[i][0]
        u8 = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        msg = device.encode(u8, beta=beta)
        assert msg == torch_device(x[None], beta=beta), beta
        grid = variable.codec.grid
        assert variable.codec.message_beta(msg) == pytest.approx(grid.beta(grid.index(beta)))
        assert server(msg).shape == (1, 10)
