#!/usr/bin/python3
"""bench/ann.py — our HNSW against the ANN libraries a user who wants speed installs with pip:
hnswlib, FAISS (IndexHNSWFlat and its 8-bit quantised IndexHNSWSQ) and usearch (f32 and i8), in a
throw-away virtual environment the bench makes (never the product's), plus exact search (FAISS
IndexFlatIP); same data, same M and ef_construction, same run; and the replaced system's approach
(PostgreSQL float8[] with a SQL cosine function) at 10,000 vectors.

Datasets (deterministic):
  clustered128   1,000,000 x 128  clustered synthetic (numpy seed 1; queries from the same clusters)
  clustered256     100,000 x 256  clustered synthetic (seed 5)
  gist960           60,000 x 960  clustered synthetic (seed 4), GIST-like width
  synthetic1280    200,000 x 1280 clustered synthetic (numpy seed 2)
  openclipart      every PNG of Debian's openclipart-png embedded by our engine (EfficientNet-Lite0),
                   500 of them held out as queries
For each: build time, memory, QPS at 1 and 2 threads at recall@10 >= 0.90 / 0.95 / 0.99 (the
smallest ef of the sweep reaching it), for ours float32 and int8 (re-ranked) and every peer, and
the ratio of ours to the best peer: float32 against the best float32 peer, int8 against the best
peer of any precision. Then building on 2 threads: ours (hnsw_add_batch, as the server builds)
against hnswlib's add_items(num_threads=2), with each graph's recall beside the 1-thread one. The
vector kernels in use (AVX-512/VNNI, AVX2, portable) are printed; IMGSEARCH_SIMD=avx2 measures our
fallback.

Usage: /usr/bin/python3 bench/ann.py [--datasets gist960,clustered256,...] [--scale 1.0] [--m 16]
                                     [--efc 200] [--no-postgres] [--peers-python PATH]
Needs: build/bench/bench_ann, build/imgsearch, openclipart-png, PyPI access for the peers' venv
(bench/out/peers-venv, made once, pinned versions in PEERS), postgresql + python3-psycopg2 (for the
PostgreSQL row). Writes bench/out/ann-<dataset>.json.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (bench/peers.py: the throw-away venv)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BENCH = os.path.join(ROOT, "build", "bench", "bench_ann")
BIN = os.path.join(ROOT, "build", "imgsearch")
MODEL = os.path.join(ROOT, "models", "efficientnet_lite0.json")
# Fine steps where the 0.95 and 0.99 crossings lie: with steps of 6 or more, a library that
# crosses just past a grid point is charged the next point's speed (session 23: our int8 graph
# read 0.944 at ef 10 and was measured at ef 16, though ef 11 already gives 0.956). The same
# grid applies to every peer.
EFS = [10, 11, 12, 13, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 192, 256, 512]
BUILD_EFS = [16, 32, 64, 128]  # the parallel-build rows: enough to compare recall with the serial build
# pip-built peers, pinned: what a user who wants speed installs (PyPI wheels built for x86-64 with
# run-time SIMD dispatch), installed into bench/out/peers-venv, never into the product
PEERS = ["hnswlib==0.8.0", "faiss-cpu==1.15.1", "usearch==2.26.6", "numpy==2.4.6"]
PEER_SYSTEMS = ("hnswlib", "faiss", "faiss_sq8", "usearch", "usearch_i8")
FLOAT_PEERS = ("hnswlib", "faiss", "usearch")
TARGETS = (0.90, 0.95, 0.99)
K = 10


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def normalise(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, nq, d, seed, clusters=1000, spread=0.6, decay=0.4):
    """n base vectors and nq queries drawn from the same Gaussian clusters (queries from their own
    random stream, so none is a base vector), normalised. The noise around a centre has a
    power-law spectrum (scale of axis i ~ (i+1)^-decay, total energy spread^2 * d), so a cluster
    has an intrinsic dimension of about 35 (decay 0.4 at 128-d, 0.5 at 1280-d), in the range of
    real descriptors and embeddings; isotropic noise would make every neighbour nearly equidistant
    (a worst case no real collection has), a steeper spectrum makes the search trivial."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    scales = np.arange(1, d + 1, dtype=np.float32) ** np.float32(-decay)
    scales *= np.float32(spread * np.sqrt(d) / np.linalg.norm(scales))
    qrng = np.random.default_rng(seed + 100)

    def draw(r, count):
        out = np.empty((count, d), dtype=np.float32)
        for lo in range(0, count, 100000):
            hi = min(count, lo + 100000)
            assign = r.integers(0, clusters, hi - lo)
            out[lo:hi] = centres[assign] + scales * r.standard_normal((hi - lo, d), dtype=np.float32)
        return normalise(out)

    return draw(rng, n), draw(qrng, nq)


