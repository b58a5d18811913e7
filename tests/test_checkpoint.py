import os

import pytest
import torch

from minist import checkpoint


def test_round_trip_with_metadata(tmp_path):
    sd = {"w": torch.randn(3, 3), "n": torch.tensor(7)}
    p = checkpoint.save(tmp_path / "a.pt", kind="thing", config={"x": 1}, state_dict=sd, meta={"acc": 0.5})
    ck = checkpoint.load(p, kind="thing")
    assert torch.equal(ck["state_dict"]["w"], sd["w"]) and ck["config"] == {"x": 1} and ck["meta"]["acc"] == 0.5
    half = checkpoint.load(checkpoint.save(tmp_path / "h.pt", kind="thing", config={}, state_dict=sd, half=True))
    assert half["state_dict"]["w"].dtype == torch.float16 and half["state_dict"]["n"].dtype == torch.int64


def test_crash_mid_save_keeps_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "model.pt"
    checkpoint.save(p, kind="thing", config={}, state_dict={"w": torch.zeros(2)})
    before = p.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(p, kind="thing", config={}, state_dict={"w": torch.ones(2)})
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["model.pt"]   # no temp file left behind


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match="not a readable minist checkpoint"):
        checkpoint.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a minist checkpoint"):
        checkpoint.load(other)
    p = checkpoint.save(tmp_path / "t.pt", kind="teacher", config={}, state_dict={})
    with pytest.raises(ValueError, match="expected 'student'"):
        checkpoint.load(p, kind="student")
    # truncated file
    good = p.read_bytes()
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        checkpoint.load(p)


def test_weights_only_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    p = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, p)
    with pytest.raises(ValueError, match="not a readable"):
        checkpoint.load(p)
