"""peers.py — the benches' throw-away virtual environments for pip-built peers, and the timing
loop they share.

Peers (hnswlib, FAISS, ONNX Runtime, OpenVINO, ...) are what a user who wants speed installs with
pip. They go into a venv under bench/out, made on first use with pinned versions and remade when
the pins change, never into the product or the system's Python."""
import os
import shutil
import subprocess
import time

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "out")


def venv_python(name, pins, explicit=None):
    """The python of bench/out/<name> with exactly `pins` installed (made on first use), or
    `explicit` when the caller names an interpreter of its own."""
    if explicit:
        return explicit
    venv = os.path.join(OUT, name)
    py = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "pins.txt")
    if not (os.path.exists(py) and os.path.exists(stamp) and open(stamp).read() == "\n".join(pins)):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", *pins], check=True)
        with open(stamp, "w") as f:
            f.write("\n".join(pins))
    return py


def time_loop(fn, seconds, warmup=20):
    """Calls fn() `warmup` times (OpenVINO's first runs are slow; every system gets the same),
    then for about `seconds`; returns (calls, elapsed). Shared by embed.py and, inside the venv,
    embed_peers.py, so ours and the peers are timed alike."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            return n, t
