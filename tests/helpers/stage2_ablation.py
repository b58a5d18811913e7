"""Stage 2 alone, from one stage-1 checkpoint, with or without fine-tuning the teacher's layer2 … head.

    python tests/helpers/stage2_ablation.py STAGE1.pt TEACHER.pt OUT 0|1 [EPOCHS LR]
    (0: decoder only, 1: decoder + tail; EPOCHS and LR replace the recorded stage-2 epochs and learning rate)

The method issue's stage-2 ablation (data/README.md): the same stage-1 student, the recipe it records, stage 2
trained both ways, then scored on the full val set at real bytes. Prints one JSON line.
"""

import json
import sys
from dataclasses import replace

import torch

from minist.config import StudentTrainConfig
from minist.evaluate import evaluate_student
from minist.models.store import load_student, load_teacher, save_student
from minist.recipes import train_stage2


def main() -> None:
    src, teacher_path, out, tail = sys.argv[1], sys.argv[2], sys.argv[3], bool(int(sys.argv[4]))
    teacher, _ = load_teacher(teacher_path)
    student, meta = load_student(src, teacher)
    recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
    cfg = replace(StudentTrainConfig(**recipe), out=out, stage2_tail=tail)
    if len(sys.argv) > 6:
        cfg = replace(cfg, stage2_epochs=int(sys.argv[5]), stage2_lr=float(sys.argv[6]))
    student.tune_tail = tail
    student.train().set_stage(2)
    train_set, val_set = cfg.datasets()
    every = max(1, len(val_set) // cfg.eval_length)
    eval_set = torch.utils.data.Subset(val_set, range(0, len(val_set), every)[:cfg.eval_length])
    history = train_stage2(student, teacher.eval(), cfg, train_set, eval_set, progress=False)
    res = evaluate_student(student.eval(), val_set)
    save_student(f"{out}/student.pt", student, {"val": res, "history": history, "stage2_tail": tail})
    print(json.dumps({"stage2_tail": tail, "val": res, "history": history}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
