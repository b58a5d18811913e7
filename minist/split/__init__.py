"""Split computing in practice: a device client and a server process talking TCP on localhost."""

from .channel import PRESETS, Channel, get_channel
from .client import ServerError, SplitClient
from .server import SplitServer

__all__ = ["Channel", "PRESETS", "get_channel", "SplitClient", "SplitServer", "ServerError"]
