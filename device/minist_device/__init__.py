"""minist-device: the device half of minist's split computing, with no PyTorch.

A bundle made by ``minist export`` holds the student's encoder as ONNX and its prior's coding tables.
This package runs the encoder in ONNX Runtime, rounds the latent around the prior's medians, codes it with
a NumPy port of CompressAI's rANS coder (byte-identical, so ``minist serve`` decodes it unchanged) and
sends it over minist's TCP frames::

    from minist_device import Device, Client
    device = Device("bundle/")
    message = device.encode(image)          # image: (H, W, 3) uint8, or (1, 3, H, W) float in [0, 1]
    with Client("127.0.0.1", 8765) as c:
        print(c.infer(message))             # {"label", "class", "logits", "server_ms", …}

It imports onnxruntime, numpy and Pillow, and never torch (``device/tests`` checks that).
"""

from .bundle import Bundle, BundleError
from .client import Client, ServerError
from .device import Device

__all__ = ["Bundle", "BundleError", "Client", "Device", "ServerError"]
__version__ = "0.1.0"
