"""``minist-device send IMAGE… --bundle B [--host H --port P]``: encode on this device, decode on the server."""

from __future__ import annotations

import argparse
import sys
import time

from .bundle import BundleError
from .client import Client, ServerError
from .device import Device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="minist-device", description="the device half of minist's split, no PyTorch")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="encode images and send them to `minist serve`")
    s.add_argument("images", nargs="+", help="image files (resized to the bundle's input size)")
    s.add_argument("--bundle", required=True, help="a folder made by `minist export`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--beta", type=float, default=None, help="the rate (a variable-rate bundle: any β of its grid)")
    args = p.parse_args(argv)
    try:
        device = Device(args.bundle)
        print(f"{'image':<28} {'predicted':>12} {'bytes':>6} {'encode ms':>9} {'server ms':>9} {'total ms':>8}")
        with Client(args.host, args.port) as client:
            for path in args.images:
                tic = time.perf_counter()
                message = device.encode(path, beta=args.beta)
                enc = 1000 * (time.perf_counter() - tic)
                r = client.infer(message)
                print(f"{str(path)[-28:]:<28} {r.get('class', r['label']):>12} {r['bytes_sent']:>6} {enc:>9.2f} "
                      f"{r['server_ms']:>9.2f} {enc + r['round_trip_ms']:>8.2f}")
    except (BundleError, ServerError, ValueError, TypeError, OSError) as e:
        if args.debug:
            raise
        print(f"minist-device: error: {' '.join(str(e).split())} (run with --debug for the traceback)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
