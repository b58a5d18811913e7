"""minist: supervised compression for split computing (the Entropic Student), for learning.

    import minist
    teacher = minist.pretrained.teacher("mini")
    student = minist.pretrained.student("mini")
    val = minist.data.load("fashion-on-photos", split="val", task="classification")
"""

import warnings

__version__ = "0.1.0"

# compressai 1.2.8 calls torch.jit.script at import, which torch ≥ 2.10 reports as deprecated: noise for learners
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

from . import data, models, pretrained  # noqa: E402  (the three entry points of docs/design.md §7)

__all__ = ["data", "models", "pretrained", "__version__"]
