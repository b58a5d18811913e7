import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def main_python() -> str:
    py = os.environ.get("MINIST_MAIN_PYTHON")
    if not py:
        pytest.skip("set MINIST_MAIN_PYTHON to the main environment's python (`make test-device` does)")
    return py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    out = tmp_path_factory.mktemp("device")
    subprocess.run([main_python(), str(HERE / "make_fixtures.py"), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-other")
    subprocess.run([main_python(), str(HERE / "make_fixtures.py"), str(out), "0.64"], check=True)
    return out / "bundle"


@pytest.fixture(scope="session")
def variable_fixtures(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-variable")
    subprocess.run([main_python(), str(HERE / "make_fixtures.py"), str(out), "variable"], check=True)
    return out


def _serve(extra=()):
    port = _free_port()
    proc = subprocess.Popen([main_python(), "-m", "minist", "serve", "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"minist serve ended: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return proc, port


@pytest.fixture(scope="session")
def variable_server_port():
    proc, port = _serve(["--variable"])
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def server_port():
    proc, port = _serve()
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(autouse=True)
def _no_torch():
    sys.modules["torch"] = None   # anything that tries to import torch fails loudly
    yield
