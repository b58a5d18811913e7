"""How much of the Grad-CAM weight lands on the product (the numbers in ``minist.losses.saliency_weights``).

    python tests/helpers/saliency_share.py [N]     (N val images, default 64)

For the shipped teacher: the products' share of the image area, and the share of the saliency weight inside
their masks for the map taken at layer2, layer3 and layer4, plain (power 1), squared and cubed, floor 0.
"""

import sys

import torch
import torch.nn.functional as F

import minist.data as mdata
from minist import pretrained
from minist.config import StudentTrainConfig
from minist.data.synth import FashionOnPhotos
from minist.losses import LAYERS, on_grid, saliency_weights


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    teacher = pretrained.teacher("mini").float().eval()
    val = mdata.load("fashion-on-photos", split="val", task="classification")
    generator = FashionOnPhotos("val", "classification", StudentTrainConfig().data_config())   # the val set's draws
    x = torch.stack([val[i][0] for i in range(n)])
    y = torch.tensor([val[i][1] for i in range(n)])
    masks = F.adaptive_avg_pool2d(torch.stack([generator.object_mask(i).float() for i in range(n)])[:, None], (32, 32))
    with torch.no_grad():
        feats = teacher.features(x, LAYERS)
    print(f"{n} val images: the products cover {100 * float(masks.mean()):.1f} % of the area")
    for at in LAYERS[1:]:
        for power in (1.0, 2.0, 3.0):
            w = on_grid(saliency_weights(teacher, feats, y, floor=0.0, at=at, power=power), (32, 32))
            share = 100 * float((w * masks).sum() / w.sum())
            print(f"  Grad-CAM at {at}, power {power:g}: {share:.1f} % of the weight")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
