"""Shared pytest fixtures: the built binary, the model, and generated test images.

Environment: IMGSEARCH_BIN (default build/imgsearch), IMGSEARCH_MODELS (default models/).
Run with Debian's /usr/bin/python3 (python3-torch, python3-pil, python3-numpy come from apt)."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paths import DARKNET, ROOT, SKIMAGE  # noqa: E402,F401


@pytest.fixture(scope="session")
def binary():
    path = os.path.abspath(os.environ.get("IMGSEARCH_BIN", os.path.join(ROOT, "build", "imgsearch")))
    assert os.access(path, os.X_OK), f"{path} is not built"
    return path


@pytest.fixture(scope="session")
def models_dir():
    return os.environ.get("IMGSEARCH_MODELS", os.path.join(ROOT, "models"))


@pytest.fixture(scope="session")
def model(models_dir):
    path = os.path.join(models_dir, "efficientnet_lite0.json")
    assert os.path.exists(path), "run tools/fetch-model first"
    return path


@pytest.fixture(scope="session")
def dims(model):
    """Size of the vectors the shipped embedding stores: its head's, else the pooled features'."""
    head = model[: -len(".json")] + ".head.json"
    return json.load(open(head))["dims"] if os.path.exists(head) else json.load(open(model))["head_channels"]


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    out = tmp_path_factory.mktemp("images")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "images", "make_images.py"), str(out)],
                   check=True)
    return out


@pytest.fixture(scope="session")
def run(binary):
    """run("embed", "--batch", "2", *files) -> (exit code, [parsed JSON lines], stderr); env: extra
    environment variables for that run"""
    def _run(*args, timeout=120, env=None):
        p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        return p.returncode, lines, p.stderr
    return _run
