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


def _copy(fixtures, tmp_path, name="bundle"):
    import shutil
    bad = tmp_path / name
    shutil.copytree(fixtures / "bundle", bad)
    return bad


def _reseal(folder, **changes):
    """Rewrite the manifest with ``changes`` and the SHA-256 of the parts as they are now (an attacker's edit)."""
    m = json.loads((folder / "manifest.json").read_text())
    m["sha256"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("encoder.onnx", "tables.npz")}
    m.update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_a_swapped_encoder_is_refused_by_the_device_and_then_by_the_server(other_bundle, fixtures, tmp_path,
                                                                           server_port):
    bad = _copy(fixtures, tmp_path)
    (bad / "encoder.onnx").write_bytes((other_bundle / "encoder.onnx").read_bytes())
    _reseal(bad)                       # the parts' digests updated: the fingerprint no longer matches them
    with pytest.raises(BundleError, match="encoder or tables are not the ones"):
        Device(bad)
    device = Device(other_bundle)      # the other encoder with *these* tables and a fingerprint edited to match
    t = Bundle(bad).raw_tables
    from minist_device import wire
    probe = device.session.run(None, {"image": wire.probe_image()})[0]
    _reseal(bad, fingerprint=wire.fingerprint(t["cdfs"], t["offsets"], t["lengths"], t["medians"], probe).hex())
    message = Device(bad).encode(fixtures / "images" / "val000.png")
    with Client(port=server_port) as client, pytest.raises(ServerError, match="another model"):
        client.infer(message)


def test_every_damaged_bundle_is_one_line_and_exit_2(fixtures, tmp_path, capsys):
    img = str(fixtures / "images" / "val000.png")
    good = json.loads((fixtures / "bundle" / "manifest.json").read_text())
    cases = {
        "missing key": lambda m: m.pop("latent"),
        "renamed key": lambda m: m.update(latnet=m.pop("latent")),
        "null digest": lambda m: m["sha256"].update({"tables.npz": None}),
        "codec id over a byte": lambda m: m.update(codec_id=256),
        "a string size": lambda m: m.update(input_size="128"),
        "absolute path": lambda m: m["sha256"].update({"/etc/passwd": "0" * 64}),
        "a device file": lambda m: m["sha256"].update({"../../dev/zero": "0" * 64}),
        "old version": lambda m: m.update(version=1),
    }
    for k, (name, change) in enumerate(cases.items()):
        bad = _copy(fixtures, tmp_path, f"b{k}")
        m = json.loads(json.dumps(good))
        change(m)
        (bad / "manifest.json").write_text(json.dumps(m))
        assert cli.main(["send", img, "--bundle", str(bad)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("minist-device: error:"), (name, err)
    bad = _copy(fixtures, tmp_path, "list")
    (bad / "manifest.json").write_text("[1, 2]")
    bad2 = _copy(fixtures, tmp_path, "garbage-onnx")
    (bad2 / "encoder.onnx").write_bytes(b"not an onnx model" * 10)
    _reseal(bad2)
    bad3 = _copy(fixtures, tmp_path, "few-columns")
    t = dict(np.load(bad3 / "tables.npz"))
    t["cdfs"] = t["cdfs"][:, :2]
    with open(bad3 / "tables.npz", "wb") as f:
        np.savez(f, **t)
    _reseal(bad3)
    bad4 = _copy(fixtures, tmp_path, "no-medians")
    t.pop("medians")
    with open(bad4 / "tables.npz", "wb") as f:
        np.savez(f, **t)
    _reseal(bad4)
    for folder in (bad, bad2, bad3, bad4):
        assert cli.main(["send", img, "--bundle", str(folder)]) == 2, folder.name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("minist-device: error:"), (folder.name, err)


def test_an_image_over_pillows_limit_is_one_line(fixtures, server_port, capsys, monkeypatch):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)      # the 128 × 128 image is then a "decompression bomb"
    assert cli.main(["send", str(fixtures / "images" / "val000.png"), "--bundle", str(fixtures / "bundle"),
                     "--port", str(server_port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decompression bomb" in err.lower()


def test_a_variable_rate_bundle_sends_at_any_grid_beta_byte_identical(variable_fixtures, variable_server_port):
    """The variable-rate student's bundle: any β of its grid, the same bytes as PyTorch's device half, and the server
    (``minist serve --variable``) answers as it does in PyTorch."""
    device = Device(variable_fixtures / "bundle")
    with Client(port=variable_server_port) as client:
        for e in _expected(variable_fixtures):
            message = device.encode(variable_fixtures / "images" / e["image"], beta=e["beta"])
            assert hashlib.sha256(message).hexdigest() == e["sha256"], e
            r = client.infer(message)
            assert r["label"] == e["label"] and np.allclose(r["logits"], e["logits"], atol=1e-3)
    sizes = [len(device.encode(variable_fixtures / "images" / "val000.png", beta=b)) for b in (0.005, 0.04, 0.32)]
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(ValueError, match="outside this bundle's rates"):
        device.encode(variable_fixtures / "images" / "val000.png", beta=5.0)
