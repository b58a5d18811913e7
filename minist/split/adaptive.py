"""A device that picks its rate from the link: bandwidth traces, and a deadline-aware rate controller.

A real uplink changes from second to second. With one variable-rate student (``pretrained.variable_student``) the
device can pick, per request, the β whose message arrives in time and loses the least accuracy::

    latency(β) = device_ms(β) · slowdown + RTT + 8 · (bytes(β) + frame) / uplink + server_ms + reply / downlink

:class:`RateController` holds the model's *measured* curve (accuracy, mean and p95 bytes, encode and server
time per β, from ``data/results_variable_mini.json``) and returns, for the link of this moment, the feasible
option with the best expected accuracy; when none is feasible it says so (``Choice.feasible`` False, with the
reason) and names the fastest. After encoding, :meth:`RateController.fits` checks the real message: the device
re-runs only rANS at the next coarser rate if it came out too large (the latent is computed once).

Links: :class:`Trace` is a bandwidth/RTT time series, replayed one second per state. :func:`markov_trace` makes one:
a Markov chain over a preset's link states (e.g. 4G: good, fair, poor, cell edge), one step per second, with
log-normal jitter inside a state, from a seed. :meth:`Trace.from_csv` reads a measured one (``time_s``,
``uplink_kbps``, ``rtt_ms``, optional ``downlink_kbps``) so users can replay their own.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .channel import Channel
from .latency import REPLY_BYTES, timings
from .protocol import FRAME_OVERHEAD

MAX_TRACE_SECONDS = 86_400      # a trace (rows, or a generated one's seconds) covers at most a day
MAX_TRACE_BYTES = 16 * 2**20


# ---- links over time ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """A link over time: from ``time_s[i]`` on (until the next row), ``uplink_bps[i]``, ``rtt_s[i]`` and
    ``downlink_bps[i]``."""

    time_s: tuple
    uplink_bps: tuple
    rtt_s: tuple
    downlink_bps: tuple
    name: str = "trace"

    def __post_init__(self):
        n = len(self.time_s)
        if n == 0 or not (len(self.uplink_bps) == len(self.rtt_s) == len(self.downlink_bps) == n):
            raise ValueError(f"a trace needs ≥ 1 row and the same number of times, rates and RTTs, got {n}, "
                             f"{len(self.uplink_bps)}, {len(self.rtt_s)}, {len(self.downlink_bps)}")
        t = np.asarray(self.time_s, dtype=float)
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0) or t[0] < 0:
            raise ValueError("trace times must be finite, start at ≥ 0 s and strictly increase")
        for name, v in (("uplink", self.uplink_bps), ("downlink", self.downlink_bps)):
            if not all(math.isfinite(x) and x > 0 for x in v):
                raise ValueError(f"every {name} bandwidth must be a positive number (bit/s)")
        if not all(math.isfinite(x) and x >= 0 for x in self.rtt_s):
            raise ValueError("every RTT must be a number ≥ 0")

    @property
    def duration_s(self) -> float:
        """Up to the last row's time plus one step (the typical spacing)."""
        step = float(np.median(np.diff(self.time_s))) if len(self.time_s) > 1 else 1.0
        return float(self.time_s[-1]) + step

    def at(self, t: float) -> Channel:
        """The link at time ``t`` s (the row in force then; past the end, the last row) as a :class:`Channel`."""
        i = max(0, int(np.searchsorted(self.time_s, t, side="right")) - 1)
        return Channel(f"{self.name} @ {t:.1f} s", self.uplink_bps[i], self.downlink_bps[i], self.rtt_s[i])

    def to_csv(self, path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_s", "uplink_kbps", "rtt_ms", "downlink_kbps"])
            for row in zip(self.time_s, self.uplink_bps, self.rtt_s, self.downlink_bps):
                w.writerow([f"{row[0]:g}", f"{row[1] / 1e3:.9g}", f"{row[2] * 1e3:.9g}", f"{row[3] / 1e3:.9g}"])
        return path

    @classmethod
    def from_csv(cls, path) -> Trace:
        """A trace from a CSV with a header ``time_s,uplink_kbps,rtt_ms`` (``downlink_kbps`` optional: the uplink's)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no trace file {path}")
        if path.stat().st_size > MAX_TRACE_BYTES:
            raise ValueError(f"{path}: {path.stat().st_size} bytes is over the {MAX_TRACE_BYTES // 2**20} MiB a trace "
                             "may have")
        try:           # utf-8-sig: a leading BOM (Excel's "CSV UTF-8") is read as nothing
            with path.open(newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as CSV UTF-8") from None
        except csv.Error as e:          # e.g. a field over the csv module's 128 KiB limit
            raise ValueError(f"{path}: not a readable CSV ({e})") from None
        if len(rows) > MAX_TRACE_SECONDS:
            raise ValueError(f"{path}: {len(rows)} rows is over the {MAX_TRACE_SECONDS} a trace may have")
        need = {"time_s", "uplink_kbps", "rtt_ms"}
        have = set(rows[0]) if rows else set()
        if not rows or not need <= have:
            raise ValueError(f"{path}: a trace CSV needs a header with {sorted(need)} (and optionally "
                             f"downlink_kbps) and ≥ 1 row; found columns {sorted(have) or 'none'}")
        cols = {k: [] for k in ("time_s", "uplink_kbps", "rtt_ms", "downlink_kbps")}
        for n, r in enumerate(rows, start=2):
            try:
                for k in ("time_s", "uplink_kbps", "rtt_ms"):
                    cols[k].append(float(r[k]))
                cols["downlink_kbps"].append(float(r.get("downlink_kbps") or r["uplink_kbps"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {n}: every field must be a number, got {dict(r)}") from None
        try:
            return cls(tuple(cols["time_s"]), tuple(1e3 * v for v in cols["uplink_kbps"]),
                       tuple(1e-3 * v for v in cols["rtt_ms"]), tuple(1e3 * v for v in cols["downlink_kbps"]),
                       name=path.stem)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


@dataclass(frozen=True)
class LinkState:
    name: str
    uplink_bps: float
    rtt_s: float
    downlink_bps: float


#: Markov-modulated link presets: states (typical uplink rate, RTT, downlink) and the chance per second to stay.
#: Rates are rounded from published measurements of the kinds of link named (they vary a lot with coverage and
#: load): LTE from ≈8 Mbit/s near the cell to ≈0.1 Mbit/s at its edge; 5G sub-6 GHz from ≈50 down to ≈1 Mbit/s
#: when it falls back; a Wi-Fi link from ≈100 Mbit/s to ≈0.5 Mbit/s behind walls and contention.
TRACE_PRESETS = {
    "4g": ((LinkState("good", 8e6, 0.045, 30e6), LinkState("fair", 1.5e6, 0.060, 8e6),
            LinkState("poor", 300e3, 0.080, 2e6), LinkState("edge", 60e3, 0.090, 500e3)), 0.85),
    "5g": ((LinkState("good", 50e6, 0.020, 200e6), LinkState("fair", 10e6, 0.030, 60e6),
            LinkState("poor", 1e6, 0.045, 8e6), LinkState("fallback", 150e3, 0.070, 1e6)), 0.85),
    "wifi": ((LinkState("good", 100e6, 0.005, 100e6), LinkState("fair", 20e6, 0.010, 20e6),
              LinkState("poor", 2e6, 0.030, 2e6), LinkState("contended", 200e3, 0.060, 400e3)), 0.85),
}


def markov_trace(preset: str = "4g", seconds: int = 300, seed: int = 0, jitter: float = 0.35) -> Trace:
    """A bandwidth trace that changes every second: a Markov chain over ``preset``'s link states.

    Each second the chain stays in its state with the preset's probability, else moves to a neighbouring state
    (one better or one worse, equally likely); within a state the rate is log-normal around the state's value
    (σ = ``jitter`` in log space) and the RTT varies by ±20 %. The same seed gives the same trace."""
    if preset not in TRACE_PRESETS:
        raise ValueError(f"unknown trace preset {preset!r}; choose one of {sorted(TRACE_PRESETS)}")
    if not (isinstance(seconds, int) and 1 <= seconds <= MAX_TRACE_SECONDS):
        raise ValueError(f"seconds must be a whole number in 1 … {MAX_TRACE_SECONDS} (a day), got {seconds!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"the seed must be a whole number in 0 … 2⁶³ − 1, got {seed}")
    states, stay = TRACE_PRESETS[preset]
    rng = np.random.default_rng(seed)
    s, up, rtt, down = 0, [], [], []
    for _ in range(seconds):
        st = states[s]
        f = float(np.exp(rng.normal(0.0, jitter)))
        up.append(st.uplink_bps * f)
        down.append(st.downlink_bps * f)
        rtt.append(st.rtt_s * float(rng.uniform(0.8, 1.2)))
        if rng.random() > stay:
            s = min(len(states) - 1, max(0, s + (1 if rng.random() < 0.5 else -1)))
    return Trace(tuple(float(t) for t in range(seconds)), tuple(up), tuple(rtt), tuple(down),
                 name=f"{preset}-markov-seed{seed}")


# ---- the rate controller -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateOption:
    """One operating point of a sender: a β (or a JPEG quality), its measured accuracy (%), mean and p95 bytes
    per message, and device / server milliseconds on the machine that measured them."""

    value: float
    accuracy: float
    bytes_mean: float
    bytes_p95: float
    device_ms: float
    server_ms: float


@dataclass(frozen=True)
class Choice:
    option: RateOption
    feasible: bool
    predicted_ms: float
    reason: str


def latency_ms(option: RateOption, nbytes: float, link: Channel, slowdown: float = 1.0) -> float:
    """End-to-end ms of one request: device compute (× slowdown) + RTT + uplink of message and frame + server +
    the reply on the downlink."""
    wire = link.rtt_s + 8.0 * (nbytes + FRAME_OVERHEAD) / link.uplink_bps + 8.0 * REPLY_BYTES / link.downlink_bps
    return option.device_ms * slowdown + 1000.0 * wire + option.server_ms


class RateController:
    """Per request: the option with the best expected accuracy whose predicted latency meets the deadline.

    ``options``: the sender's measured curve (:class:`RateOption`s). The prediction uses each option's p95 bytes
    (``safety="p95"``, the default) or its mean (``"mean"``); a message that comes out larger than predicted is
    caught by :meth:`fits` after encoding."""

    def __init__(self, options, deadline_ms: float, slowdown: float = 1.0, safety: str = "p95"):
        self.options = sorted(options, key=lambda o: o.bytes_mean, reverse=True)   # most bytes first
        if not self.options:
            raise ValueError("a rate controller needs at least one measured option")
        if not (deadline_ms > 0 and math.isfinite(deadline_ms)):
            raise ValueError(f"the deadline must be a positive number of ms, got {deadline_ms}")
        if safety not in ("p95", "mean"):
            raise ValueError(f"safety must be 'p95' or 'mean', got {safety!r}")
        self.deadline_ms, self.slowdown, self.safety = float(deadline_ms), float(slowdown), safety

    def predicted_ms(self, option: RateOption, link: Channel) -> float:
        nbytes = option.bytes_p95 if self.safety == "p95" else option.bytes_mean
        return latency_ms(option, nbytes, link, self.slowdown)

    def choose(self, link: Channel) -> Choice:
        """The best feasible option on ``link``; none feasible → the fastest one, with ``feasible=False``."""
        timed = [(o, self.predicted_ms(o, link)) for o in self.options]
        ok = [(o, ms) for o, ms in timed if ms <= self.deadline_ms]
        if ok:
            o, ms = max(ok, key=lambda p: (p[0].accuracy, -p[1]))
            return Choice(o, True, ms, f"best expected accuracy of {len(ok)} options that meet "
                                       f"{self.deadline_ms:g} ms")
        o, ms = min(timed, key=lambda p: p[1])
        return Choice(o, False, ms, f"no option meets {self.deadline_ms:g} ms on this link (uplink "
                                    f"{link.uplink_bps / 1e3:.0f} kbit/s, RTT {1000 * link.rtt_s:.0f} ms): the "
                                    f"fastest predicts {ms:.0f} ms")

    def fits(self, option: RateOption, nbytes: int, link: Channel) -> bool:
        """Whether a message of ``nbytes`` really made at ``option`` meets the deadline on ``link``."""
        return latency_ms(option, nbytes, link, self.slowdown) <= self.deadline_ms

    def cheaper(self, option: RateOption) -> RateOption | None:
        """The next option with fewer bytes (None: ``option`` is the cheapest)."""
        i = self.options.index(option)
        return self.options[i + 1] if i + 1 < len(self.options) else None


def send_adaptive(controller: RateController, encode, link: Channel):
    """Pick a rate for ``link``, encode with ``encode(option) → bytes``, and step to cheaper options while the real
    message would miss the deadline. Returns ``(message, option, choice, feasible)``; ``feasible`` False when even
    the cheapest option misses (the message is then the cheapest one: sending it is the caller's decision)."""
    choice = controller.choose(link)
    option = choice.option
    message = encode(option)
    while not controller.fits(option, len(message), link):
        nxt = controller.cheaper(option)
        if nxt is None:
            return message, option, choice, False
        option, message = nxt, encode(nxt)
    return message, option, choice, True


def options_from_results(rows, device_ms: float, server_ms: float, key: str = "beta") -> list[RateOption]:
    """:class:`RateOption`s from measured rows (``{key, "accuracy", "bytes_mean", "bytes_p95"}``) and one device /
    server time for all (the encoder runs once whatever the rate; rANS time differs by well under a ms)."""
    return [RateOption(float(r[key]), float(r["accuracy"]), float(r["bytes_mean"]),
                       float(r.get("bytes_p95", r["bytes_mean"])), float(r.get("device_ms", device_ms)),
                       float(r.get("server_ms", server_ms))) for r in rows]


def load_trace(spec: str) -> Trace:
    """A trace from a CSV file, or ``markov:PRESET[:SEED[:SECONDS]]`` (e.g. ``markov:4g:0:300``)."""
    if spec.startswith("markov:"):
        parts = spec.split(":")[1:]
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"a generated trace is markov:PRESET[:SEED[:SECONDS]], got {spec!r}")
        try:
            seed = int(parts[1]) if len(parts) > 1 else 0
            seconds = int(parts[2]) if len(parts) > 2 else 300
        except ValueError:
            raise ValueError(f"seed and seconds of {spec!r} must be whole numbers") from None
        return markov_trace(parts[0], seconds, seed)
    return Trace.from_csv(spec)


class AdaptiveDevice:
    """A student's device half that picks each message's β with a :class:`RateController`.

    ``device.send(x, link)`` → ``(message, option, choice, feasible)``: the encoder runs once
    (``DevicePart.latent``); rANS runs at the chosen rate (``DevicePart.message``), and again at the next cheaper
    one while the real message would miss the deadline."""

    def __init__(self, device_part, controller: RateController):
        self.device, self.controller = device_part, controller
        for o in controller.options:        # every option must be a rate this device can send at
            if o.value not in device_part.grid:
                raise ValueError(f"the controller's β = {o.value:g} is not a rate of this student (its grid: "
                                 f"{device_part.grid.beta_min:g} … {device_part.grid.beta_max:g})")

    def send(self, x, link: Channel):
        z = self.device.latent(x if x.dim() == 4 else x.unsqueeze(0))
        return send_adaptive(self.controller, lambda o: self.device.message(z, o.value), link)


def controller_for(student, deadline_ms: float, res: dict, val_set, slowdown: float = 1.0,
                   safety: str = "p95") -> RateController:
    """A rate controller over the student's measured fine grid (``res``: e.g. ``pretrained.variable_results()``),
    with the device time measured here, now, on a few images of ``val_set`` (``device_ms``: the encoder and rANS;
    the server time is the results file's)."""
    here = timings(student, None, val_set, n=min(8, len(val_set)), with_codecs=False)
    return RateController(options_from_results(res["fine"], here["device_ms"], res["timing"]["server_ms"]),
                          deadline_ms, slowdown, safety)


def replay_trace(device: AdaptiveDevice, client, trace: Trace, images, n: int, rate_hz: float):
    """``minist send --deadline-ms D --trace T``: ``n`` requests over ``client``, one every ``1 / rate_hz`` s of
    trace time, each on the link of its second (the client waits its modelled time); yields one row per request."""
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ValueError(f"the request rate must be a positive number per second, got {rate_hz}")
    for k in range(n):
        t = k / rate_hz
        link = trace.at(t)
        client.channel = link
        x, y = images[k % len(images)]
        tic = time.perf_counter()
        message, option, choice, feasible = device.send(x, link)
        reply = client.infer(message)
        modelled = latency_ms(option, len(message), link, device.controller.slowdown)
        yield {"t": t, "link": link, "option": option, "choice": choice, "feasible": feasible,
               "bytes": len(message), "reply": reply, "label": int(y), "modelled_ms": modelled,
               "wall_ms": 1000 * (time.perf_counter() - tic),
               "met": feasible and modelled <= device.controller.deadline_ms}
