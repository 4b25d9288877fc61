"""Fixtures for the HTTP API tests: the real binary, serving a temporary data directory with the
real model, on a free loopback port."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from paths import DARKNET, ROOT, SKIMAGE  # noqa: E402,F401
from server import Server, free_port, store_kind  # noqa: E402,F401


@pytest.fixture
def server(binary, model, tmp_path):
    s = Server(binary, model, tmp_path / "data").start()
    yield s
    code = s.stop()
    assert code == 0, f"server exited with {code}"


@pytest.fixture
def make_server(binary, model, tmp_path):
    made = []

    def _make(name="data", extra=()):
        s = Server(binary, model, tmp_path / name, extra)
        made.append(s)
        return s
    yield _make
    for s in made:
        s.stop()
