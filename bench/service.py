#!/usr/bin/python3
"""bench/service.py — the HTTP service end to end, against named peers measured in the same run.

1. Ingest: images/s over HTTP (POST /image/add, 2 concurrent clients, 2 inference sessions)
   against `imgsearch embed` alone on the same files (2 processes, one per core: the same
   parallelism, no HTTP, no store). Target ratio >= 0.8.
2. Search latency at N images (default 10,000) under wrk, concurrency 8: p50 / p99 of
   POST /image/search?k=10, against the engine's bare inference time for one image (the floor
   any search pays), measured by bench_embed in the same run.

Both are measured for each inference precision (--precisions, default "fp32,auto": before and
after bf16 inference, same run), and the before/after ratios printed.

3. What access control costs (--access-images, default 2,000; 0 skips it): ingest and search as
   above, on the server as it comes (no key), with API keys required, and with keys over HTTPS
   (a certificate made by openssl for the run), same run, ratios against the open server.

Usage: /usr/bin/python3 bench/service.py [--images 10000] [--ingest 400] [--seconds 20] [--precisions fp32,auto]
       [--access-images 2000]
Needs: build/imgsearch, build/bench/bench_embed, Debian's wrk and openssl. Writes bench/out/service.json.
"""
import argparse
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import requests
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BIN = os.path.join(ROOT, "build", "imgsearch")
MODEL = os.path.join(ROOT, "models", "efficientnet_lite0.json")
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
DARKNET = "/usr/share/darknet/data"


def photos():
    names = [f"{SKIMAGE}/{n}" for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg",
                                        "motorcycle_left.png", "retina.jpg", "hubble_deep_field.jpg")]
    names += [f"{DARKNET}/{n}" for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg",
                                         "person.jpg", "scream.jpg")]
    return [Image.open(n).convert("RGB") for n in names]


def variants(n, seed, size=(320, 240)):
    """n distinct JPEGs: random crops of packaged photos with a coloured mark (deterministic)."""
    rnd, src = random.Random(seed), photos()
    for i in range(n):
        im = src[i % len(src)]
        w, h = im.size
        cw, ch = rnd.randrange(w // 2, w), rnd.randrange(h // 2, h)
        x, y = rnd.randrange(0, w - cw + 1), rnd.randrange(0, h - ch + 1)
        v = im.crop((x, y, x + cw, y + ch)).resize(size)
        ImageDraw.Draw(v).rectangle((rnd.randrange(size[0]), rnd.randrange(size[1]), size[0] - 1, size[1] - 1),
                                    fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        buf = io.BytesIO()
        v.save(buf, "JPEG", quality=88)
        yield buf.getvalue()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir, threads, precision, extra=(), tls=None):
    """A server; tls: (certificate, key) for HTTPS. No rate limit: the bench measures capacity."""
    port = free_port()
    log = open(os.path.join(OUT, "service-server.log"), "ab")
    tls_args = ["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []
    p = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", data_dir,
                          "--threads", str(threads), "--model", MODEL, "--precision", precision, "--rate-limit", "0",
                          *tls_args, *extra], stdout=log, stderr=log)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    for _ in range(600):
        try:
            requests.get(url + "/index/health", timeout=1, verify=tls[0] if tls else True)
            return p, url
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def multipart(blob, boundary="imgsearchbenchboundary"):
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + blob + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def ingest_http(url, blobs, clients=2, headers=None, cafile=None):
    """POST /image/add from `clients` threads over keep-alive connections. The bodies are encoded
    before the clock starts and sent with http.client, so the client's own CPU (it shares the two
    cores with the server) stays near 2 % of the machine instead of the ~5 % requests needs.
    cafile: the certificate to trust for an https:// url."""
    host, port = url.split("//")[1].split(":")
    chunks = [[multipart(b) for b in blobs[i::clients]] for i in range(clients)]
    errors = []

    def run(chunk):
        if url.startswith("https://"):
            conn = http.client.HTTPSConnection(host, int(port), timeout=60,
                                               context=ssl.create_default_context(cafile=cafile))
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        for body, ctype in chunk:
            conn.request("POST", "/image/add", body, {"Content-Type": ctype, **(headers or {})})
            r = conn.getresponse()
            text = r.read()
            if r.status != 201:
                errors.append(text)
        conn.close()
    t0 = time.monotonic()
    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return len(blobs) / (time.monotonic() - t0)


