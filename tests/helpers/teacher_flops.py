"""FLOPs of mini encoders and candidate teacher layouts at 128 px, and one-thread fp32 train-step time (batch 32).

    python tests/helpers/teacher_flops.py   →  the table in the hardening session's notes (a lead for the method
    issue: the device encoder should cost ≤ 15 % of the teacher), and lighter encoders against the 32-256 × 2 teacher
"""

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from minist.models.bottleneck import Encoder
from minist.models.teacher import Teacher, TeacherConfig


def mflops(model, x) -> float:
    with FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 1e6


def main() -> None:
    torch.set_num_threads(1)
    x = torch.rand(1, 3, 128, 128)
    for c in (12, 8, 6, 4):
        print(f"encoder C = {c:2d} (4C-2C-C): {mflops(Encoder(c).eval(), x):6.1f} MFLOPs")
    two = mflops(Teacher(TeacherConfig(blocks=(2, 2, 2, 2))).eval(), x)
    for c, hidden in ((12, (24, 16)), (12, (24, 12)), (12, (16, 16)), (8, (24, 16))):
        f = mflops(Encoder(c, hidden, bias=True).eval(), x)
        print(f"encoder C = {c:2d}, hidden {hidden}, biases: {f:6.1f} MFLOPs = {f / two:.3f} of the 32-256 × 2 teacher")
    enc = mflops(Encoder(12).eval(), x)
    for widths in ((32, 64, 128, 256), (48, 96, 192, 384), (64, 128, 256, 512)):
        for blocks in ((1, 1, 1, 1), (2, 2, 2, 2)):
            t = Teacher(TeacherConfig(widths=widths, blocks=blocks, stem_width=widths[0]))
            f = mflops(t.eval(), x)
            t.train()
            opt = torch.optim.SGD(t.parameters(), lr=0.01)
            xb, yb = torch.rand(32, 3, 128, 128), torch.randint(0, 10, (32,))
            for i in range(3):
                if i == 1:
                    tic = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(t(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            ms = 1000 * (time.perf_counter() - tic) / 2
            print(f"teacher {widths} × {blocks[0]} blocks: {f:7.1f} MFLOPs, {ms:5.0f} ms/step, "
                  f"C = 12 encoder ÷ teacher {enc / f:.2f}")


if __name__ == "__main__":
    main()
