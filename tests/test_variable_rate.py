"""One student for every β: the gained codec, its wire field, the explorer's controls, the rate controller, traces."""

import json
import math
import random
import struct
import zlib

import numpy as np
import pytest
import torch

from minist import pretrained
from minist.config import mini_val_set
from minist.models.codec import BetaGrid, PayloadError
from minist.split import SplitClient, SplitServer
from minist.split.adaptive import (
    Choice,
    RateController,
    RateOption,
    Trace,
    load_trace,
    markov_trace,
    send_adaptive,
)
from minist.split.channel import Channel


@pytest.fixture(scope="module")
def variable():
    return pretrained.variable_student("mini")


@pytest.fixture(scope="module")
def images():
    val = mini_val_set(limit=6)
    return [val[i][0].unsqueeze(0) for i in range(len(val))]


def _relabel(msg: bytes, index: int) -> bytes:
    """The message with another rate index in its header and a CRC that matches (what a forger sends)."""
    body = msg[:12] + bytes([index]) + msg[13:-4]
    return body + struct.pack(">I", zlib.crc32(body))


# ---- the grid and the codec ------------------------------------------------------------------------------
def test_grid_holds_the_study_betas_and_refuses_others():
    g = BetaGrid()
    assert g.levels == 225 and g.beta_max == pytest.approx(0.64)
    assert [g.index(b) for b in (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)] == list(range(0, 225, 32))
    assert g.index(0.0071) == 16 and g.beta(16) == pytest.approx(0.005 * 2 ** 0.5)
    for bad in (0.001, 1.0, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="outside|≥ 0"):
            g.index(bad)
    with pytest.raises(ValueError, match="one byte"):
        BetaGrid(doublings=8, steps=32)


@pytest.mark.parametrize("beta", [0.0063, 0.0333, 0.1, 0.2777, 0.6])
def test_round_trip_at_off_grid_beta(variable, images, beta):
    """Any β of the range: the message carries its grid rate, decodes to exactly the server's view of ẑ, and the
    server's answer equals the model's own at that rate."""
    codec, (device, server) = variable.codec, variable.split()
    snapped = float(codec.grid.beta(codec.grid.index(beta)))
    for x in images[:3]:
        msg = device(x, beta=beta)
        assert codec.message_beta(msg) == pytest.approx(snapped)
        z = variable.encode(x)
        want, _ = codec(z, training=False, beta=snapped)
        assert torch.equal(codec.decode(msg), want)
        logits = variable.tail(variable.decoder(want))
        assert torch.allclose(server(msg), logits, atol=1e-5)


