"""One stage-1 step of ``train_student``, run by tests/test_distributed.py alone or under torchrun (gloo).

Usage: python ddp_step.py OUT   |   torchrun --nproc_per_node 2 ddp_step.py OUT
"""

import sys

import torch
from compressai.entropy_models import EntropyModel

from minist import distributed
from minist.config import StudentTrainConfig
from minist.models.teacher import Teacher, TeacherConfig
from minist.recipes import build_student, train_student
from minist.utils import set_seed

_quantize = EntropyModel.quantize


def same_noise_everywhere(self, inputs, mode, means=None):
    """Stage 1 adds U(−½, ½) noise, drawn per process. For the comparison the noise must not depend on which
    process handles a sample, so here it is a fixed function of the value itself (still in (−½, ½))."""
    if mode == "noise":
        return inputs + 0.49 * torch.sin(997.0 * inputs)
    return _quantize(self, inputs, mode, means)


# fp32 (amp=False): the check is exact equality up to summation order, which bf16 autocast would swamp
CONFIG = dict(channels=4, stage1_epochs=1, stage2_epochs=0, stage1_batch_size=8, max_steps=1, eval_length=6,
              image_size=64, device="cpu", amp=False)


def tiny_teacher() -> Teacher:
    set_seed(0)
    return Teacher(TeacherConfig(image_size=64, widths=(16, 16, 32, 32), stem_width=16)).eval()


def initial_student():
    """The student ``train_student`` starts from (it seeds with ``cfg.seed`` before building it)."""
    teacher = tiny_teacher()
    set_seed(0)
    return build_student(StudentTrainConfig(**CONFIG), teacher)


def main(out: str) -> None:
    torch.set_num_threads(1)
    EntropyModel.quantize = same_noise_everywhere
    teacher = tiny_teacher()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(32, 3, 64, 64, generator=g)
    labels = torch.randint(0, 10, (32,), generator=g)
    data = torch.utils.data.TensorDataset(images, labels)
    cfg = StudentTrainConfig(**CONFIG, out=out)
    student, _ = train_student(cfg, teacher, progress=False, final_eval=False, train_set=data,
                               val_set=torch.utils.data.Subset(data, range(6)))
    if distributed.is_main():   # the step's gradients (after DDP's all-reduce) are still on the parameters
        torch.save({n: p.grad for n, p in student.named_parameters() if p.grad is not None}, f"{out}/grads.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
