import os

import pytest

# every test uses a private cache so it never reads a stale one; the shipped data/ is used as is
os.environ.setdefault("MINIST_QUICK", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "minist-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("MINIST_CACHE", str(cache))