def test_bytes_fall_as_beta_grows(variable, images):
    g = variable.codec.grid
    device, _ = variable.split()
    sizes = [np.mean([len(device(x, beta=g.beta(i))) for x in images]) for i in range(0, g.levels, 8)]
    assert all(b < a for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[0] > 4 * sizes[-1]


def test_a_one_rate_student_refuses_a_beta(images):
    device, _ = pretrained.student("mini").split()
    with pytest.raises(ValueError, match="codes at β = 0.005 only"):
        device(images[0], beta=0.02)


def test_a_variable_student_reloads_to_the_same_bytes(variable, images, tmp_path):
    from minist.models.store import load_student, save_student
    save_student(tmp_path / "v.pt", variable, {"note": "test"})
    again, _ = load_student(tmp_path / "v.pt")
    for b in (0.005, 0.09, 0.64):
        assert again.compress(images[0], beta=b) == variable.compress(images[0], beta=b)


# ---- the rate field on the wire -------------------------------------------------------------------------
def test_a_rate_index_off_the_grid_is_a_payload_error(variable, images):
    device, server = variable.split()
    decode = server.decoder_for_strangers(server.latent_sizes)
    try:
        msg = device(images[0], beta=0.02)
        for index in range(variable.codec.grid.levels, 256):
            for d in (decode, variable.codec.decode):
                with pytest.raises(PayloadError, match=f"rate index {index} is outside"):
                    d(_relabel(msg, index))
    finally:
        decode.close()


def test_a_lying_rate_index_never_gets_an_answer(variable, images):
    """A genuine body under another in-grid rate index: the sandbox's re-encoding check refuses it (the body is not
    what the encoder writes at that rate), never a crash, never a silent answer."""
    device, server = variable.split()
    decode = server.decoder_for_strangers(server.latent_sizes)
    rng = random.Random(0)
    outcomes = {"clear": 0, "silent": 0}
    try:
        for k in range(60):
            i = rng.randrange(variable.codec.grid.levels)
            j = rng.choice([v for v in range(variable.codec.grid.levels) if v != i])
            msg = device(images[k % len(images)], beta=variable.codec.grid.beta(i))
            try:
                server(_relabel(msg, j), decode=decode)
                outcomes["silent"] += 1
            except PayloadError:
                outcomes["clear"] += 1
        assert outcomes == {"clear": 60, "silent": 0}
    finally:
        decode.close()


def test_another_variable_model_is_refused(variable, images):
    import copy
    other = copy.deepcopy(variable.codec)
    with torch.no_grad():
        other.log_gain[3, 0] += 0.01          # one gain differs: another model
    other.update(force=True)
    z = variable.encode(images[0])
    with pytest.raises(PayloadError, match="another variable-rate model"):
        variable.codec.decode(other.encode(z, beta=0.04))


def test_one_connection_serves_a_stream_of_mixed_rates(variable, images):
    device, server_part = variable.split()
    rng = random.Random(1)
    betas = [variable.codec.grid.beta(rng.randrange(variable.codec.grid.levels)) for _ in range(12)]
    msgs = [device(images[k % len(images)], beta=b) for k, b in enumerate(betas)]
    assert len({len(m) for m in msgs}) > 6                  # really different rates
    with SplitServer(server_part) as srv, SplitClient(port=srv.port) as client:
        for m in msgs:
            r = client.infer(m)
            assert r["label"] == int(server_part(m).argmax())
    assert srv.stats["errors"] == 0 and srv.stats["requests"] == len(msgs)


# ---- the rate controller -----------------------------------------------------------------------------------
def _options(rng, n=12):
    out = []
    for k in range(n):
        b = 1000 * 0.75 ** k
        out.append(RateOption(k, 90 - k * 0.5 + rng.uniform(-0.3, 0.3), b, b * 1.2, rng.uniform(1, 5), 3.0))
    return out


def test_the_controller_never_picks_an_infeasible_rate_when_one_is_feasible():
    rng = random.Random(0)
    for _ in range(400):
        opts = _options(rng)
        ctl = RateController(opts, deadline_ms=rng.uniform(20, 200), slowdown=rng.choice([1, 3, 10]))
        link = Channel("x", 10 ** rng.uniform(3.5, 7.5), 1e7, rng.uniform(0.001, 0.15))
        c = ctl.choose(link)
        feasible = [o for o in opts if ctl.predicted_ms(o, link) <= ctl.deadline_ms]
        assert isinstance(c, Choice) and c.feasible == bool(feasible)
        if feasible:
            assert ctl.predicted_ms(c.option, link) <= ctl.deadline_ms
            assert c.option.accuracy == max(o.accuracy for o in feasible)
        else:
            fastest = min(ctl.predicted_ms(o, link) for o in opts)
            assert "no option meets" in c.reason and ctl.predicted_ms(c.option, link) == fastest


def test_send_adaptive_steps_down_until_the_real_message_fits():
    opts = [RateOption(v, 90 - v, 1000 / (v + 1), 1000 / (v + 1), 1.0, 1.0) for v in range(5)]
    ctl = RateController(opts, deadline_ms=60.0, safety="mean")
    link = Channel("x", 200e3, 1e7, 0.02)       # 200 kbit/s: 1000 B = 40 ms on the wire
    sizes = {0: 2000, 1: 1500, 2: 900, 3: 300, 4: 100}   # the real messages are larger than the curve predicts
    msg, opt, choice, ok = send_adaptive(ctl, lambda o: bytes(sizes[o.value]), link)
    assert choice.feasible and ok and ctl.fits(opt, len(msg), link)
    assert choice.option.value == 1 and opt.value == 2      # predicted 500 B fits; the real 1,500 B did not
    slow = Channel("y", 1e3, 1e3, 0.5)           # nothing can make it
    msg, opt, choice, ok = send_adaptive(ctl, lambda o: bytes(sizes[o.value]), slow)
    assert not choice.feasible and not ok and opt.value == 4


def test_the_controller_refuses_bad_settings():
    opts = _options(random.Random(0))
    with pytest.raises(ValueError, match="deadline"):
        RateController(opts, 0)
    with pytest.raises(ValueError, match="at least one"):
        RateController([], 100)
    with pytest.raises(ValueError, match="safety"):
        RateController(opts, 100, safety="p50")


# ---- traces --------------------------------------------------------------------------------------------
def test_markov_traces_vary_every_second_and_repeat_by_seed(tmp_path):
    a, b, c = markov_trace("4g", 120, seed=3), markov_trace("4g", 120, seed=3), markov_trace("4g", 120, seed=4)
    assert a == b and a != c
    assert len(set(a.uplink_bps)) == 120 and a.duration_s == 120
    assert min(a.uplink_bps) < 200e3 < 5e6 < max(a.uplink_bps)          # visits good and bad states
    assert a.at(10.5).uplink_bps == a.uplink_bps[10] and a.at(999).uplink_bps == a.uplink_bps[-1]
    back = Trace.from_csv(a.to_csv(tmp_path / "t.csv"))
    assert np.allclose(back.uplink_bps, a.uplink_bps, rtol=1e-5) and np.allclose(back.rtt_s, a.rtt_s, atol=1e-5)
    assert load_trace("markov:5g:1:30") == markov_trace("5g", 30, 1)
    for bad in ("markov:3g", "markov:4g:x", "markov:4g:1:2:3"):
        with pytest.raises(ValueError):
            load_trace(bad)


def test_a_trace_csv_without_downlink_and_bad_ones(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("time_s,uplink_kbps,rtt_ms\n0,800,40\n1,120.5,75\n2,3000,30\n")
    t = Trace.from_csv(p)
    assert t.uplink_bps == (800e3, 120.5e3, 3000e3) and t.downlink_bps == t.uplink_bps
    assert math.isclose(t.at(1.2).rtt_s, 0.075)
    cases = {"time_s,bw\n0,1\n": "needs a header", "time_s,uplink_kbps,rtt_ms\n0,fast,40\n": "line 2",
             "time_s,uplink_kbps,rtt_ms\n0,100,40\n0,100,40\n": "strictly increase",
             "time_s,uplink_kbps,rtt_ms\n0,-5,40\n": "positive", "": "needs a header"}
    for text, match in cases.items():
        p.write_text(text)
        with pytest.raises(ValueError, match=match):
            Trace.from_csv(p)
    with pytest.raises(FileNotFoundError):
        Trace.from_csv(tmp_path / "none.csv")


# ---- the explorer, driven through its controls ----------------------------------------------------------
def test_the_explorer_controls_change_the_outputs(variable):
    import matplotlib
    matplotlib.use("Agg")
    from minist.widgets import Explorer
    ex = Explorer(student=variable, images=4)
    ex.show(display=False)
    beta, kbps, image = ex.controls["beta"], ex.controls["kbps"], ex.controls["image"]
    out = ex.outputs
    lo, hi = ex.beta_range
    beta.value = lo
    low = dict(ex.last, status=out["status"].value, bits=out["bits"].value, rd=out["rd"].value)
    beta.value = hi
    high = dict(ex.last, status=out["status"].value, bits=out["bits"].value, rd=out["rd"].value)
    assert low["status"].startswith(f"<b>β = {lo:.3g}</b>") and high["status"].startswith(f"<b>β = {hi:.3g}</b>")
    assert low["bits"] != high["bits"] and low["rd"] != high["rd"]
    # both ends are the real messages at those rates
    device, _ = variable.split()
    x = ex.dataset[0][0].unsqueeze(0)
    assert low["bytes"] == len(device(x, beta=lo)) > high["bytes"] == len(device(x, beta=hi))
    assert low["point"]["accuracy"] > high["point"]["accuracy"]
    # the status names a codec setting that reaches the student's accuracy, or says none does
    for r in (low, high):
        for fmt in ("jpeg", "webp"):
            q = r[fmt]["quality"]
            if q is None:
                assert "no " + ("JPEG" if fmt == "jpeg" else "WebP") in r["status"]
            else:
                assert r[fmt]["val_accuracy"] >= r["point"]["accuracy"] and f"q{q}" in r["status"]
    # off-grid moves snap to the grid, and the heading shows β as the slider does
    beta.value = 0.0333
    assert ex.last["beta"] == pytest.approx(variable.codec.grid.beta(variable.codec.grid.index(0.0333)))
    assert f"β = {ex.last['beta']:.3g}</b>" in out["status"].value
    # bandwidth moves the bars on a fixed scale; the printed times follow
    kbps.value = 10.0
    slow = out["times"].value
    kbps.value = 10000.0
    assert slow != out["times"].value and "ms" in out["times"].value
    image.value = 2
    assert ex.last["index"] == 2
    with pytest.raises(ValueError, match="outside"):
        ex.compute(1.0, 0, 250.0)


def test_minist_send_with_a_deadline_and_a_trace(variable, tmp_path, capsys):
    from minist import cli
    trace = tmp_path / "link.csv"
    trace.write_text("time_s,uplink_kbps,rtt_ms\n0,8000,40\n1,30,90\n2,400,60\n")
    with SplitServer(variable.split()[1]) as srv:
        rc = cli.main(["send", "--port", str(srv.port), "--deadline-ms", "150", "--trace", str(trace), "--n", "6",
                       "--rate-hz", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "deadline 150 ms" in out
    rows = [line.split() for line in out.splitlines() if line[:6].strip().replace(".", "").isdigit()]
    assert len(rows) == 6
    betas = {float(r[0]): float(r[3]) for r in rows}
    assert betas[1.0] > betas[0.0] and betas[1.0] > betas[2.0]      # the slow second: a coarser rate
    assert "deadlines met" in out
    assert cli.main(["send", "--port", "1", "--deadline-ms", "100"]) == 2          # no trace: a clear error
    assert "needs both --deadline-ms and --trace" in capsys.readouterr().err


def test_the_seed_study_reports_each_run_the_mean_and_sd_and_names_a_collapse(tmp_path, capsys):
    from minist import checkpoint
    from minist.cli import main
    from minist.utils import data_dir
    ck = checkpoint.load(data_dir() / "student_mini_variable.pt", kind="student")
    for seed, shift in ((0, 0.0), (1, 1.0), (2, -80.0)):              # seed 2: collapsed to the medians
        meta = {**ck["meta"], "train": {**ck["meta"]["train"], "seed": seed, "rate_warmup_steps": 250},
                "val_by_beta": {b: {**r, "accuracy": r["accuracy"] + shift * (b == "0.64")}
                                for b, r in ck["meta"]["val_by_beta"].items()}}
        checkpoint.save(tmp_path / f"s{seed}" / "student.pt", kind="student", config=ck["config"],
                        state_dict=ck["state_dict"], meta=meta)
    assert main(["seeds", *(str(tmp_path / f"s{s}") for s in range(3)), "--dest", str(tmp_path / "r.json")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    top = next(r for r in doc["anchors"] if r["beta"] == 0.64)
    base = ck["meta"]["val_by_beta"]["0.64"]["accuracy"]
    assert top["accuracy_mean"] == pytest.approx(base + (0 + 1 - 80) / 3)
    assert top["accuracy_sd"] == pytest.approx(float(np.std([base, base + 1, base - 80], ddof=1)))
    assert doc["collapsed"] == [2] and doc["shipped"]["rate_warmup_steps"] == 0
    eq = {r["kb"]: r for r in doc["at_equal_kb"]}            # the same comparison at equal bytes
    assert eq[0.4]["accuracy_sd"] == pytest.approx(0.0)       # far from the changed anchor: identical curves
    assert eq[0.1]["accuracy_sd"] > 1.0                       # next to it: the collapse shows
    assert "collapsed: [2]" in capsys.readouterr().out
    assert main(["seeds", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
