"""The rANS decoder in a process of its own, for bytes from strangers (run as a script, never imported).

CompressAI's C++ decoder trusts its input: it reads the stream without a bound, so a
forged message can make it read past its buffer (a crash, or garbage). minist's
server therefore decodes in this small process, started by
:class:`minist.models.sandbox.SandboxedDecoder`: a crash, a memory blow-up or a
hang here ends this process, not the server, and becomes a ``PayloadError``.

It loads only CompressAI's compiled ``ans`` module (by file path, so neither torch,
NumPy nor CompressAI's Python package is imported: it starts in tens of milliseconds,
which is also what a crash costs) and speaks a tiny protocol on stdin/stdout, integers
in the machine's byte order (parent and worker share the machine)::

    argv:     the path of compressai's ans module, the memory cap in MB
    tables:   u32 1 | u32 key | u32 n | n bytes of JSON {"cdfs", "lengths", "offsets"}     (no reply)
    request:  u32 0 | u32 key | u32 C | u32 h | u32 w | u32 n_bytes | n_bytes payload
    reply:    u8 0 | C·h·w × i32 values, channel-major      (or u8 1 | u32 n | n bytes of error text)

``key`` names a set of coding tables: a one-rate model has one (0), a variable-rate model one per grid rate.
"""

import importlib.machinery
import importlib.util
import json
import resource
import struct
import sys
from array import array


def _load_ans(path: str):
    loader = importlib.machinery.ExtensionFileLoader("compressai.ans", path)
    spec = importlib.util.spec_from_file_location("compressai.ans", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _read(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def main() -> None:
    ans = _load_ans(sys.argv[1])
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    limit = int(sys.argv[2]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))   # a blow-up ends here, not in the server
    decoder, indexes_of, tables = ans.RansDecoder(), {}, {}
    while True:
        try:
            op, key = struct.unpack("=II", _read(inp, 8))
            if op == 1:
                (n,) = struct.unpack("=I", _read(inp, 4))
                t = json.loads(_read(inp, n))
                tables[key] = (t["cdfs"], t["lengths"], t["offsets"])
                continue
            c, h, w, n_bytes = struct.unpack("=IIII", _read(inp, 16))
            payload = _read(inp, n_bytes)
        except EOFError:
            return
        if (c, h, w) not in indexes_of:   # symbol i of channel k uses channel k's table
            indexes_of[c, h, w] = [k for k in range(c) for _ in range(h * w)]
        indexes = indexes_of[c, h, w]
        try:
            if key not in tables:
                raise KeyError(f"no coding tables {key}")
            values = decoder.decode_with_indexes(payload, indexes, *tables[key])
            reply = b"\0" + array("i", values).tobytes()
        except Exception as e:   # noqa: BLE001 (any failure is the message's, and is reported as such)
            text = f"{type(e).__name__}: {e}".encode()
            reply = b"\1" + struct.pack("=I", len(text)) + text
        out.write(reply)
        out.flush()


if __name__ == "__main__":
    main()