def embed_cli(files, precision, procs=2):
    t0 = time.monotonic()
    ps = [subprocess.Popen([BIN, "embed", "--model", MODEL, "--precision", precision, *files[i::procs]],
                           stdout=subprocess.DEVNULL)
          for i in range(procs)]
    for p in ps:
        if p.wait():
            raise RuntimeError("imgsearch embed failed")
    return len(files) / (time.monotonic() - t0)


def inference_ms(tensor_file, precision):
    out = subprocess.run([os.path.join(ROOT, "build", "bench", "bench_embed"), "infer", "--model", MODEL, "--threads", "1",
                          "--batch", "1", "--seconds", "5", "--input", tensor_file], capture_output=True, text=True,
                         check=True, env={**os.environ, "IMGSEARCH_PRECISION": precision}).stdout
    return 1000.0 / json.loads(out.strip().splitlines()[-1])["images_per_sec"]


WRK_LUA = """
local f = io.open(os.getenv("QUERY_IMAGE"), "rb")
local img = f:read("*all")
f:close()
local b = "imgsearchbenchboundary"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
wrk.body = "--" .. b .. "\\r\\nContent-Disposition: form-data; name=\\"image\\"; filename=\\"q.jpg\\"\\r\\n" ..
           "Content-Type: image/jpeg\\r\\n\\r\\n" .. img .. "\\r\\n--" .. b .. "--\\r\\n"
"""


