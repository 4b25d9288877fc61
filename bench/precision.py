#!/usr/bin/python3
"""precision.py — how far each reduced precision strays from fp32, on every photo Debian packages
ship (tools/packaged_images.py: darknet, scikit-image and the desktop wallpapers, ~130 distinct).

For ours (fp32 on XNNPACK, bf16 on oneDNN) and the inference peers (ONNX Runtime fp32, OpenVINO f32
and bf16, in bench/embed.py's throw-away venv), on the same preprocessed tensors, one image at a
time on one thread, against PyTorch fp32 (the reference definition and weights):
  - the pooled features (what the embedding is made of): cosine to the reference's, the lowest,
    the mean and how many fall below 0.995;
  - top-1 agreement, and for each disagreement the reference's margin between its first two
    classes (a near tie flips under any rounding); the largest |Δlogit|;
  - for ours, also the stored vector (after the head's whitening, which magnifies small
    differences): cosine of bf16's to fp32's.
A bench: it reports, it judges nothing. Writes bench/out/precision.json.

    /usr/bin/python3 bench/precision.py [--peers-python PY]   (after building; about a minute)
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed  # noqa: E402  (the reference model, our tensors, the peers' venv)
import peers  # noqa: E402

sys.path.insert(0, os.path.join(embed.ROOT, "tools"))
from packaged_images import packaged_photos  # noqa: E402

np, torch = embed.np, embed.torch
NEAR_TIE = 0.2  # logits; a flip within this margin is rounding, not a different answer


class WithFeatures(torch.nn.Module):
    """The reference network answering its logits and its pooled features."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.extract_features(x).mean((2, 3))
        return self.net._fc(f), f


def export_onnx(net):
    path = os.path.join(embed.OUT, "efficientnet_lite0_features.onnx")
    if not os.path.exists(path):
        torch.onnx.export(WithFeatures(net), torch.zeros(1, 3, embed.SIZE, embed.SIZE), path, opset_version=13,
                          input_names=["input"], output_names=["logits", "features"])
    return path


def ours(bench, model, path, n, precision):
    """{"logits", "vectors", "features"} of our engine for the n tensors in `path`, or None when
    this CPU cannot run `precision`."""
    files = {k: f"{path}.{k}" for k in ("logits", "vectors", "features")}
    p = subprocess.run([bench, "infer", "--model", model, "--threads", "1", "--batch", str(n), "--seconds", "0.001",
                        "--input", path] + [a for k, f in files.items() for a in (f"--{k}", f)],
                       capture_output=True, text=True, env={**os.environ, "IMGSEARCH_PRECISION": precision})
    if p.returncode != 0:
        print(f"  ours {precision}: not run ({p.stderr.strip()})", file=sys.stderr)
        return None
    got = {}
    for k, f in files.items():
        got[k] = np.fromfile(f, dtype=np.float32).reshape(n, -1)
        os.remove(f)
    return got


def cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": float(c.min()), "mean": float(c.mean()), "below_0.995": int((c < 0.995).sum()),
            "lowest": int(c.argmin())}


