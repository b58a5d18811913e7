"""Run with the MAIN environment's Python (it imports minist and torch): a bundle, val images and what to expect.

    python make_fixtures.py OUT [BETA | variable]  →  OUT/bundle/, OUT/images/*.png, OUT/expected.json

``variable``: the shipped variable-rate student's bundle, each image's message at three β of its grid.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minist import pretrained
from minist.config import mini_val_set as val_set
from minist.export import export_bundle

out = Path(sys.argv[1])
variable = len(sys.argv) > 2 and sys.argv[2] == "variable"
beta = float(sys.argv[2]) if len(sys.argv) > 2 and not variable else None
student = pretrained.variable_student("mini") if variable else pretrained.student("mini", beta=beta)
export_bundle(student, out / "bundle")
rates = (0.005, 0.0213, 0.3) if variable else (None,)
device, server = student.split()
val = val_set(limit=16)
(out / "images").mkdir(parents=True, exist_ok=True)
expected = []
for i in range(len(val)):
    x = val[i][0]
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(u8.float() / 255, x)
    path = out / "images" / f"val{i:03d}.png"
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(path)
    for rate in rates:
        message = device(x[None], beta=rate)
        with torch.no_grad():
            logits = server(message)[0]
        expected.append({"image": path.name, "beta": rate, "sha256": hashlib.sha256(message).hexdigest(),
                         "bytes": len(message), "label": int(logits.argmax()),
                         "logits": np.round(logits.numpy(), 4).tolist()})
(out / "expected.json").write_text(json.dumps(expected))
