"""How long a new client waits when 64 connections hold the server's cap and only PING (the rate-door issue's
measure). Prints one JSON line: the wait in seconds for each of ``waves`` new clients.

    python tests/helpers/ping_flood.py [waves]
"""

import json
import sys
import threading
import time

import torch

from minist import pretrained
from minist.split import SplitClient, SplitServer
from minist.split.client import ServerError

waves = int(sys.argv[1]) if len(sys.argv) > 1 else 3
torch.set_num_threads(1)
student = pretrained.student("mini")
device, server_part = student.split()
message = device(torch.rand(1, 3, 128, 128))
stop = threading.Event()


def pinger(srv):
    while not stop.is_set():                  # reconnect whenever evicted: the attacker's waves
        try:
            with SplitClient(port=srv.port) as c:
                while not stop.is_set():
                    c.ping()
                    time.sleep(0.5)
        except (ServerError, OSError):
            time.sleep(0.05)


with SplitServer(server_part) as srv:         # the defaults of `minist serve`: 64 connections, idle 60 s
    threads = [threading.Thread(target=pinger, args=(srv,), daemon=True) for _ in range(64)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    waits = []
    for _ in range(waves):
        tic = time.perf_counter()
        while True:
            try:
                with SplitClient(port=srv.port) as c:
                    c.infer(message)
                break
            except (ServerError, OSError):
                time.sleep(0.05)
        waits.append(round(time.perf_counter() - tic, 3))
        time.sleep(1.0)
    stop.set()
    print(json.dumps({"waits_s": waits, "evicted": srv.stats["evicted"], "refused": srv.stats["refused"]}))