def openclipart(work):
    files = sorted(glob.glob("/usr/share/openclipart/png/**/*.png", recursive=True))
    if not files:
        sys.exit("openclipart-png is not installed")
    cache = os.path.join(OUT, "openclipart-embeddings.npy")
    if os.path.exists(cache):
        x = np.load(cache)
        if len(x) == len(files):
            return x
    vecs = []
    for lo in range(0, len(files), 500):  # argument lists stay short
        res = subprocess.run([BIN, "embed", "--model", MODEL, "--threads", "2", *files[lo:lo + 500]],
                             capture_output=True, text=True)
        for line in res.stdout.splitlines():
            o = json.loads(line)
            vecs.append(o["vector"] if "vector" in o else None)
    dims = len(next(v for v in vecs if v))
    x = np.array([v if v else [0.0] * dims for v in vecs], dtype=np.float32)
    np.save(cache, x)
    return x


def dataset(name, scale):
    if name == "clustered128":
        n = int(1_000_000 * scale)
        return clustered(n, 1000, 128, 1)
    if name == "clustered256":
        return clustered(int(100_000 * scale), 1000, 256, 5)
    if name == "gist960":
        return clustered(int(60_000 * scale), 1000, 960, 4, clusters=500, spread=0.8, decay=0.5)
    if name == "synthetic1280":
        n = int(200_000 * scale)
        return clustered(n, 1000, 1280, 2, clusters=500, spread=0.8, decay=0.5)
    if name == "openclipart":
        x = openclipart(None)
        x = x[np.linalg.norm(x, axis=1) > 0]  # the few files the engine refused
        rng = np.random.default_rng(3)
        perm = rng.permutation(len(x))
        return normalise(x[perm[500:]]), normalise(x[perm[:500]])
    raise SystemExit(f"unknown dataset {name}")


def write_matrix(path, x, dtype=np.float32):
    with open(path, "wb") as f:
        np.array(x.shape, dtype=np.uint32).tofile(f)
        x.astype(dtype).tofile(f)


def peers_python(explicit=None):
    """The venv's python with the pinned peers (made on first use)."""
    return peers.venv_python("peers-venv", PEERS, explicit)


PY_PEERS = None  # set in main()


def ground_truth(base, queries):
    """Exact top-K by inner product, computed by FAISS IndexFlatIP in the peers' venv."""
    work = tempfile.mkdtemp(dir=OUT, prefix="truth-")
    try:
        write_matrix(os.path.join(work, "base.f32"), base)
        write_matrix(os.path.join(work, "q.f32"), queries)
        subprocess.run([PY_PEERS, __file__, "--child", "truth", "--work", work], check=True)
        return read_matrix(os.path.join(work, "truth.i32"), np.int32)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def recall(found, truth, base, queries):
    """recall@K by distance (ann-benchmarks' way): a result counts when it is at least as near as
    the K-th true neighbour, so exact duplicates in the data are not counted as misses."""
    found = np.asarray(found)[:, :K]
    kth = np.einsum("qd,qd->q", queries[:len(found)], base[np.asarray(truth)[:len(found), K - 1]])
    sims = np.einsum("qd,qkd->qk", queries[:len(found)], base[np.clip(found, 0, len(base) - 1)])
    ok = (sims >= kth[:, None] - 1e-5) & (found >= 0)
    return float(ok.sum() / (len(found) * K))


def timed_qps(fn, nq, min_s=1.0):
    t0, done = time.perf_counter(), 0
    while True:
        out = fn()
        done += nq
        t = time.perf_counter() - t0
        if t >= min_s:
            return out, done / t


