"""Score jittered true boxes and a small untrained segmenter on 10 scenes, alone or under torchrun (gloo).

Usage: python ddp_task_eval.py OUT.json   |   torchrun --nproc_per_node 2 ddp_task_eval.py OUT.json
"""

import json
import sys

import torch

from minist import distributed, evaluate
from minist.data.synth import FashionOnPhotos
from minist.models import tasks as T
from minist.models.teacher import Teacher, TeacherConfig
from minist.utils import set_seed


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed.init("cpu")
    set_seed(0)
    teacher = Teacher(TeacherConfig(image_size=64, widths=(16, 16, 32, 32), stem_width=16)).eval()
    scenes = torch.utils.data.Subset(FashionOnPhotos("val", "detection", size=64, val_length=10), range(10))
    truth = {round(float(scenes[i][0].sum()), 3): scenes[i][1] for i in range(len(scenes))}

    def jittered_truth(x):
        """The true boxes, moved by an amount that differs per scene: an mAP strictly between 0 and 100."""
        t = truth[round(float(x.sum()), 3)]
        shift = float(t["boxes"][0, 0]) % 7
        return {"boxes": t["boxes"] + shift, "labels": t["labels"], "scores": torch.full((len(t["labels"]),), 0.9)}, 1

    set_seed(1)
    seg = T.build_task_teacher("segmentation", teacher).eval()
    result = {"detection": evaluate.evaluate_task("detection", jittered_truth, scenes),
              "segmentation": evaluate.evaluate_task("segmentation", evaluate.teacher_predictor(seg, "webp", 20),
                                                     scenes)}
    if distributed.is_main():
        with open(out, "w") as f:
            json.dump(result, f)
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
