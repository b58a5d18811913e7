"""A channel model: bandwidth and round-trip time between device and server.

The socket between our processes is localhost (instant); the channel model adds
the time a real link would take: half the RTT plus the serialisation time
``8 · bytes / rate`` each way. Presets are typical *uplink* figures — the device
sends the payload — rounded from the sources named beside each (they vary a lot
with coverage and load; change them freely).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    name: str
    uplink_bps: float          # device → server, bits per second
    downlink_bps: float        # server → device
    rtt_s: float               # round-trip time, seconds
    source: str = ""

    def uplink_seconds(self, nbytes: int) -> float:
        return self.rtt_s / 2 + 8.0 * nbytes / self.uplink_bps

    def downlink_seconds(self, nbytes: int) -> float:
        return self.rtt_s / 2 + 8.0 * nbytes / self.downlink_bps

    def wait_uplink(self, nbytes: int) -> float:
        s = self.uplink_seconds(nbytes)
        time.sleep(s)
        return s

    def wait_downlink(self, nbytes: int) -> float:
        s = self.downlink_seconds(nbytes)
        time.sleep(s)
        return s


PRESETS = {
    "lora": Channel("LoRa (SF7, 125 kHz)", 5_470, 5_470, 1.0,
                    "LoRaWAN Regional Parameters, EU868 DR5: 5.47 kbit/s raw; RTT includes the RX1 window (1 s)"),
    "ble": Channel("Bluetooth LE 4.2", 250_000, 250_000, 0.030,
                   "1 Mbit/s PHY, ≈0.25 Mbit/s application throughput after connection-interval overheads"),
    "3g": Channel("3G (HSPA)", 1_000_000, 5_000_000, 0.100,
                  "HSUPA/HSDPA typical user rates ≈1 Mbit/s up, ≈5 Mbit/s down; RTT ≈100 ms"),
    "4g": Channel("4G / LTE", 8_000_000, 30_000_000, 0.050,
                  "typical measured LTE ≈8 Mbit/s up, ≈30 Mbit/s down; RTT ≈50 ms"),
    "5g": Channel("5G (sub-6 GHz)", 50_000_000, 200_000_000, 0.020,
                  "typical measured 5G ≈50 Mbit/s up, ≈200 Mbit/s down; RTT ≈20 ms"),
    "wifi": Channel("Wi-Fi (802.11n/ac)", 100_000_000, 100_000_000, 0.005,
                    "≈100 Mbit/s effective on a good 802.11ac link; RTT ≈5 ms on a LAN"),
}


def get_channel(name: str) -> Channel:
    if name not in PRESETS:
        raise ValueError(f"unknown channel {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]