def compare(ref, got, names):
    top_ref, top_got = ref["logits"].argmax(1), got["logits"].argmax(1)
    srt = np.sort(ref["logits"], 1)
    margin = srt[:, -1] - srt[:, -2]
    flips = [{"image": names[i], "reference_margin": float(margin[i]), "reference_class": int(top_ref[i]),
              "class": int(top_got[i])} for i in np.nonzero(top_ref != top_got)[0]]
    feat = cosines(ref["features"], got["features"])
    feat["lowest"] = names[feat["lowest"]]
    return {"top1_agree": int((top_ref == top_got).sum()), "of": len(top_ref),
            "max_abs_logit_diff": float(np.abs(ref["logits"] - got["logits"]).max()), "flips": flips,
            "flips_beyond_near_tie": sum(f["reference_margin"] > NEAR_TIE for f in flips),
            "features_cosine": feat}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(embed.ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(embed.ROOT, "models", "efficientnet_lite0.json"))
    ap.add_argument("--peers-python", help="a python with onnxruntime and openvino (default: embed.py's venv)")
    a = ap.parse_args()
    imgsearch, bench = os.path.join(a.build, "imgsearch"), os.path.join(a.build, "bench", "bench_embed")
    photos = [p["path"] for p in packaged_photos()]
    names = [os.path.relpath(p, "/usr") for p in photos]
    print(f"{len(photos)} photos: preprocessing ...", file=sys.stderr)
    x = embed.dump_inputs(imgsearch, a.model, photos)
    path = os.path.join(embed.OUT, "precision-inputs.f32")
    x.tofile(path)

    print("PyTorch fp32 (the reference) ...", file=sys.stderr)
    net = embed.torch_model()
    ref_net = WithFeatures(net).eval()
    torch.set_num_threads(2)
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        parts = [ref_net(t[i:i + 16]) for i in range(0, len(t), 16)]
    ref = {"logits": np.concatenate([p[0].numpy() for p in parts]),
           "features": np.concatenate([p[1].numpy() for p in parts])}

    res = {"photos": len(photos), "near_tie": NEAR_TIE, "systems": {}}
    mine = {}
    for prec in ("fp32", "bf16"):
        print(f"ours {prec} ...", file=sys.stderr)
        got = ours(bench, a.model, path, len(photos), prec)
        if got:
            res["systems"][f"ours {prec}"] = compare(ref, got, names)
            mine[prec] = got["vectors"]
    if len(mine) == 2:
        vec = cosines(mine["fp32"], mine["bf16"])
        vec["lowest"] = names[vec["lowest"]]
        res["systems"]["ours bf16"]["vector_cosine_to_ours_fp32"] = vec

    print("ONNX Runtime and OpenVINO (venv) ...", file=sys.stderr)
    peers_py = peers.venv_python("infer-peers-venv", embed.INFER_PEERS, a.peers_python)
    out = os.path.join(embed.OUT, "precision-peers.json")
    subprocess.run([peers_py, os.path.join(embed.ROOT, "bench", "embed_peers.py"), "--check", export_onnx(net),
                    path, out], check=True)
    for name, got in json.load(open(out)).items():
        got = {k: np.array(v, dtype=np.float32) for k, v in got.items()}
        res["systems"][name] = compare(ref, got, names)
    os.remove(path)

    print(f"\nPrecision check — {len(photos)} packaged photos, one image at a time, one thread, "
          f"against PyTorch fp32\n")
    print("| system | pooled features: cosine min / mean, below 0.995 | top-1 agrees | flips beyond a near tie "
          f"(margin > {NEAR_TIE}) | max abs Δlogit |")
    print("|---|---|---|---|---|")
    for name, r in res["systems"].items():
        c = r["features_cosine"]
        print(f"| {name} | {c['min']:.4f} / {c['mean']:.4f}, {c['below_0.995']} | {r['top1_agree']}/{r['of']} | "
              f"{r['flips_beyond_near_tie']} | {r['max_abs_logit_diff']:.3f} |")
    v = res["systems"].get("ours bf16", {}).get("vector_cosine_to_ours_fp32")
    if v:
        print(f"\nOur stored vectors (after the head), bf16 against fp32: cosine min {v['min']:.4f} "
              f"({v['lowest']}), mean {v['mean']:.4f}, {v['below_0.995']} below 0.995")
    for name, r in res["systems"].items():
        c = r["features_cosine"]
        if c["min"] < 0.999:
            print(f"- {name}: lowest features cosine {c['min']:.4f} on {c['lowest']}")
        for f in r["flips"]:
            print(f"- {name}: {f['image']}: class {f['reference_class']} → {f['class']} "
                  f"(reference margin {f['reference_margin']:.3f})")
    with open(os.path.join(embed.OUT, "precision.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"\nwritten {os.path.relpath(os.path.join(embed.OUT, 'precision.json'), embed.ROOT)}")


if __name__ == "__main__":
    main()
