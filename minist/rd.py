"""Reading rate–accuracy curves: bytes needed for an accuracy, accuracy at a rate, who wins where.

Every function takes the points of one method (dicts with ``kb_mean`` and ``accuracy``, as in
:func:`minist.pretrained.results`). Between measured points we interpolate linearly in
log(KB) — the axis RD curves are drawn on — and never extrapolate outside the measured range.
A curve is first reduced to its *upper envelope* (the best accuracy reachable at or below each
rate): a codec that is worse at a higher rate is never the one you would pick.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest


def envelope(points: list[dict]) -> list[tuple[float, float]]:
    """``(kb, accuracy)`` sorted by rate, keeping only points that beat every cheaper one."""
    out, best = [], -math.inf
    for p in sorted(points, key=lambda p: p["kb_mean"]):
        if p["accuracy"] > best:
            out.append((p["kb_mean"], p["accuracy"]))
            best = p["accuracy"]
    return out


def accuracy_at_kb(points: list[dict], kb: float) -> float | None:
    """The accuracy the method reaches at ``kb`` KB per image (None outside its measured range)."""
    env = envelope(points)
    if not env or kb < env[0][0]:
        return None
    if kb >= env[-1][0]:
        return env[-1][1] if kb <= max(p["kb_mean"] for p in points) else None
    for (k0, a0), (k1, a1) in zip(env, env[1:]):
        if k0 <= kb <= k1:
            t = (math.log(kb) - math.log(k0)) / (math.log(k1) - math.log(k0))
            return a0 + t * (a1 - a0)
    return env[-1][1]


def kb_at_accuracy(points: list[dict], accuracy: float) -> float | None:
    """The fewest KB per image at which the method reaches ``accuracy`` (None if it never does)."""
    env = envelope(points)
    if not env or env[-1][1] < accuracy:
        return None
    if env[0][1] >= accuracy:
        return env[0][0]
    for (k0, a0), (k1, a1) in zip(env, env[1:]):
        if a0 < accuracy <= a1:
            t = (accuracy - a0) / (a1 - a0)
            return math.exp(math.log(k0) + t * (math.log(k1) - math.log(k0)))
    return None


def bytes_to_reach(res: dict, drop: float = 1.0, methods=None) -> list[dict]:
    """For each method: KB per image to reach (teacher accuracy − ``drop``), or None if it never does."""
    target = res["teacher_accuracy"] - drop
    methods = methods or sorted({p["method"] for p in res["points"]})
    rows = []
    for m in methods:
        pts = [p for p in res["points"] if p["method"] == m]
        rows.append({"method": m, "target_accuracy": target, "kb": kb_at_accuracy(pts, target),
                     "best_accuracy": max(p["accuracy"] for p in pts),
                     "kb_range": (min(p["kb_mean"] for p in pts), max(p["kb_mean"] for p in pts))})
    return rows


def held(res: dict, methods) -> list[str]:
    """The ``methods``, in their order, that have points in ``res``: a study need not hold every method (a new
    user's photo study has no ablation arms)."""
    have = {p["method"] for p in res["points"]}
    return [m for m in methods if m in have]


def ratio_by_target(res: dict, methods, drops=(1, 1.5, 2, 3, 4, 6, 8), rivals=("jpeg", "webp")) -> list[dict]:
    """How the bytes ratio (the better of ``rivals`` ÷ the student) depends on the target: for each (teacher −
    ``drop``), the rivals' fewest KB and each of ``methods``' KB and ratio (None where a side never reaches it).

    ``below_range``: the method's cheapest measured point already reaches the target, so its KB is an upper bound
    (the curve was not measured at fewer bytes) and its ratio a lower bound. The rivals' KB is exact even there when
    their points include each codec's smallest setting (JPEG q1, WebP q0), as the shipped studies' do: no setting
    makes a smaller file."""
    held = {p["method"] for p in res["points"]}
    if missing := [m for m in (*methods, *rivals) if m not in held]:
        raise ValueError(f"no points for {missing} in the result file; it holds {sorted(held)}")
    rows = []
    for drop in drops:
        reach = {r["method"]: r for r in bytes_to_reach(res, drop, [*methods, *rivals])}
        best = min((reach[r]["kb"] for r in rivals if reach[r]["kb"] is not None), default=None)
        students = {}
        for m in methods:
            kb = reach[m]["kb"]
            students[m] = {"kb": kb, "ratio": best / kb if kb and best else None,
                           "below_range": kb is not None and kb <= reach[m]["kb_range"][0]}
        rows.append({"drop": drop, "target_accuracy": res["teacher_accuracy"] - drop, "kb_rival": best,
                     "students": students})
    return rows


def head_to_head(res: dict, method: str = "entropic", baselines=None) -> list[dict]:
    """At every measured rate of ``method``: its accuracy and each baseline's there (None = out of range)."""
    ours = [p for p in res["points"] if p["method"] == method]
    baselines = baselines or sorted({p["method"] for p in res["points"]} - {method, "stage1-only"})
    rows = []
    for p in sorted(ours, key=lambda p: p["kb_mean"]):
        row = {"knob": p["knob"], "value": p["value"], "kb": p["kb_mean"], method: p["accuracy"]}
        for b in baselines:
            row[b] = accuracy_at_kb([q for q in res["points"] if q["method"] == b], p["kb_mean"])
        rows.append(row)
    return rows


def best_at_or_below(points: list[dict], kb: float) -> dict | None:
    """The most accurate measured point at ≤ ``kb`` KB per image (None if every point costs more)."""
    cheap = [p for p in points if p["kb_mean"] <= kb]
    return max(cheap, key=lambda p: p["accuracy"]) if cheap else None


def against_codecs(res: dict, factor: float = 2.0, method: str = "entropic",
                   codecs=("jpeg", "webp")) -> list[dict]:
    """At each ``method`` point: the best input-codec point that spends up to ``factor`` × its bytes, and
    whether the student is more accurate (None when every codec file is bigger than that: the codec cannot
    go there at all; ``cheapest`` is then its smallest file)."""
    pool = [p for p in res["points"] if p["method"] in codecs]
    rows = []
    for p in sorted((p for p in res["points"] if p["method"] == method), key=lambda p: p["kb_mean"]):
        rival = best_at_or_below(pool, factor * p["kb_mean"])
        rows.append({"value": p["value"], "kb": p["kb_mean"], "accuracy": p["accuracy"], "rival": rival,
                     "cheapest": min(pool, key=lambda q: q["kb_mean"]) if pool else None,
                     "wins": None if rival is None else p["accuracy"] > rival["accuracy"]})
    return rows


def versus_codecs(res: dict, method: str = "entropic", codecs=("jpeg", "webp")) -> list[dict]:
    """Each ``method`` point against the input codecs on the same images, two ways:

    * ``envelope``: the better codec's accuracy at the same KB (their upper envelope, interpolated on log KB;
      None where no codec goes that low or that high);
    * ``rival``: for each codec its cheapest measured point that spends *at least* the student's bytes, and of
      those the more accurate (so the codec is given the benefit of every byte), with a paired McNemar test on the
      per-image correctness both points carry (``correct_bits``): ``paired["difference_pt"]`` > 0 when the student
      is right more often. None when every codec file is smaller.
    """
    pool = [p for p in res["points"] if p["method"] in codecs]
    n = res.get("n") or res["val_set"]["n"]
    rows = []
    for p in sorted((p for p in res["points"] if p["method"] == method), key=lambda p: p["kb_mean"]):
        nearest = [min(bigger, key=lambda q: q["kb_mean"]) for c in codecs
                   if (bigger := [q for q in pool if q["method"] == c and q["kb_mean"] >= p["kb_mean"]])]
        rival = max(nearest, key=lambda q: q["accuracy"]) if nearest else None
        paired = None
        if rival is not None and "correct_bits" in p and "correct_bits" in rival:
            paired = mcnemar(unpack_correct(p["correct_bits"], n), unpack_correct(rival["correct_bits"], n))
        rows.append({"value": p.get("value"), "kb": p["kb_mean"], "accuracy": p["accuracy"],
                     "envelope": accuracy_at_kb(pool, p["kb_mean"]), "rival": rival, "paired": paired})
    return rows


def rate_ratio(res: dict, method: str, reference: str, accuracies=None) -> list[dict]:
    """At equal accuracy, ``method``'s KB ÷ ``reference``'s KB (< 1: ``method`` needs fewer bytes).

    ``accuracies``: where to compare (default: each measured accuracy of ``method``); a row whose accuracy one of
    the two never reaches, or lies below its cheapest point (where its bytes for that accuracy are unknown), has
    ``ratio`` None."""
    ours = [p for p in res["points"] if p["method"] == method]
    ref = [p for p in res["points"] if p["method"] == reference]

    def kb_for(points, a):
        return None if not points or a < min(p["accuracy"] for p in points) else kb_at_accuracy(points, a)
    rows = []
    for a in (accuracies if accuracies is not None else sorted(p["accuracy"] for p in ours)):
        kb, kb_ref = kb_for(ours, a), kb_for(ref, a)
        rows.append({"accuracy": a, "kb": kb, "kb_reference": kb_ref,
                     "ratio": kb / kb_ref if kb is not None and kb_ref is not None else None})
    return rows


# ---- honest statistics: intervals and paired tests ----------------------------------------------------------------
def accuracy_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy of ``correct`` in ``n``, in % (scipy's ``binomtest``)."""
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return 100.0 * float(ci.low), 100.0 * float(ci.high)        # plain floats: checkpoints load weights-only


def pack_correct(correct) -> str:
    """Per-image correctness (bools, dataset order) as a hex string: what a result file keeps for paired tests."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_correct(bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8))[:n].astype(bool)


def mcnemar(a, b) -> dict:
    """Paired comparison of two methods on the same images (per-image correctness ``a``, ``b``): the difference in
    points, the images only one gets right, and McNemar's exact two-sided p-value (a binomial test on those)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs the same images: {a.shape} against {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    n = len(a)
    mean = (only_a - only_b) / n                      # the mean of d_i = a_i − b_i ∈ {−1, 0, 1}
    half = 1.959964 * math.sqrt(max((only_a + only_b) / n - mean * mean, 0.0) / n)
    return {"difference_pt": 100.0 * mean, "ci95_pt": [100.0 * (mean - half), 100.0 * (mean + half)],
            "only_a": only_a, "only_b": only_b, "p_value": float(p), "n": n}


def bootstrap_reach(res: dict, method: str = "entropic", rivals=("jpeg", "webp"), drop: float = 1.0,
                    draws: int = 1000, seed: int = 0) -> dict:
    """Bytes at (teacher − ``drop``) for ``method`` and for the best of ``rivals``, and their ratio, each with a 95 %
    bootstrap interval over images.

    Every draw resamples the ``n`` images with replacement and re-scores the teacher and every point on the same
    draw (each point's ``correct_bits``), so the target moves with the teacher; KB per image stay as measured (the
    spread of accuracy dominates: a point's mean bytes move by < 1 % between draws). ``reached``: the share of draws
    in which each side reaches the target at all; an interval is None where fewer than 97.5 % of draws reach it
    (the quantity is then not defined on the test set with 95 % confidence)."""
    n = res["n"]
    teacher = unpack_correct(res["teacher_correct_bits"], n)
    pts = [p for p in res["points"] if p["method"] in (method, *rivals)]
    if not any(p["method"] == method for p in pts):
        held = sorted({p["method"] for p in res["points"]})
        raise ValueError(f"no {method!r} points in the result file; it holds {held}")
    correct = np.stack([unpack_correct(p["correct_bits"], n) for p in pts]).astype(np.float64)

    def reach(weights):
        acc = 100.0 * (correct @ weights) / weights.sum()
        target = 100.0 * float(teacher @ weights) / weights.sum() - drop
        scored = [{**p, "accuracy": a} for p, a in zip(pts, acc)]
        ours = kb_at_accuracy([p for p in scored if p["method"] == method], target)
        theirs = [k for r in rivals if (k := kb_at_accuracy([p for p in scored if p["method"] == r], target))]
        best = min(theirs) if theirs else None
        return ours, best, (best / ours if ours and best else None)

    point = reach(np.ones(n))
    rng = np.random.default_rng(seed)
    samples = [reach(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)) for _ in range(draws)]
    out = {"method": method, "rivals": list(rivals), "drop": drop, "draws": draws, "n": n}
    for k, name in enumerate(("kb", "kb_rival", "ratio")):
        got = np.array([s[k] for s in samples if s[k] is not None])
        out[name] = point[k]
        out[f"{name}_reached"] = len(got) / draws
        out[f"{name}_ci95"] = (None if len(got) < 0.975 * draws
                               else [float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5))])
    return out


def crossings(res: dict, drop: float = 1.0, rivals=("jpeg", "webp"), draws: int = 1000) -> list[dict]:
    """:func:`bootstrap_reach` for every method other than ``rivals`` that reaches (teacher − ``drop``) on the
    shipped images, in :func:`bytes_to_reach`'s order: how firmly each crossing holds when the images are
    resampled."""
    return [bootstrap_reach(res, r["method"], rivals, drop, draws) for r in bytes_to_reach(res, drop)
            if r["kb"] is not None and r["method"] not in rivals]