def read_matrix(path, dtype=np.float32):
    with open(path, "rb") as f:
        n, d = np.fromfile(f, dtype=np.uint32, count=2)
        return np.fromfile(f, dtype=dtype, count=int(n) * int(d)).reshape(int(n), int(d))


def run_child(peer, files, m, efc):
    """Each peer builds in a fresh process, so its memory is its own (RSS after build minus RSS
    with the data loaded), not whatever the allocator kept from earlier steps."""
    out = subprocess.run([PY_PEERS, __file__, "--child", peer, "--work", files["dir"], "--m", str(m),
                          "--efc", str(efc)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_main(peer, work, m, efc):
    base = read_matrix(os.path.join(work, "base.f32"))
    queries = read_matrix(os.path.join(work, "q.f32"))
    if peer == "truth":
        import faiss
        faiss.omp_set_num_threads(2)
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        write_matrix(os.path.join(work, "truth.i32"), index.search(queries, K)[1].astype(np.int32), np.int32)
        return
    truth = read_matrix(os.path.join(work, "truth.i32"), np.int32)
    if peer == "faiss_flat":
        print(json.dumps(run_faiss_flat(base, queries, truth)))
        return
    fn = {"hnswlib": run_hnswlib, "hnswlib_2t": lambda *a: run_hnswlib(*a, build_threads=2, efs=BUILD_EFS),
          "faiss": run_faiss, "faiss_sq8": run_faiss_sq8, "usearch": run_usearch,
          "usearch_i8": run_usearch_i8}[peer]
    res = fn(base, queries, truth, m, efc)
    res["version"] = peer_version(peer)
    print(json.dumps(res))


def peer_version(peer):
    from importlib.metadata import version
    return version({"hnswlib": "hnswlib", "hnswlib_2t": "hnswlib", "faiss": "faiss-cpu",
                    "faiss_sq8": "faiss-cpu"}.get(peer, "usearch"))


def run_hnswlib(base, queries, truth, m, efc, build_threads=1, efs=EFS):
    import hnswlib
    before = rss()
    t0 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), ef_construction=efc, M=m, random_seed=100)
    index.add_items(base, np.arange(len(base)), num_threads=build_threads)
    res = {"build_seconds": time.perf_counter() - t0, "memory_bytes": rss() - before, "build_threads": build_threads,
           "sweep": []}
    for ef in efs:
        index.set_ef(max(ef, K))
        for threads in (1, 2):
            labels, qps = timed_qps(lambda: index.knn_query(queries, k=K, num_threads=threads)[0], len(queries))
            res["sweep"].append({"ef": max(ef, K), "threads": threads, "recall": recall(labels, truth, base, queries), "qps": qps})
    del index
    return res


