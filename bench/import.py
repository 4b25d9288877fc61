#!/usr/bin/python3
"""bench/import.py — `imgsearch import` against the server's own ingest rate, same run.

N distinct JPEGs (default 2,000: crops of packaged photos with a coloured mark, 320×240, made by
bench/service.py's generator) are written to a folder. Then, per round, on fresh servers started
alike (2 inference sessions, no rate limit):

  peer:  the server's own ingest rate as bench/service.py measures it: POST /image/add from
         --jobs Python threads over kept-alive connections, bodies encoded before the clock starts
         (the ceiling a client can reach: no file reading, no hashing, no lookups);
  ours:  `imgsearch import --jobs N FOLDER` from start to exit (walk, hashing, lookups, reading the
         files, sending, the summary), the wall time of the process;
  rerun: the same command again on the now full server: the cost of the resumability (walk, hash,
         one lookup per 256 files, nothing sent).

Figures are the best of --rounds; the ratio is ours / peer (1.0 = the importer costs nothing over
the server's own rate). Results go to bench/out/import.json.

Usage: /usr/bin/python3 bench/import.py [--images 2000] [--jobs 4] [--rounds 2] [--bin build/imgsearch]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import service  # noqa: E402  (bench/service.py: image generator, server start, Python ingest)


def cpu_busy_share(seconds=1.0):
    """The share of the machine's CPU time that was busy over a short sample (others' work)."""
    def snap():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def stop(server):
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=120)


def run_import(binary, url, folder, jobs):
    t0 = time.monotonic()
    p = subprocess.run([binary, "import", "--server", url, "--jobs", str(jobs), folder], capture_output=True,
                       text=True, timeout=3600)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"imgsearch import exited with {p.returncode}: {p.stderr[-2000:]}")
    counts = dict(re.findall(r"^([a-z ,-]+): (\d+)$", p.stdout, re.M))
    return wall, {k: int(v) for k, v in counts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bin", default=service.BIN)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    service.BIN = os.path.abspath(args.bin)
    os.makedirs(service.OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="imgsearch-import-bench-")
    try:
        folder = os.path.join(work, "photos")
        os.makedirs(folder)
        blobs = list(service.variants(args.images, seed=17))
        for i, b in enumerate(blobs):
            sub = os.path.join(folder, f"d{i // 500:02d}")  # a few folders, as photo libraries have
            os.makedirs(sub, exist_ok=True)
            open(os.path.join(sub, f"img{i:05d}.jpg"), "wb").write(b)
        busy_before = cpu_busy_share()
        rounds = []
        for r in range(args.rounds):
            res = {}
            server, url = service.start_server(os.path.join(work, f"peer-{r}"), 2, args.precision)
            try:
                res["peer_images_per_sec"] = service.ingest_http(url, blobs, clients=args.jobs)
            finally:
                stop(server)
            server, url = service.start_server(os.path.join(work, f"ours-{r}"), 2, args.precision)
            try:
                wall, counts = run_import(service.BIN, url, folder, args.jobs)
                assert counts["imported"] == args.images, counts
                res["import_seconds"] = wall
                res["import_images_per_sec"] = args.images / wall
                wall, counts = run_import(service.BIN, url, folder, args.jobs)
                assert counts["already stored"] == args.images and counts["imported"] == 0, counts
                res["rerun_seconds"] = wall
                res["rerun_images_per_sec"] = args.images / wall
            finally:
                stop(server)
            rounds.append(res)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()), flush=True)
        best = {k: (min if k.endswith("seconds") else max)(x[k] for x in rounds) for k in rounds[0]}
        out = {"images": args.images, "jobs": args.jobs, "rounds": rounds, "best": best, "cpus": os.cpu_count(),
               "cpu_busy_before": busy_before}
        json.dump(out, open(os.path.join(service.OUT, "import.json"), "w"), indent=1)
        ratio = best["import_images_per_sec"] / best["peer_images_per_sec"]
        print(f"\n{args.images} images (320x240 JPEG), --jobs {args.jobs}, server with 2 inference sessions, "
              f"best of {args.rounds}, {os.cpu_count()} CPUs ({busy_before:.0%} busy with other work before)\n")
        print("| what | images/s | ratio |")
        print("|---|---|---|")
        print(f"| `imgsearch import` (wall time of the command) | {best['import_images_per_sec']:.1f} | {ratio:.2f} |")
        print(f"| server's own ingest (Python, {args.jobs} threads, pre-encoded bodies) | "
              f"{best['peer_images_per_sec']:.1f} | 1.00 |")
        print(f"| `imgsearch import` again, all stored (walk + hash + lookup) | {best['rerun_images_per_sec']:.0f} | "
              f"{best['rerun_images_per_sec'] / best['peer_images_per_sec']:.1f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
