"""The embedding head (src/embed/head.h) as the engine applies it: the vector `imgsearch embed` prints
equals the fitted head applied in numpy to the pooled features `imgsearch embed --features` prints,
and a damaged head is refused with a clear message."""
import json
import os
import shutil
import struct

import numpy as np
import pytest

from paths import DARKNET, SKIMAGE

PHOTOS = [f"{DARKNET}/dog.jpg", f"{DARKNET}/eagle.jpg", f"{SKIMAGE}/chelsea.png", f"{SKIMAGE}/coffee.png"]


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
    return out


@pytest.fixture(scope="module")
def head(models_dir):
    path = os.path.join(models_dir, "efficientnet_lite0.head.json")
    assert os.path.exists(path), "run tools/fetch-model --fit-head build/imgsearch (scripts/setup does)"
    meta = json.load(open(path))
    return meta, read_safetensors(os.path.join(models_dir, meta["weights"]))


def test_engine_applies_the_fitted_head(run, model, head):
    meta, w = head
    code, feats, _ = run("embed", "--model", model, "--features", *PHOTOS)
    assert code == 0
    code, vecs, _ = run("embed", "--model", model, *PHOTOS)
    assert code == 0
    x = np.array([f["vector"] for f in feats], dtype=np.float64)
    assert x.shape == (len(PHOTOS), meta["input_dims"])
    if meta["power"]:
        x = np.sign(x) * np.sqrt(np.abs(x))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (x - w["mean"]) @ w["projection"].T
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    ours = np.array([v["vector"] for v in vecs])
    assert ours.shape == (len(PHOTOS), meta["dims"]) and all(v["dims"] == meta["dims"] for v in vecs)
    assert (ours * y).sum(1).min() > 0.99999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_a_damaged_head_is_refused(run, model, head, tmp_path):
    meta, _ = head
    d = tmp_path / "models"
    d.mkdir()
    for ext in (".json", ".safetensors", ".head.safetensors"):
        os.symlink(os.path.join(os.path.dirname(model), "efficientnet_lite0" + ext), d / ("efficientnet_lite0" + ext))
    bad = dict(meta, dims=meta["dims"] + 1)  # the weights do not have that shape
    (d / "efficientnet_lite0.head.json").write_text(json.dumps(bad))
    code, _, err = run("embed", "--model", d / "efficientnet_lite0.json", PHOTOS[0])
    assert code == 2 and "projection" in err
    (d / "efficientnet_lite0.head.json").write_text(json.dumps(dict(meta, name="../evil")))
    code, _, err = run("embed", "--model", d / "efficientnet_lite0.json", PHOTOS[0])
    assert code == 2 and "head.json" in err
    # without a head file the plain pooled vector is used: the embedding of the previous versions
    os.remove(d / "efficientnet_lite0.head.json")
    code, out, _ = run("embed", "--model", d / "efficientnet_lite0.json", PHOTOS[0])
    assert code == 0 and out[0]["dims"] == meta["input_dims"]
    shutil.rmtree(d)
