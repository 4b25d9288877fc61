"""Retrieval quality regression on a small fixed set (the full measurement is bench/quality.py): the
shipped embedding must find the original of a transformed copy first, and put images of the same
openclipart category among each other's nearest neighbours, no worse than the floors below.

The set: the photos darknet and scikit-image ship, and every third clip-art image of three
openclipart categories; queries are five of the benchmark's transformations of each photo and of
40 clip-art images. The floors are the values measured when the shipped embedding was chosen
(see FLOORS), less a margin for the few images a decoder or library update may move."""
import hashlib
import io
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # sizes are checked from the header below

from paths import DARKNET, ROOT, SKIMAGE

sys.path.insert(0, os.path.join(ROOT, "bench"))
import quality  # noqa: E402  (the benchmark's transformations)

CLIPART = "/usr/share/openclipart/png"
CATEGORIES = ("animals", "food", "transportation")
TRANSFORMS = [t for t in quality.TRANSFORMS if t[0] in ("crop 70%", "JPEG q30", "flip", "caption + logo", "letterbox")]
# Measured on this set with the shipped embedding (efficientnet_lite0 + head pw512s-v1): copy
# recall@1 0.994, mAP 0.997, semantic P@10 0.381 (without the head: 0.991, 0.994, 0.360).
FLOORS = {"copy_recall_at_1": 0.985, "copy_map": 0.99, "semantic_p_at_10": 0.37}


def fixed_set():
    photos = sorted(os.path.join(DARKNET, f) for f in os.listdir(DARKNET) if f.endswith(".jpg"))
    photos += sorted(os.path.join(SKIMAGE, f) for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                                        "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg",
                                                        "coins.png", "camera.png", "page.png", "moon.png", "horse.png",
                                                        "grass.png", "gravel.png", "brick.png", "ihc.png", "cell.png"))
    clip = []
    for cat in CATEGORIES:
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(CLIPART, cat)) for f in fs
                       if f.endswith(".png"))
        clip += files[::3]
    seen, out = set(), []
    for p in photos + clip:
        data = open(p, "rb").read()
        h = hashlib.sha256(data).hexdigest()
        w, ht = Image.open(io.BytesIO(data)).size  # a few clip-art PNGs are over 100 MP: left out
        if h not in seen and w * ht <= 40_000_000 and min(w, ht) >= 32:
            seen.add(h)
            out.append(p)
    return out, len(photos)


def embed(binary, model, paths):
    p = subprocess.run([binary, "embed", "--model", model, "--batch", "8", *paths], capture_output=True, text=True)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert len(rows) == len(paths) and all("vector" in r for r in rows), p.stderr[-2000:]
    return np.array([r["vector"] for r in rows], dtype=np.float32)


@pytest.fixture(scope="module")
def measured(binary, model, tmp_path_factory):
    if not os.path.isdir(CLIPART):
        pytest.fail("openclipart-png is not installed (deps/apt-serve.txt)")
    coll, n_photos = fixed_set()
    rng = random.Random(5)
    originals = list(range(n_photos)) + rng.sample(range(n_photos, len(coll)), 40)
    work = tmp_path_factory.mktemp("quality")
    queries, target = [], []
    for i in originals:
        base = quality.flat(Image.open(coll[i]))
        for name, fn, fmt in TRANSFORMS:
            out = fn(base, random.Random(i))
            path = str(work / f"{i}_{TRANSFORMS.index((name, fn, fmt))}.jpg")
            out.save(path, quality=30 if fmt == "JPEG30" else 90)
            queries.append(path)
            target.append(i)
    c = embed(binary, model, coll)
    q = embed(binary, model, queries)
    sims = q @ c.T
    rank = (sims > sims[np.arange(len(q)), target][:, None]).sum(1) + 1
    labels = [os.path.relpath(os.path.dirname(p), CLIPART) if p.startswith(CLIPART) else None for p in coll]
    counts = {l: labels.count(l) for l in set(labels) if l}
    lab_idx = [i for i, l in enumerate(labels) if l and counts[l] >= 11]
    v = c[lab_idx]
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1)[:, :10]
    lab = np.array([labels[i] for i in lab_idx])
    return {"copy_recall_at_1": float((rank == 1).mean()), "copy_map": float((1.0 / rank).mean()),
            "semantic_p_at_10": float((lab[top] == lab[:, None]).mean()), "sizes": (len(coll), len(q), len(lab_idx))}


@pytest.mark.parametrize("metric", sorted(FLOORS))
def test_quality_floor(measured, metric):
    print(f"{metric}: {measured[metric]:.3f} (floor {FLOORS[metric]}; set {measured['sizes']})")
    assert measured[metric] >= FLOORS[metric], measured
