"""The device package in an environment without PyTorch, against a real `minist serve` (main environment)."""

import hashlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from minist_device import Bundle, BundleError, Client, Device, ServerError, cli


def _expected(fixtures):
    return json.loads((fixtures / "expected.json").read_text())


def test_this_environment_has_no_torch():
    sys.modules.pop("torch", None)
    try:
        assert importlib.util.find_spec("torch") is None, "the device environment must not hold torch"
    finally:
        sys.modules["torch"] = None


def test_payloads_are_byte_identical_to_pytorch_and_the_server_agrees(fixtures, server_port):
    device = Device(fixtures / "bundle")
    with Client(port=server_port) as client:
        for e in _expected(fixtures):
            message = device.encode(fixtures / "images" / e["image"])
            assert hashlib.sha256(message).hexdigest() == e["sha256"]
            r = client.infer(message)
            assert r["label"] == e["label"]
            assert np.allclose(r["logits"], e["logits"], atol=1e-3)
    assert "torch" not in {m for m, v in sys.modules.items() if v is not None}


def test_a_bundle_of_another_model_is_refused_by_the_server(other_bundle, fixtures, server_port):
    message = Device(other_bundle).encode(fixtures / "images" / "val000.png")
    with Client(port=server_port) as client, pytest.raises(ServerError, match="another model"):
        client.infer(message)


def test_a_damaged_bundle_names_its_part(fixtures, tmp_path):
    import shutil
    bad = tmp_path / "bundle"
    shutil.copytree(fixtures / "bundle", bad)
    blob = bytearray((bad / "tables.npz").read_bytes())
    blob[len(blob) // 2] ^= 1
    (bad / "tables.npz").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="tables.npz is damaged"):
        Bundle(bad)
    with pytest.raises(BundleError, match="no device bundle"):
        Bundle(tmp_path / "nowhere")


def test_bad_images_get_clear_errors(fixtures):
    device = Device(fixtures / "bundle")
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    for bad, match in ((x * 255, "divide by 255"), (x * np.nan, "NaN or Inf"), (x[:, :, :64], r"\(1, 3, 128, 128\)"),
                       (x.astype(np.int32), "uint8 or float")):
        with pytest.raises((ValueError, TypeError), match=match):
            device.encode(bad)


def test_cli_prints_predictions_and_reports_errors_in_one_line(fixtures, server_port, capsys):
    img = str(fixtures / "images" / "val000.png")
    assert cli.main(["send", img, "--bundle", str(fixtures / "bundle"), "--port", str(server_port)]) == 0
    out = capsys.readouterr().out
    assert "val000.png" in out and str(_expected(fixtures)[0]["bytes"] + 5) in out
    assert cli.main(["send", img, "--bundle", str(fixtures / "nowhere"), "--port", str(server_port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no device bundle" in err


def test_the_cli_runs_as_a_program_without_torch(fixtures, server_port):
    code = ("import sys; sys.modules['torch'] = None; from minist_device.cli import main; "
            f"sys.exit(main(['send', {str(fixtures / 'images' / 'val001.png')!r}, '--bundle', "
            f"{str(fixtures / 'bundle')!r}, '--port', '{server_port}']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "val001.png" in run.stdout