def run_faiss(base, queries, truth, m, efc, sq8=False):
    import faiss
    # FAISS's HNSW insert is several times slower than the others single-threaded; it builds with
    # both cores so the bench ends in reasonable time (its row says so)
    faiss.omp_set_num_threads(2)
    before = rss()
    t0 = time.perf_counter()
    if sq8:  # FAISS's best quantised HNSW at this size: 8-bit scalar codes, distances on the codes
        index = faiss.IndexHNSWSQ(base.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.train(base)
    else:
        index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    index.add(base)
    res = {"build_seconds": time.perf_counter() - t0, "memory_bytes": rss() - before, "build_threads": 2, "sweep": []}
    for ef in EFS:
        index.hnsw.efSearch = max(ef, K)
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            labels, qps = timed_qps(lambda: index.search(queries, K)[1], len(queries))
            res["sweep"].append({"ef": max(ef, K), "threads": threads, "recall": recall(labels, truth, base, queries), "qps": qps})
    del index
    return res


def run_faiss_sq8(base, queries, truth, m, efc):
    return run_faiss(base, queries, truth, m, efc, sq8=True)


def run_usearch(base, queries, truth, m, efc, dtype="f32"):
    from usearch.index import Index
    before = rss()
    t0 = time.perf_counter()
    index = Index(ndim=base.shape[1], metric="ip", dtype=dtype, connectivity=m, expansion_add=efc)
    index.add(np.arange(len(base)), base, threads=1)
    res = {"build_seconds": time.perf_counter() - t0, "memory_bytes": rss() - before, "build_threads": 1, "sweep": []}
    for ef in EFS:
        index.expansion_search = max(ef, K)
        for threads in (1, 2):
            labels, qps = timed_qps(lambda: index.search(queries, K, threads=threads).keys, len(queries))
            res["sweep"].append({"ef": max(ef, K), "threads": threads, "recall": recall(labels, truth, base, queries), "qps": qps})
    del index
    return res


def run_usearch_i8(base, queries, truth, m, efc):
    return run_usearch(base, queries, truth, m, efc, dtype="i8")


def run_faiss_flat(base, queries, truth):
    import faiss
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    out = []
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        nq = min(len(queries), 200)
        labels, qps = timed_qps(lambda: index.search(queries[:nq], K)[1], nq)
        out.append({"threads": threads, "qps": qps, "recall": recall(labels, truth[:nq], base, queries)})
    return out


def run_ours(files, storage, m, efc, snapshot, filters, build_threads=1, efs=EFS):
    cmd = [BENCH, "--base", files["base"], "--queries", files["queries"], "--truth", files["truth"], "--m", str(m),
           "--efc", str(efc), "--storage", storage, "--efs", ",".join(map(str, efs)),
           "--build-threads", str(build_threads)]
    if snapshot:
        cmd += ["--snapshot", os.path.join(files["dir"], "snap.hnsw")]
    if filters:
        cmd += ["--filters"]
    elif storage == "int8":
        cmd += ["--flat-queries", "0"]
    lines = [json.loads(line) for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()]
    build = next(x for x in lines if x["what"] == "build")
    return {"build_seconds": build["seconds"], "memory_bytes": build["memory_bytes"],
            "rss_delta_bytes": build["rss_delta_bytes"], "build_threads": build_threads,
            "sweep": [x for x in lines if x["what"] == "search"],
            "snapshot": next((x for x in lines if x["what"] == "snapshot"), None),
            "filtered": [x for x in lines if x["what"] == "filtered"],
            "brute_force": [x for x in lines if x["what"] == "brute_force"]}


def simd_level():
    """The vector kernels bench_ann uses (its first line says)."""
    out = subprocess.run([BENCH, "--cpu"], capture_output=True, text=True).stdout.strip()
    return json.loads(out)["dot_level"] if out else "unknown"


def at_target(sweep, target, threads):
    """QPS at the smallest ef of the sweep whose recall reaches the target (None if none does)."""
    for row in sorted((r for r in sweep if r["threads"] == threads), key=lambda r: r["ef"]):
        if row["recall"] >= target:
            return row
    return None


def postgres_10k(base, queries, truth_fn):
    """The replaced system's approach: vectors as float8[] ranked by a SQL cosine function."""
    import psycopg2
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    work = tempfile.mkdtemp(prefix="imgsearch-pg-")
    os.chmod(work, 0o777)
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(user + [f"{bindir}/initdb", "-D", f"{work}/db", "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    subprocess.run(user + [f"{bindir}/pg_ctl", "-D", f"{work}/db", "-o", f"-k {work} -p 55432 -c listen_addresses=''",
                           "-l", f"{work}/log", "-w", "start"], check=True, capture_output=True)
    try:
        n = min(10000, len(base))
        sub = base[:n]
        truth = truth_fn(sub, queries)
        conn = psycopg2.connect(host=work, port=55432, user="postgres", dbname="postgres")
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE TABLE vec(id int PRIMARY KEY, v float8[] NOT NULL)")
        cur.execute("CREATE FUNCTION cosine(a float8[], b float8[]) RETURNS float8 AS $$"
                    " SELECT sum(x * y) / (sqrt(sum(x * x)) * sqrt(sum(y * y))) FROM unnest(a, b) AS t(x, y)"
                    " $$ LANGUAGE sql IMMUTABLE PARALLEL SAFE")
        from psycopg2.extras import execute_values
        execute_values(cur, "INSERT INTO vec VALUES %s", [(i, [float(v) for v in row]) for i, row in enumerate(sub)],
                       page_size=500)
        cur.execute("ANALYZE vec")
        nq = 10
        found = []
        t0 = time.perf_counter()
        for q in queries[:nq]:
            cur.execute("SELECT id FROM vec ORDER BY cosine(v, %s::float8[]) DESC LIMIT %s", ([float(v) for v in q], K))
            found.append([r[0] for r in cur.fetchall()])
        qps = nq / (time.perf_counter() - t0)
        conn.close()
        return {"n": n, "dims": base.shape[1], "qps": qps, "recall": recall(found, truth[:nq], sub, queries),
                "threads": 1}
    finally:
        subprocess.run(user + [f"{bindir}/pg_ctl", "-D", f"{work}/db", "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def ours_flat_10k(files_dir, base, queries, truth_fn):
    sub = base[:10000]
    truth = truth_fn(sub, queries)
    paths = {"dir": files_dir, "base": os.path.join(files_dir, "b10k.f32"), "queries": os.path.join(files_dir, "q.f32"),
             "truth": os.path.join(files_dir, "t10k.i32")}
    write_matrix(paths["base"], sub)
    write_matrix(paths["truth"], truth.astype(np.int32), np.int32)
    cmd = [BENCH, "--base", paths["base"], "--queries", paths["queries"], "--truth", paths["truth"], "--efs", "64",
           "--threads", "1"]
    lines = [json.loads(l) for l in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()]
    return next(x for x in lines if x["what"] == "brute_force")


def report(name, shape, res, pg):
    mib = 1 << 20
    n = shape[0]
    systems = ("ours_float32", "ours_int8") + PEER_SYSTEMS
    print(f"\n## {name}: {shape[0]:,} x {shape[1]}, M={res['m']}, ef_construction={res['efc']}, k={K}\n")
    print("| system | version | build s (threads) | RSS growth MiB | bytes/vector | accounted by the index |")
    print("|---|---|---|---|---|---|")
    for sysname in systems:
        r = res[sysname]
        grown = r.get("rss_delta_bytes", r["memory_bytes"])
        own = f"{r['memory_bytes'] / n:.0f} B/vector" if "rss_delta_bytes" in r else "-"
        print(f"| {sysname} | {r.get('version', 'this tree')} | {r['build_seconds']:.1f} ({r['build_threads']}) | "
              f"{grown / mib:.1f} | {grown / n:.0f} | {own} |")
    print("\n| recall@10 >= | threads | " + " | ".join(f"{x} QPS (ef)" for x in systems) +
          " | ours f32 / best f32 peer | ours int8 / best peer |")
    print("|---|---|" + "---|" * (len(systems) + 2))
    for target in TARGETS:
        for threads in (1, 2):
            rows = {x: at_target(res[x]["sweep"], target, threads) for x in systems}
            cells = [f"{rows[x]['qps']:.0f} ({rows[x]['ef']})" if rows[x] else "not reached" for x in systems]

            def vs_best(ours, peers):
                got = [(rows[p]["qps"], p) for p in peers if rows[p]]
                if not rows[ours] or not got:
                    return "-"
                qps, who = max(got)
                return f"{rows[ours]['qps'] / qps:.2f}x {who}"
            print(f"| {target:.2f} | {threads} | " + " | ".join(cells) +
                  f" | {vs_best('ours_float32', FLOAT_PEERS)} | {vs_best('ours_int8', PEER_SYSTEMS)} |")
    bf = res["ours_float32"]["brute_force"]
    if bf:
        fb = res["faiss_flat"]
        print("\nbrute force (exact): " + ", ".join(
            f"ours {b['qps']:.0f} QPS / FAISS IndexFlatIP {f['qps']:.0f} QPS at {b['threads']} thread(s)"
            for b, f in zip(bf, fb)))
    snap = res["ours_float32"].get("snapshot")
    if snap:
        print(f"snapshot of {snap['n']:,} vectors: save {snap['save_seconds']:.2f} s, load {snap['load_seconds']:.2f} s")
    if res["ours_float32"]["filtered"]:
        ef = res["ours_float32"]["filtered"][0].get("ef")
        print(f"\n| filter matches (ef {ef}) | graph walk QPS (recall) | exact over matching ids QPS (recall) "
              "| planner (estimated matches) | chosen path QPS (recall) |")
        print("|---|---|---|---|---|")
        for f in res["ours_float32"]["filtered"]:
            path = "exact_ids" if f["planner"] == "exact" else "graph"
            print(f"| {f['fraction'] * 100:g}% | {f['graph_qps']:.0f} ({f['graph_recall']:.3f}) | "
                  f"{f['exact_ids_qps']:.0f} ({f['exact_ids_recall']:.3f}) | {f['planner']} ({f['estimated_fraction'] * 100:.1f}%) "
                  f"| {f[path + '_qps']:.0f} ({f[path + '_recall']:.3f}) |")
    report_build(res)
    if pg:
        print(f"\nPostgreSQL {pg['n']:,} x {pg['dims']} float8[] + SQL cosine: {pg['qps']:.2f} QPS (recall {pg['recall']:.3f}); "
              f"ours exact scan on the same 10,000: {res['flat10k']['qps']:.0f} QPS -> {res['flat10k']['qps'] / pg['qps']:.0f}x")


def report_build(res):
    """Building on 1 and 2 threads, ours against hnswlib, with the recall each graph gives."""
    def rec(r, ef):
        row = next((x for x in r["sweep"] if x["ef"] == ef and x["threads"] == 1), None)
        return f"{row['recall']:.3f}" if row else "-"
    print("\n| build | 1 thread s | 2 threads s | speed-up | recall@10 at ef 32 / 64 (1-thread graph; 2-thread graph) |")
    print("|---|---|---|---|---|")
    for ours, two, label in (("ours_float32", "ours_float32_2t", "ours"), ("hnswlib", "hnswlib_2t", "hnswlib")):
        a, b = res[ours], res[two]
        print(f"| {label} | {a['build_seconds']:.1f} | {b['build_seconds']:.1f} | {a['build_seconds'] / b['build_seconds']:.2f}x | "
              f"{rec(a, 32)} / {rec(a, 64)}; {rec(b, 32)} / {rec(b, 64)} |")
    o1, o2, h1, h2 = (res[x]["build_seconds"] for x in ("ours_float32", "ours_float32_2t", "hnswlib", "hnswlib_2t"))
    print(f"\nbuild speed, ours / hnswlib: 1 thread {h1 / o1:.2f}x, 2 threads {h2 / o2:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="clustered128,synthetic1280,openclipart")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the synthetic sizes (quick runs)")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--peers-python", help="a python with the peers installed (default: bench/out/peers-venv, made once)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args.child, args.work, args.m, args.efc)
    os.makedirs(OUT, exist_ok=True)
    global PY_PEERS
    PY_PEERS = peers_python(args.peers_python)
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"))
    print(f"imgsearch ANN bench — {os.cpu_count()} CPUs ({have}); our kernels: {simd_level()}; "
          f"recall@{K} against exact ground truth (FAISS IndexFlatIP)")
    for name in args.datasets.split(","):
        base, queries = dataset(name, args.scale)
        truth = ground_truth(base, queries)
        work = tempfile.mkdtemp(dir=OUT, prefix=f"ann-{name}-")
        try:
            files = {"dir": work, "base": os.path.join(work, "base.f32"), "queries": os.path.join(work, "q.f32"),
                     "truth": os.path.join(work, "truth.i32")}
            write_matrix(files["base"], base)
            write_matrix(files["queries"], queries)
            write_matrix(files["truth"], truth.astype(np.int32), np.int32)
            res = {"m": args.m, "efc": args.efc}
            res["ours_float32"] = run_ours(files, "float32", args.m, args.efc, snapshot=True, filters=name != "synthetic1280")
            res["ours_int8"] = run_ours(files, "int8", args.m, args.efc, snapshot=False, filters=False)
            res["ours_float32_2t"] = run_ours(files, "float32", args.m, args.efc, snapshot=False, filters=False,
                                              build_threads=2, efs=BUILD_EFS)
            res["hnswlib_2t"] = run_child("hnswlib_2t", files, args.m, args.efc)
            for peer in PEER_SYSTEMS:
                res[peer] = run_child(peer, files, args.m, args.efc)
            res["faiss_flat"] = run_child("faiss_flat", files, args.m, args.efc)
            pg = None
            if not args.no_postgres and name == "synthetic1280":  # 1280-d, like the real embeddings
                res["flat10k"] = ours_flat_10k(work, base, queries, ground_truth)
                pg = res["postgres"] = postgres_10k(base, queries, ground_truth)
            report(name, base.shape, res, pg)
            with open(os.path.join(OUT, f"ann-{name}.json"), "w") as f:
                json.dump(res, f, indent=1)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
