"""The oracle behind the "bits on the product" goal: stage 1 weighted by the product's *true* mask.

    python tests/helpers/mask_oracle.py BETA FLOOR OUT [layer weights, e.g. 0,1,1,1]

Fashion-on-Photos knows where it pasted each product, so this weights every position's distillation error by
``floor + (1 − floor) · mask`` (resampled to each layer's grid, mean 1 per image) instead of the teacher's
Grad-CAM (``--saliency-floor``). No real system has this mask; it bounds what any weighting of the distortion
can do. If even the oracle leaves most bits on the background, the device encoder cannot tell the product from
the photo behind it, and no loss weighting will. Trains the mini recipe (the config's defaults with
``minist.experiments.sweep.STUDENT_RECIPE``) on the shipped teacher, then prints one JSON line: accuracy and
KB on the val set, bits on the product.
"""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from minist import pretrained
from minist.config import StudentTrainConfig
from minist.engine import Engine
from minist.evaluate import evaluate_student
from minist.experiments.sweep import STUDENT_RECIPE, bits_on_product
from minist.losses import LAYERS, distill_weights, stage1_loss
from minist.recipes import build_student, loaders, milestones, stage1_optimizers, train_stage2
from minist.utils import resolve_amp, set_seed

SMOKE = bool(os.environ.get("MINIST_SMOKE"))     # a few steps, 20 val images: does the script run?


class WithMask(torch.utils.data.Dataset):
    """Fashion-on-Photos classification samples as (image, label, the product's mask)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def set_epoch(self, epoch):
        self.ds.set_epoch(epoch)

    def __getitem__(self, i):
        image, y, mask = self.ds.render(i, with_mask=True)
        return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0), y, torch.from_numpy(mask)


def main() -> None:
    beta, floor, out = float(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
    weights = tuple(float(w) for w in sys.argv[4].split(",")) if len(sys.argv) > 4 else (1.0, 1.0, 1.0, 1.0)
    small = dict(train_length=128, stage1_epochs=1, stage2_epochs=1, eval_length=8) if SMOKE else {}
    cfg = StudentTrainConfig(beta=beta, out=str(out), **{**STUDENT_RECIPE, "distill_weights": weights, **small})
    set_seed(cfg.seed)
    teacher = pretrained.teacher("mini").eval().requires_grad_(False)
    student = build_student(cfg, teacher)
    student.tune_tail = cfg.stage2_tail
    train_set, val_set = cfg.datasets()
    if SMOKE:
        val_set = torch.utils.data.Subset(val_set, range(20))
    eval_set = torch.utils.data.Subset(val_set, range(0, len(val_set), 4)[:cfg.eval_length])
    student.set_stage(1)
    opt, aux = stage1_optimizers(student, cfg)
    steps = len(train_set) // cfg.stage1_batch_size
    engine = Engine(student, opt, milestones(opt, steps, cfg.stage1_epochs, cfg.stage1_milestones), out=out,
                    name="stage1", config=asdict(cfg), aux=aux, amp=resolve_amp(cfg.amp, "cpu"), progress=False)
    w = distill_weights(weights)

    def step(batch):
        x, mask = batch[0], batch[2].float()[:, None]
        spatial = floor + (1.0 - floor) * F.adaptive_avg_pool2d(mask, (32, 32))
        spatial = spatial / spatial.mean(dim=(2, 3), keepdim=True)
        with torch.no_grad(), engine.autocast():
            t = teacher.features(x, LAYERS)
        with engine.autocast():
            o = student(x)
        parts = stage1_loss({k: v.float() for k, v in o["features"].items()}, {k: v.float() for k, v in t.items()},
                            o["likelihoods"], beta, w, spatial)
        return parts["loss"], {"distortion": parts["distortion"].item() / len(x), "bits": parts["bits"].item() / len(x)}

    engine.run(cfg.stage1_epochs, loaders(WithMask(train_set), cfg.stage1_batch_size, cfg.seed, cfg.workers), step)
    student.update(force=True)
    stage1 = evaluate_student(student.eval(), val_set)
    train_stage2(student, teacher, cfg, train_set, eval_set, progress=False)
    final = evaluate_student(student.eval(), val_set)
    print(json.dumps({"beta": beta, "floor": floor, "weights": weights, "stage1": stage1["accuracy"],
                      "accuracy": final["accuracy"], "kb": final["kb_mean"],
                      "bits_on_object": bits_on_product(student, 20 if SMOKE else 500)}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
