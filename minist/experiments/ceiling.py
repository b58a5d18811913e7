"""Where the students' ceiling comes from: the measurements that need no training.

The students flatten 1.3–1.8 pt below the teacher whatever the rate. One candidate costs no training to test: the
teacher's ``layer2`` … ``layer4`` keep the BatchNorm statistics of the *teacher's own* ``layer1`` features, while
they now see the decoder's. :func:`recalibrate_tail` re-estimates those statistics on decoded training images
(nothing else changes: no weight, no byte), and :func:`bn_ablation` scores each student before and after on the
val set (the set for choosing) with the paired test.

    minist bench ceiling            # the table, ≈3 min on one thread
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .. import pretrained, rd
from ..config import mini_val_set
from ..data.synth import FashionOnPhotos


@torch.no_grad()
def correct_on(student, dataset, beta=None, batch_size: int = 200) -> np.ndarray:
    """Per-image correctness of ``student`` at ``beta`` (eval mode: ẑ = round(z − m) + m, exactly what the bytes
    carry, so the same predictions as through rANS, in batches)."""
    student.eval()
    hits = []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        hits.append((student(x, beta=beta)["logits"].argmax(1) == y).numpy())
    return np.concatenate(hits)


@torch.no_grad()
def recalibrate_tail(student, images, beta=None, batch_size: int = 200):
    """A copy of ``student`` whose tail's BatchNorm statistics (running mean and variance of ``layer2`` …
    ``layer4``) are re-estimated on the decoded features of ``images`` at ``beta``: a cumulative average over all
    of them, every weight and the bitstream unchanged."""
    s = copy.deepcopy(student).eval()
    norms = [m for name in ("layer2", "layer3", "layer4") for m in getattr(s, name).modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None              # cumulative: every batch weighs the same
        m.train()
    for x, _ in torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False):
        s(x, beta=beta)
    return s.eval()


def bn_ablation(betas=(0.005, 0.08, 0.32), variable_betas=(0.005, 0.02, 0.08, 0.32), n_train: int = 4000,
                limit: int | None = None) -> list[dict]:
    """Each shipped student as it is and with its tail's BatchNorm re-estimated on ``n_train`` decoded training
    images, on the val set (or its first ``limit``): accuracy both ways and the paired difference."""
    val = mini_val_set(limit)
    train = FashionOnPhotos("train", epoch=10_000, train_length=n_train)    # an epoch no student trained on
    arms = [("entropic", b, pretrained.student("mini", beta=b), None) for b in betas]
    variable = pretrained.variable_student("mini")
    arms += [("variable-rate", b, variable, b) for b in variable_betas]
    rows = []
    for method, b, student, beta in arms:
        before = correct_on(student, val, beta)
        after = correct_on(recalibrate_tail(student, train, beta), val, beta)
        rows.append({"method": method, "beta": b, "before": 100 * before.mean(), "after": 100 * after.mean(),
                     "paired": rd.mcnemar(after, before), "n": len(val), "n_train": n_train})
    return rows
