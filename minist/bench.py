"""Benchmarks that print a table (speed targets live here, never in timed unit tests).

``minist bench`` measures, on this machine:
* the Fashion-on-Photos training stream, images/s (one process, per task);
* the teacher's training step, images/s and CPU seconds per epoch, next to the
  stream's rate (the stream must not be the bottleneck);
* the shipped teacher's accuracy on the cached validation set.
"""

from __future__ import annotations

import platform
import time

import torch


def _rate(fn, n: int) -> float:
    tic = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - tic)


def data_rate(task: str, n: int = 300, size: int = 128) -> float:
    from .data.synth import FashionOnPhotos
    ds = FashionOnPhotos("train", task, size=size)
    ds[0]
    return _rate(lambda i: ds[i], n)


def teacher_step_rate(batch: int = 64, steps: int = 5, size: int = 128) -> float:
    from .models.teacher import build_teacher
    model = build_teacher("mini").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step(_):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step(0)
    return batch * _rate(step, steps)


def _print_table(title: str, rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(title)
    print(f"{'what':<{width}} | value")
    print(f"{'-' * width}-|------")
    for k, v in rows:
        print(f"{k:<{width}} | {v}")
    print()


def student_step_rates(batch: int = 32, steps: int = 3, size: int = 128) -> tuple[float, float]:
    """Images/s of one stage-1 and one stage-2 training step (teacher forward included), this machine."""
    from .losses import kd_loss, stage1_loss
    from .models.student import EntropicStudent
    from .models.teacher import build_teacher
    teacher = build_teacher("mini").eval().requires_grad_(False)
    student = EntropicStudent(teacher)
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    rates = []
    for stage in (1, 2):
        student.set_stage(stage).train()
        opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-4)

        def step(_, stage=stage, opt=opt):
            with torch.no_grad():
                t = teacher.features(x, ("layer1", "layer2", "layer3", "layer4", "head"))
            o = student(x)
            loss = (stage1_loss(o["features"], t, o["likelihoods"], 0.1)["loss"] if stage == 1
                    else kd_loss(o["logits"], t["head"], y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if stage == 1:
                student.aux_loss().backward()
        step(0)
        rates.append(batch * _rate(step, steps))
    return rates[0], rates[1]


@torch.no_grad()
def student_main(quick: bool = False) -> int:
    """Real payload vs estimated bits, decode exactness, stage speeds, accuracy at real bytes."""
    from . import data as mdata
    from . import pretrained
    from .evaluate import evaluate_student
    from .models import entropy
    from .train import StudentTrainConfig, evaluate_accuracy
    student, meta = pretrained.student("mini", with_meta=True)
    teacher = pretrained.teacher("mini")
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    n = 100 if quick else len(val)
    eb = student.entropy_bottleneck
    med = eb._get_medians().detach().view(1, -1, 1, 1)
    ratios, big, exact, payloads, est = [], [], 0, [], []
    for i in range(n):
        x = val[i][0].unsqueeze(0)
        z = student.encode(x)
        data = entropy.compress(eb, z)
        exact += int(torch.equal(entropy.decompress(eb, data), torch.round(z - med) + med))
        _, lik = eb(z, training=False)
        bits = float(entropy.rate_bits(lik))
        pay = entropy.payload_bits(data)
        payloads.append(pay / 8)
        est.append(bits)
        ratios.append(pay / bits)
        if pay / 8 >= 200:
            big.append(pay / bits)
    res = evaluate_student(student, torch.utils.data.Subset(val, range(n)))
    t_acc = evaluate_accuracy(teacher, torch.utils.data.Subset(val, range(n)))
    s1, s2 = student_step_rates(steps=1 if quick else 3)
    cfg = StudentTrainConfig()
    rows = [
        (f"val images (real bytes, batch 1){' (quick)' if quick else ''}", f"{n}"),
        ("payload bits / estimated bits Σ−log2 p, mean", f"{sum(ratios) / len(ratios):.4f}"),
        ("same, payloads ≥ 200 B (target ≤ 1.02)",
         f"{sum(big) / len(big):.4f} (max {max(big):.4f}, {len(big)} images)" if big else "no payload ≥ 200 B"),
        ("payload bytes mean (rANS only)", f"{sum(payloads) / n:.1f} B"),
        ("our header + CRC per message", f"{entropy.HEADER_BYTES} B"),
        ("decoded latent == rounded latent, every element", f"{exact}/{n} images"),
        (f"student β = {meta['beta']}: accuracy at real bytes", f"{res['accuracy']:.2f} %"),
        ("teacher accuracy, same images", f"{t_acc:.2f} %  (gap {t_acc - res['accuracy']:.2f} pt; target ≤ 2)"),
        ("KB per image (mean ± std, header included)", f"{res['kb_mean']:.4f} ± {res['kb_std']:.4f} KB"),
        ("bits per pixel (header included)", f"{res['bpp']:.4f} bpp"),
        ("device-side parameters (encoder + prior)", f"{student.device_parameters():,d}"),
        ("stage 1 step, CPU", f"{s1:.0f} img/s → {cfg.train_length / s1:.0f} s/epoch ({cfg.train_length} images)"),
        ("stage 2 step, CPU", f"{s2:.0f} img/s → {cfg.train_length / s2:.0f} s/epoch ({cfg.train_length} images)"),
    ]
    if meta.get("history"):
        for stage in (1, 2):
            h = [r for r in meta["history"] if r["stage"] == stage]
            if h:
                rows.append((f"stage {stage} epoch as trained (recorded, incl. stream + eval)",
                             f"{sum(r['seconds'] for r in h) / len(h):.0f} s on {meta['device']}"))
    _print_table(f"minist student benchmark — torch {torch.__version__}, {torch.get_num_threads()} threads", rows)
    return 0


def main(quick: bool = False, which: str = "all") -> int:
    if which in ("all", "foundation"):
        foundation_main(quick)
    if which in ("all", "student"):
        student_main(quick)
    return 0


def foundation_main(quick: bool = False) -> int:
    from . import data as mdata
    from . import pretrained
    from .train import TeacherTrainConfig, evaluate_accuracy
    n = 60 if quick else 400
    cfg = TeacherTrainConfig()
    rows = []
    cls_rate = data_rate("classification", n)
    det_rate = data_rate("detection", n)
    rows.append(("data: Fashion-on-Photos classification, 1 process", f"{cls_rate:.0f} images/s"))
    rows.append(("data: Fashion-on-Photos detection, 1 process", f"{det_rate:.0f} images/s"))
    step = teacher_step_rate(steps=2 if quick else 6)
    rows.append(("teacher (mini) training step, batch 64", f"{step:.0f} images/s"))
    rows.append((f"teacher CPU seconds per epoch ({cfg.train_length} images)", f"{cfg.train_length / step:.0f} s"))
    rows.append(("stream / training-step rate (must be > 1)", f"{cls_rate / step:.1f}×"))
    model, meta = pretrained.teacher("mini", with_meta=True)
    if meta.get("history"):
        h = meta["history"][-1]
        rows.append(("teacher epoch as trained (recorded, incl. stream)", f"{h['seconds']:.0f} s on {meta['device']}"))
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    if quick:
        val = torch.utils.data.Subset(val, range(200))
    tic = time.perf_counter()
    acc = evaluate_accuracy(model, val)
    dt = time.perf_counter() - tic
    rows.append((f"teacher val accuracy ({len(val)} cached val images)",
                 f"{acc:.2f} % (recorded {meta['val_accuracy']:.2f} %)"))
    rows.append(("teacher eval speed, batch 250", f"{len(val) / dt:.0f} images/s"))
    _print_table(f"minist foundation benchmark — {platform.processor() or platform.machine()}, torch "
                 f"{torch.__version__}, {torch.get_num_threads()} threads{' (quick)' if quick else ''}", rows)
    return 0