def wrk_search(url, query_file, seconds, conns=8, headers=None):
    script = os.path.join(OUT, "search.lua")
    open(script, "w").write(WRK_LUA)
    env = dict(os.environ, QUERY_IMAGE=query_file)
    hdr = [a for k, v in (headers or {}).items() for a in ("-H", f"{k}: {v}")]
    out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "--latency", "-s", script, *hdr,
                          url + "/image/search?k=10"], capture_output=True, text=True, env=env, check=True).stdout
    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests_per_sec": rps,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def measure(precision, blobs, files, args, work):
    res = {"precision": precision}
    # 1. ingest: the same files, HTTP (2 clients, 2 workers) vs the CLI (2 processes)
    res["embed_cli_images_per_sec"] = embed_cli(files, precision)
    server, url = start_server(os.path.join(work, f"ingest-{precision}"), 2, precision)
    try:
        res["inference"] = requests.get(url + "/index/status").json()["result"]["inference"]
        res["http_ingest_images_per_sec"] = ingest_http(url, blobs[:args.ingest])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    # 2. search latency at N images
    server, url = start_server(os.path.join(work, f"search-{precision}"), 2, precision)
    try:
        t0 = time.monotonic()
        ingest_http(url, blobs[:args.images])
        res["load_seconds"] = time.monotonic() - t0
        query = os.path.join(work, "query.jpg")
        open(query, "wb").write(next(variants(1, seed=99)))
        res["search"] = wrk_search(url, query, args.seconds)
        res["collection"] = requests.get(url + "/images", params={"limit": 1}).json()["total"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    tens = os.path.join(work, f"t-{precision}")
    os.makedirs(tens)
    subprocess.run([BIN, "embed", "--model", MODEL, "--dump-input", tens, query], stdout=subprocess.DEVNULL,
                   check=True)
    res["inference_ms"] = inference_ms(os.path.join(tens, "0.f32"), precision)
    res["ingest_ratio"] = res["http_ingest_images_per_sec"] / res["embed_cli_images_per_sec"]
    return res


def measure_access(blobs, args, work):
    """Ingest and search on one collection served three ways: open, keys required, keys over HTTPS."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    query = os.path.join(work, "query.jpg")
    open(query, "wb").write(next(variants(1, seed=99)))
    n, runs = args.access_images, []
    for name, keyed, tls in (("open", False, None), ("keys", True, None), ("keys + TLS", True, (cert, key))):
        data = os.path.join(work, f"access-{len(runs)}")
        os.makedirs(data)
        headers = {}
        if keyed:
            made = subprocess.run([BIN, "keys", "create", "--scope", "write", "--data", data], capture_output=True,
                                  text=True, check=True)
            headers = {"X-API-Key": made.stdout.strip()}
        server, url = start_server(data, 2, "auto", ["--require-keys"] if keyed else [], tls)
        try:
            r = {"name": name, "ingest_images_per_sec": ingest_http(url, blobs[:n], headers=headers, cafile=cert)}
            r["search"] = wrk_search(url, query, args.seconds, headers=headers)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
        runs.append(r)
    return runs


def report_access(runs, args):
    base = runs[0]
    print(f"\n### access control: {args.access_images} images, --precision auto, same run\n")
    print("| server | ingest img/s | ratio | search req/s | ratio | search p50 ms | search p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["search"]
        print(f"| {r['name']} | {r['ingest_images_per_sec']:.1f} | "
              f"{r['ingest_images_per_sec'] / base['ingest_images_per_sec']:.2f}× | {s['requests_per_sec']:.1f} | "
              f"{s['requests_per_sec'] / base['search']['requests_per_sec']:.2f}× | {s['p50_ms']:.1f} | "
              f"{s['p99_ms']:.1f} |")
    print("wrk non-2xx responses: " + ", ".join(f"{r['name']} {r['search']['errors']}" for r in runs))


def report(res, args):
    s = res["search"]
    print(f"\n### inference: {res['inference']} (--precision {res['precision']})\n")
    print("| what | ours | peer | peer figure | ratio | target |")
    print("|---|---|---|---|---|---|")
    print(f"| ingest over HTTP, 2 clients, {args.ingest} images | {res['http_ingest_images_per_sec']:.1f} img/s | "
          f"`imgsearch embed` alone, 2 processes | {res['embed_cli_images_per_sec']:.1f} img/s | "
          f"{res['ingest_ratio']:.2f} | >= 0.8 |")
    print(f"| search p50 at {res['collection']} images, wrk -c 8 | {s['p50_ms']:.1f} ms | inference of one image "
          f"(bench_embed, 1 thread) | {res['inference_ms']:.1f} ms | {s['p50_ms'] / res['inference_ms']:.2f}x | |")
    print(f"| search p99 at {res['collection']} images, wrk -c 8 | {s['p99_ms']:.1f} ms | same | "
          f"{res['inference_ms']:.1f} ms | {s['p99_ms'] / res['inference_ms']:.2f}x | |")
    print(f"| search throughput | {s['requests_per_sec']:.1f} req/s | | | | |")
    print(f"\nloading {args.images} images took {res['load_seconds']:.0f} s; wrk non-2xx responses: {s['errors']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--ingest", type=int, default=400, help="images for the ingest comparison")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--precisions", default="fp32,auto", help="comma-separated --precision values to compare")
    ap.add_argument("--access-images", type=int, default=2000,
                    help="collection for the access-control comparison (0: skip it)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(dir=OUT, prefix="service-")
    runs, access = [], []
    try:
        blobs = list(variants(max(args.images, args.ingest, args.access_images), seed=7))
        files = []
        for i, b in enumerate(blobs[:args.ingest]):
            files.append(os.path.join(work, f"{i}.jpg"))
            open(files[-1], "wb").write(b)
        for precision in args.precisions.split(","):
            if precision:
                runs.append(measure(precision, blobs, files, args, work))
        if args.access_images:
            access = measure_access(blobs, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"imgsearch service bench — {os.cpu_count()} CPUs, EfficientNet-Lite0, 320x240 JPEG inputs")
    for res in runs:
        report(res, args)
    if len(runs) > 1:
        a, b = runs[0], runs[-1]
        print(f"\n### {b['precision']} ({b['inference']}) against {a['precision']} ({a['inference']}), same run\n")
        print("| what | before | after | ratio after/before |")
        print("|---|---|---|---|")
        for label, key in (("ingest over HTTP, img/s", "http_ingest_images_per_sec"),
                           ("search throughput, req/s", ("search", "requests_per_sec")),
                           ("search p50, ms", ("search", "p50_ms")),
                           ("search p99, ms", ("search", "p99_ms"))):
            va = a[key[0]][key[1]] if isinstance(key, tuple) else a[key]
            vb = b[key[0]][key[1]] if isinstance(key, tuple) else b[key]
            print(f"| {label} | {va:.1f} | {vb:.1f} | {vb / va:.2f}× |")
    if access:
        report_access(access, args)
    json.dump({"precisions": runs, "access": access}, open(os.path.join(OUT, "service.json"), "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
