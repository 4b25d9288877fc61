#!/usr/bin/python3
"""bench/soak.py — crash soak and memory run of the HTTP service (not CI: it takes long).

Phase 1, crash cycles (--cycles, default 100): writers add distinct images with metadata, delete
some of their own earlier ones and replace their metadata; readers search by image and by id,
list and get, checking what they see against what was acknowledged. At a random moment
(--kill-min..--kill-max s) the server is killed with SIGKILL, restarted on the same data, and the
time until /index/health answers true is the restart time. Then, with nothing else running:
  - every write answered 2xx (acknowledged) holds: each acknowledged add is listed with its name
    and last acknowledged metadata, its bytes and its record come back by id (the adds of this
    cycle, plus a sample), and it is found by its own image at rank 1 (a sample each cycle, and
    every one at the end); each acknowledged delete is gone from get, list, search and similar;
  - a write that got no answer (the kill) is "in doubt": it may or may not have happened, but it
    must have happened whole (an add: a row with its name, metadata, bytes and vector, or nothing
    at all, its blob included; a metadata write: the old or the new document);
  - health is true; /index/status count = /images total = rows in the store = expected set;
  - the store's rows and the blob files agree (no orphan blob, none missing, no temp file left):
    <data>/imgsearch.db is read with Python's sqlite3 in read-only mode (WAL readers do not
    disturb the server, and no write is under way while it is read), or with --store postgresql
    the imgsearch.blobs table (refs = the rows naming each blob).
Phase 2, memory (--adds, default 100,000): one server, --writers clients adding distinct images
(a pool of a few hundred, each upload made unique by a JPEG comment or PNG tEXt chunk carrying a
counter) and one reader, VmRSS (/proc) and the index's memory_bytes (/index/status) sampled every
--sample-seconds; then the server is stopped and started again on the same data, so that the
memory of a fresh process holding the same collection is the yardstick for what the run kept.

Usage: /usr/bin/python3 bench/soak.py [--phase crash|rss|both] [--cycles 100] [--adds 100000]
       [--writers 3] [--readers 2] [--binary build/imgsearch] [--store sqlite|postgresql]
Exit status 1 when a lost write or an inconsistency was found (the data directory is kept).
"""
import argparse
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import numpy as np
import requests
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
MODEL = os.path.join(ROOT, "models", "efficientnet_lite0.json")
TIMEOUT = 60  # seconds for any one request: a server that hangs is a finding, not a wait


# ---- images ---------------------------------------------------------------------------------

def make_image(seed):
    """A small distinct picture: 64-160 px, random shapes over a gradient, noise; JPEG or PNG."""
    rnd = random.Random(seed)
    w, h = rnd.randint(64, 160), rnd.randint(64, 160)
    c0 = np.array([rnd.randrange(256) for _ in range(3)], np.float32)
    c1 = np.array([rnd.randrange(256) for _ in range(3)], np.float32)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    arr = np.broadcast_to(c0 + (c1 - c0) * t, (h, w, 3))
    im = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(rnd.randint(3, 8)):
        box = sorted(rnd.sample(range(w), 2)), sorted(rnd.sample(range(h), 2))
        xy = (box[0][0], box[1][0], box[0][1], box[1][1])
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        kind = rnd.randrange(3)
        if kind == 0:
            d.rectangle(xy, fill=colour)
        elif kind == 1:
            d.ellipse(xy, fill=colour)
        else:
            d.line(xy, fill=colour, width=rnd.randint(1, 6))
    noise = np.random.default_rng(seed).integers(-14, 15, (h, w, 3))
    im = Image.fromarray(np.clip(np.asarray(im, np.int16) + noise, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if seed % 2:
        im.save(buf, "JPEG", quality=rnd.randint(70, 95))
    else:
        im.save(buf, "PNG")
    return buf.getvalue()


def image_ext(data):
    return "png" if data.startswith(b"\x89PNG") else "jpg"


def unique_copy(base, counter):
    """base with a counter in a comment the decoders skip: a new blob, the same pixels."""
    text = b"soak %d" % counter
    if base.startswith(b"\xff\xd8"):  # JPEG: a COM segment right after SOI
        return base[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + base[2:]
    # PNG: a tEXt chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)
    body = b"Comment\x00" + text
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return base[:33] + chunk + base[33:]


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---- server ---------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `imgsearch serve` on a free loopback port; start() again after kill() reuses the data."""

    def __init__(self, binary, data_dir, extra, log_path):
        self.binary, self.data_dir, self.extra = binary, data_dir, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = None

    def start(self, limit=300):
        """Starts the server; returns (ms until it answers, ms until /index/health says true, health
        message). Raises RuntimeError when it exits or is not healthy within `limit` seconds."""
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", self.data_dir,
                 "--model", MODEL, "--rate-limit", "0", *self.extra], stdout=log, stderr=log)
        answered, last = None, ""
        while time.monotonic() - t0 < limit:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} at start; see {self.log_path}")
            try:
                r = requests.get(self.url + "/index/health", timeout=10)
                if answered is None:
                    answered = (time.monotonic() - t0) * 1000
                body = r.json()
                last = body.get("message", "")
                if r.status_code == 200 and body.get("result") is True:
                    return answered, (time.monotonic() - t0) * 1000, last
            except requests.ConnectionError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"server not healthy {limit} s after start (last health: {last!r}); see {self.log_path}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def rss(self):
        """(VmRSS, RssAnon) in bytes from /proc."""
        vals = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon"):
                    vals[k] = int(v.split()[0]) * 1024
        return vals["VmRSS"], vals["RssAnon"]


class EmbeddedStore:
    """What the embedded store holds, read beside the server: rows from imgsearch.db (read-only;
    WAL lets a reader in while the server has it open) and blob names from <data>/blobs."""

    def __init__(self, data_dir):
        self.data_dir = data_dir

    def rows(self):
        """{id: (name, sha256, data text)} as committed."""
        db = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'imgsearch.db')}?mode=ro", uri=True, timeout=30)
        try:
            return {i: (n, s, d) for i, n, s, d in db.execute("SELECT id, name, sha256, data FROM images")}
        finally:
            db.close()

    def blob_problems(self, rows):
        root = os.path.join(self.data_dir, "blobs")
        on_disk, temps = set(), []
        for d, _, files in os.walk(root):
            if os.path.basename(d) == "tmp":
                temps += files
            else:
                on_disk |= set(files)
        named = {s for _, s, _ in rows.values()}
        problems = [f"orphan blob {b} (no row names it)" for b in sorted(on_disk - named)]
        problems += [f"blob {b} missing for a row" for b in sorted(named - on_disk)]
        problems += [f"temp file blobs/tmp/{t} left after start-up" for t in temps]
        return problems, len(on_disk)

    def sizes(self):
        def size(p):
            return os.path.getsize(p) if os.path.exists(p) else 0
        db = sum(size(os.path.join(self.data_dir, "imgsearch.db" + s)) for s in ("", "-wal", "-shm"))
        blobs = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(self.data_dir, "blobs"))
                    for f in fs)
        return {"db": db, "blobs": blobs, "snapshot": size(os.path.join(self.data_dir, "index.hnsw"))}


class PostgresStore:
    """The same over a throw-away PostgreSQL (tests/pg.py): rows and the blobs table."""

    def __init__(self, cluster, url):
        self.cluster, self.db = cluster, url.rsplit("/", 1)[1]

    def rows(self):
        out = self.cluster.psql("SELECT id, sha256, name, data FROM imgsearch.images", self.db)
        rows = {}
        for line in out.splitlines():  # data may hold '|' but it is last; names are ours (no '|')
            i, s, n, d = line.split("|", 3)
            rows[int(i)] = (n, s, d)
        return rows

    def blob_problems(self, rows):
        blobs = dict(line.split("|") for line in
                     self.cluster.psql("SELECT sha256, refs FROM imgsearch.blobs", self.db).splitlines())
        uses = {}
        for _, s, _ in rows.values():
            uses[s] = uses.get(s, 0) + 1
        problems = [f"orphan blob {b} (no row names it)" for b in sorted(set(blobs) - set(uses))]
        problems += [f"blob {b} refs {blobs[b]} but {uses[b]} rows name it" for b in sorted(set(blobs) & set(uses))
                     if int(blobs[b]) != uses[b]]
        problems += [f"blob {b} missing for a row" for b in sorted(set(uses) - set(blobs))]
        return problems, len(blobs)

    def sizes(self):
        out = self.cluster.psql(f"SELECT pg_database_size('{self.db}'), coalesce(sum(length(bytes)), 0) "
                                "FROM imgsearch.blobs", self.db).strip().split("|")
        return {"db": int(out[0]), "blobs": int(out[1]), "snapshot": 0}


# ---- HTTP helpers ---------------------------------------------------------------------------

def list_all(session, url):
    """Every row of /images: {id: row}; duplicates are reported by the caller through `dups`."""
    rows, dups, offset = {}, [], 0
    while True:
        page = session.get(url + "/images", params={"offset": offset, "limit": 1000}, timeout=TIMEOUT)
        page.raise_for_status()
        body = page.json()
        for row in body["result"]:
            if row["id"] in rows:
                dups.append(row["id"])
            rows[row["id"]] = row
        if body.get("next_offset") is None:
            return rows, dups, body["total"]
        offset = body["next_offset"]


def search_image(session, url, data, k):
    r = session.post(url + "/image/search", params={"k": k}, files={"image": ("q." + image_ext(data), data)},
                     timeout=TIMEOUT)
    r.raise_for_status()
    return r.json()["result"]


def percentile(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(np.ceil(p / 100 * len(v))) - 1))] if v else float("nan")


# ---- phase 1: crash cycles ------------------------------------------------------------------

class Rec:
    """One image as the clients last had it acknowledged."""
    __slots__ = ("seed", "sha", "name", "data", "writer", "cycle")

    def __init__(self, seed, sha_, name, data, writer, cycle):
        self.seed, self.sha, self.name, self.data, self.writer, self.cycle = seed, sha_, name, data, writer, cycle


class Ledger:
    """What was acknowledged, what is in doubt, and what went wrong. One lock for all of it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = {}          # id -> Rec: acknowledged add (or resolved present), not deleted
        self.deleted = {}       # id -> Rec: acknowledged delete (or resolved applied)
        self.owned = {}         # writer -> [ids]: each writer deletes and edits only its own images
        self.doubt_add = []     # (Rec, "no answer" | "refused HTTP n")
        self.doubt_del = {}     # id -> how
        self.doubt_meta = {}    # id -> (old data, new data, how)
        self.deleting = set()   # ids whose DELETE is under way (readers may see them go)
        self.acked = {"add": 0, "delete": 0, "metadata": 0}
        self.doubt = {"add": 0, "delete": 0, "metadata": 0}
        self.resolved = {"add committed": 0, "add absent": 0, "delete committed": 0, "delete not applied": 0,
                         "metadata new": 0, "metadata old": 0}
        self.refused = {}       # "op HTTP status" -> count
        self.reads = {"search": 0, "similar": 0, "list": 0, "get": 0}
        self.lost = []          # acknowledged writes not found after a restart
        self.bad = []           # every other inconsistency
        self.new_ids = set()    # acknowledged or resolved since the last verification
        self.new_deleted = set()

    def problem(self, text, lost=False):
        with self.lock:
            (self.lost if lost else self.bad).append(text)


def send(ledger, stop, call):
    """(response, None), or (None, why) when no answer came: "refused" (never sent: the server was
    already gone) or "no answer" (sent: it may or may not have been done)."""
    try:
        return call(), None
    except requests.ConnectionError as e:
        return None, "refused" if "refused" in str(e) else "no answer"
    except requests.RequestException as e:
        if not stop.is_set():
            ledger.problem(f"a write got no answer with the server up: {e!r}")
        return None, "no answer"


def count_refused(ledger, op, status):
    key = f"{op} {status}"
    ledger.refused[key] = ledger.refused.get(key, 0) + 1


def writer_loop(url, ledger, w, cycle, seeds, stop, rnd):
    """Adds (60 %), deletes of its own images (20 %) and metadata writes on them (20 %) until the
    kill; each outcome is recorded when acknowledged, or put in doubt when no answer came."""
    s = requests.Session()
    n = 0
    while not stop.is_set():
        with ledger.lock:
            mine = ledger.owned.setdefault(w, [])
            op = "add" if not mine or rnd.random() < 0.6 else "delete" if rnd.random() < 0.5 else "metadata"
            target = rnd.choice(mine) if op != "add" else None
            rec = ledger.live.get(target) if target is not None else None
            if op == "delete":
                ledger.deleting.add(target)
        if op == "add":
            seed = next(seeds)
            data = make_image(seed)
            n += 1
            rec = Rec(seed, sha(data), f"c{cycle:03d}-w{w}-{n:05d}.{image_ext(data)}",
                      {"writer": w, "cycle": cycle, "n": n, "tag": rnd.choice(["cat", "dög", "ünï", "x"]), "v": 0},
                      w, cycle)
            r, why = send(ledger, stop, lambda: s.post(url + "/image/add", files={"image": (rec.name, data)},
                                                       data={"data": json.dumps(rec.data)}, timeout=TIMEOUT))
            with ledger.lock:
                if r is not None and r.status_code == 201:
                    i = r.json()["result"]
                    ledger.live[i] = rec
                    ledger.owned[w].append(i)
                    ledger.acked["add"] += 1
                    ledger.new_ids.add(i)
                elif r is not None or why == "no answer":
                    if r is not None:
                        count_refused(ledger, "add", r.status_code)
                    ledger.doubt_add.append((rec, why or f"refused HTTP {r.status_code}"))
                    ledger.doubt["add"] += why is not None
        elif op == "delete":
            r, why = send(ledger, stop, lambda: s.delete(f"{url}/image/{target}", timeout=TIMEOUT))
            with ledger.lock:
                ledger.deleting.discard(target)
                if r is not None and r.status_code in (200, 404):
                    if r.status_code == 404:  # nobody else deletes this writer's images
                        ledger.bad.append(f"cycle {cycle}: DELETE /image/{target} of an acknowledged image answered 404")
                    ledger.deleted[target] = ledger.live.pop(target)
                    ledger.owned[w].remove(target)
                    ledger.acked["delete"] += 1
                    ledger.new_deleted.add(target)
                    ledger.new_ids.discard(target)
                elif r is not None or why == "no answer":
                    if r is not None:
                        count_refused(ledger, "delete", r.status_code)
                    ledger.doubt_del[target] = why or f"refused HTTP {r.status_code}"
                    ledger.doubt["delete"] += why is not None
        else:
            new = dict(rec.data, v=rec.data["v"] + 1, tag=rnd.choice(["cat", "dog", "ünï", "y"]), cycle=cycle)
            r, why = send(ledger, stop, lambda: s.post(f"{url}/data/{target}", json={"image_data": new},
                                                       timeout=TIMEOUT))
            with ledger.lock:
                if r is not None and r.status_code == 201:
                    rec.data = new
                    ledger.acked["metadata"] += 1
                    ledger.new_ids.add(target)
                elif r is not None or why == "no answer":
                    if r is not None:
                        count_refused(ledger, "metadata", r.status_code)
                        if r.status_code == 404:
                            ledger.bad.append(f"cycle {cycle}: POST /data/{target} of an acknowledged image answered 404")
                    ledger.doubt_meta[target] = (rec.data, new, why or f"refused HTTP {r.status_code}")
                    ledger.doubt["metadata"] += why is not None
        if why:
            return  # the server is gone: this writer's cycle is over


def reader_loop(url, ledger, stop, rnd):
    """Reads while the writers write; a read that contradicts an acknowledgement is a problem."""
    s = requests.Session()
    while not stop.is_set():
        with ledger.lock:
            ids = list(ledger.live)
            gone_before = set(ledger.deleted)
        if not ids:
            time.sleep(0.01)
            continue
        i = rnd.choice(ids)
        with ledger.lock:
            rec = ledger.live.get(i) or ledger.deleted.get(i)
        op = rnd.random()
        try:
            if op < 0.3:
                hits = search_image(s, url, make_image(rec.seed), 5)
                key = "search"
                back = [h["id"] for h in hits if h["id"] in gone_before]
                if back:
                    ledger.problem(f"search returned deleted image(s) {back}")
            elif op < 0.5:
                r = s.get(f"{url}/image/{i}/similar", params={"k": 5}, timeout=TIMEOUT)
                key = "similar"
                if r.status_code == 200:
                    back = [h["id"] for h in r.json()["result"] if h["id"] in gone_before or h["id"] == i]
                    if back:
                        ledger.problem(f"similar to {i} returned deleted image(s) or itself {back}")
                elif r.status_code != 404:
                    ledger.problem(f"GET /image/{i}/similar answered {r.status_code}: {r.text[:200]}")
            elif op < 0.65:
                r = s.get(url + "/images", params={"offset": rnd.randrange(len(ids)), "limit": 50}, timeout=TIMEOUT)
                key = "list"
                r.raise_for_status()
                back = [row["id"] for row in r.json()["result"] if row["id"] in gone_before]
                if back:
                    ledger.problem(f"/images listed deleted image(s) {back}")
            else:
                key = "get"
                want_bytes = op < 0.8
                r = s.get(f"{url}/{'image' if want_bytes else 'data'}/{i}", timeout=TIMEOUT)
                if r.status_code == 200:
                    if want_bytes and sha(r.content) != rec.sha:
                        ledger.problem(f"GET /image/{i}: other bytes than those added")
                    if not want_bytes and r.json()["result"]["name"] != rec.name:
                        ledger.problem(f"GET /data/{i}: name {r.json()['result']['name']!r}, added as {rec.name!r}")
                elif r.status_code == 404:
                    with ledger.lock:  # gone without an acknowledged or running delete?
                        if i in ledger.live and i not in ledger.deleting and i not in ledger.doubt_del:
                            ledger.bad.append(f"GET {r.url}: 404 for an acknowledged image (read your writes)")
                else:
                    ledger.problem(f"GET {r.url} answered {r.status_code}: {r.text[:200]}")
            with ledger.lock:
                ledger.reads[key] += 1
        except requests.HTTPError as e:  # an error status from a live server
            if not stop.is_set():
                ledger.problem(f"reader: {e}: {e.response.text[:200]}")
        except requests.RequestException as e:
            if stop.wait(1.0):  # the kill
                return
            ledger.problem(f"reader: no answer with the server up: {e!r}")


def resolve_doubt(ledger, rows, store_rows):
    """Decides every in-doubt write from what the server came back with (it must be whole)."""
    by_name = {}
    for i, row in rows.items():
        by_name.setdefault(row["name"], []).append(i)
    for rec, how in ledger.doubt_add:
        ids = by_name.get(rec.name, [])
        if len(ids) > 1:
            ledger.bad.append(f"in-doubt add {rec.name} is there {len(ids)} times: {ids}")
        if ids:
            i = ids[0]
            if how != "no answer":
                ledger.bad.append(f"add {rec.name} answered {how} but committed as {i}")
            ledger.live[i] = rec
            ledger.owned.setdefault(rec.writer, []).append(i)
            ledger.new_ids.add(i)
            ledger.resolved["add committed"] += 1
        else:
            if any(s == rec.sha for _, s, _ in store_rows.values()):
                ledger.bad.append(f"in-doubt add {rec.name}: absent from /images but its bytes are in a stored row")
            ledger.resolved["add absent"] += 1
    ledger.doubt_add = []
    for i, how in ledger.doubt_del.items():
        if i in rows:
            ledger.resolved["delete not applied"] += 1
            if how != "no answer":
                pass  # a refused delete that did not happen is as it should be
        else:
            if how != "no answer":
                ledger.bad.append(f"delete of {i} answered {how} but was applied")
            rec = ledger.live.pop(i)
            ledger.deleted[i] = rec
            ledger.owned[rec.writer].remove(i)
            ledger.new_deleted.add(i)
            ledger.new_ids.discard(i)
            ledger.resolved["delete committed"] += 1
    ledger.doubt_del = {}
    for i, (old, new, how) in ledger.doubt_meta.items():
        if i not in rows:
            continue  # lost with the add itself: counted below
        got = rows[i]["data"]
        if got == new:
            if how != "no answer":
                ledger.bad.append(f"metadata of {i} answered {how} but was applied")
            ledger.live[i].data = new
            ledger.resolved["metadata new"] += 1
        elif got == old:
            ledger.resolved["metadata old"] += 1
        else:
            ledger.bad.append(f"metadata of {i} after an unanswered write is neither old nor new: {got}")
        ledger.new_ids.add(i)
    ledger.doubt_meta = {}


def verify(server, store, ledger, cycle, rnd, sample, full_search=False):
    """The checks after a restart; returns the number of images searched by their image."""
    s = requests.Session()
    url = server.url
    rows, dups, total = list_all(s, url)
    store_rows = store.rows()
    L = ledger
    with L.lock:
        resolve_doubt(L, rows, store_rows)
        expected = dict(L.live)
        deleted = dict(L.deleted)
        new_ids, new_deleted = set(L.new_ids), set(L.new_deleted)
        L.new_ids, L.new_deleted = set(), set()
    bad = []
    if dups:
        bad.append(f"/images lists ids twice: {dups[:10]}")
    # every acknowledged add listed, with the name and metadata last acknowledged
    for i, rec in expected.items():
        row = rows.get(i)
        if row is None:
            L.problem(f"cycle {cycle}: acknowledged add {i} ({rec.name}) is gone", lost=True)
        elif row["name"] != rec.name:
            bad.append(f"image {i}: listed as {row['name']!r}, added as {rec.name!r}")
        elif row["data"] != rec.data:
            L.problem(f"cycle {cycle}: image {i}: metadata {row['data']} instead of the acknowledged {rec.data}",
                      lost=True)
    for i in set(rows) - set(expected):
        if i in deleted:
            L.problem(f"cycle {cycle}: acknowledged delete of {i} ({deleted[i].name}) undone: listed again", lost=True)
        else:
            bad.append(f"image {i} ({rows[i]['name']}) listed but never acknowledged nor in doubt")
    # the store's own rows agree with the listing and hold the bytes that were added
    if set(store_rows) != set(rows):
        bad.append(f"store rows and /images differ: only in store {sorted(set(store_rows) - set(rows))[:10]}, "
                   f"only listed {sorted(set(rows) - set(store_rows))[:10]}")
    for i, rec in expected.items():
        if i in store_rows and store_rows[i][1] != rec.sha:
            bad.append(f"image {i}: stored sha256 {store_rows[i][1]} is not that of the bytes added")
    # counts and health
    status = s.get(url + "/index/status", timeout=TIMEOUT).json()["result"]
    if not (status["count"] == total == len(store_rows) == len(expected)):
        bad.append(f"counts: /index/status {status['count']}, /images total {total}, store rows {len(store_rows)}, "
                   f"expected {len(expected)}")
    health = s.get(url + "/index/health", timeout=TIMEOUT).json()
    if health["result"] is not True:
        bad.append(f"health false: {health.get('message')}")
    # blobs
    blob_bad, nblobs = store.blob_problems(store_rows)
    bad += blob_bad
    # by id: this cycle's adds and changes, and a sample of the rest
    live_ids = sorted(expected)
    check = sorted((new_ids & set(expected)) | set(rnd.sample(live_ids, min(sample, len(live_ids)))))
    for i in check:
        rec = expected[i]
        r = s.get(f"{url}/data/{i}", timeout=TIMEOUT)
        if r.status_code != 200:
            L.problem(f"cycle {cycle}: GET /data/{i} answered {r.status_code}", lost=True)
            continue
        got = r.json()["result"]
        if got["name"] != rec.name or got["data"] != rec.data:
            bad.append(f"GET /data/{i}: {got['name']!r} {got['data']} instead of {rec.name!r} {rec.data}")
        r = s.get(f"{url}/image/{i}", timeout=TIMEOUT)
        if r.status_code != 200 or sha(r.content) != rec.sha:
            bad.append(f"GET /image/{i}: {r.status_code}, {'other bytes' if r.status_code == 200 else r.text[:100]}")
    dead = sorted(new_deleted | set(rnd.sample(sorted(deleted), min(sample, len(deleted)))))
    for i in dead:
        for path in (f"/image/{i}", f"/data/{i}", f"/image/{i}/similar"):
            r = s.get(url + path, timeout=TIMEOUT)
            if r.status_code != 404:
                bad.append(f"GET {path} of deleted image: {r.status_code}")
    # found by its own image (rank 1, distance ~0); deleted ones not found
    searched = live_ids if full_search else sorted(set(rnd.sample(sorted(new_ids & set(expected)),
                                                                  min(sample, len(new_ids & set(expected)))))
                                                   | set(rnd.sample(live_ids, min(sample // 3, len(live_ids)))))
    for i in searched:
        hits = search_image(s, url, make_image(expected[i].seed), 3)
        top = hits[0] if hits else None
        if not top or top["id"] != i or top["dist"] > 1e-3:
            mine = [h for h in hits if h["id"] == i]
            if not (mine and mine[0]["dist"] <= 1e-3 and top["dist"] >= mine[0]["dist"] - 1e-6):
                bad.append(f"image {i} not found by its own image: {[(h['id'], round(h['dist'], 5)) for h in hits]}")
    for i in rnd.sample(dead, min(10, len(dead))):
        hits = search_image(s, url, make_image(deleted[i].seed), 1)
        if hits and hits[0]["id"] == i:
            bad.append(f"deleted image {i} found by search")
    # similar by id (itself left out): answers, never itself nor a deleted image
    for i in rnd.sample(live_ids, min(sample, len(live_ids))):
        r = s.get(f"{url}/image/{i}/similar", params={"k": 3}, timeout=TIMEOUT)
        ids = [h["id"] for h in r.json()["result"]] if r.status_code == 200 else None
        if ids is None or i in ids or set(ids) - set(expected):
            bad.append(f"GET /image/{i}/similar: {r.status_code} {ids}")
    with L.lock:
        L.bad += [f"cycle {cycle}: {b}" for b in bad]
    return len(searched), nblobs, len(check)


def phase_crash(args, work, binary, store_factory):
    print(f"\n## Phase 1: {args.cycles} kill -9 cycles, {args.writers} writers, {args.readers} readers, "
          f"kill after {args.kill_min}-{args.kill_max} s, --hnsw-threshold {args.hnsw_threshold}, "
          f"store {args.store}\n", flush=True)
    data = os.path.join(work, "crash")
    os.makedirs(data)
    extra, store = store_factory(data)
    server = Server(binary, data, ["--threads", "2", "--hnsw-threshold", str(args.hnsw_threshold), *extra],
                    os.path.join(work, "crash.log"))
    ledger = Ledger()
    rnd = random.Random(args.seed)
    seed_counter = iter(range(args.seed * 10_000_000, 1 << 62))
    seed_lock = threading.Lock()

    def seeds():
        while True:
            with seed_lock:
                v = next(seed_counter)
            yield v
    restarts, first_answers, verify_s = [], [], []
    rebuilds = from_snapshot = 0
    server.start()
    t_phase = time.monotonic()
    try:
        for cycle in range(1, args.cycles + 1):
            before = dict(ledger.acked), dict(ledger.reads)
            stop = threading.Event()
            threads = [threading.Thread(target=writer_loop, args=(server.url, ledger, w, cycle, seeds(), stop,
                                                                  random.Random(rnd.random())))
                       for w in range(args.writers)]
            threads += [threading.Thread(target=reader_loop, args=(server.url, ledger, stop, random.Random(rnd.random())))
                        for _ in range(args.readers)]
            for t in threads:
                t.start()
            kill_at = rnd.uniform(args.kill_min, args.kill_max)
            time.sleep(kill_at)
            server.kill()
            stop.set()
            for t in threads:
                t.join()
            doubt = (len(ledger.doubt_add), len(ledger.doubt_del), len(ledger.doubt_meta))
            log_size = os.path.getsize(server.log_path)
            try:
                first, healthy, _ = server.start()
            except RuntimeError as e:
                ledger.problem(f"cycle {cycle}: restart failed: {e}")
                print(f"cycle {cycle}: restart failed: {e}", flush=True)
                break
            with open(server.log_path, "rb") as f:
                f.seek(log_size)
                started = f.read().decode(errors="replace")
            rebuilds += "rebuilding" in started or "unusable" in started
            from_snapshot += "loaded from its snapshot" in started
            restarts.append(healthy)
            first_answers.append(first)
            t0 = time.monotonic()
            nbad, nlost = len(ledger.bad), len(ledger.lost)
            try:
                searched, nblobs, checked = verify(server, store, ledger, cycle, rnd, args.sample,
                                                   full_search=cycle == args.cycles)
            except (requests.RequestException, ValueError, KeyError) as e:
                ledger.problem(f"cycle {cycle}: verification failed: {e!r} (server "
                               f"{'up' if server.proc.poll() is None else 'exited ' + str(server.proc.returncode)})")
                searched = nblobs = checked = -1
            verify_s.append(time.monotonic() - t0)
            a = {k: ledger.acked[k] - before[0][k] for k in ledger.acked}
            reads = sum(ledger.reads.values()) - sum(before[1].values())
            verdict = "ok" if len(ledger.bad) == nbad and len(ledger.lost) == nlost else \
                f"LOST {len(ledger.lost) - nlost} BAD {len(ledger.bad) - nbad}"
            print(f"cycle {cycle:3d}/{args.cycles}  kill@{kill_at:4.2f}s  +{a['add']:3d} -{a['delete']:3d} "
                  f"m{a['metadata']:3d} reads {reads:4d}  doubt a{doubt[0]} d{doubt[1]} m{doubt[2]}  "
                  f"live {len(ledger.live):5d} blobs {nblobs:5d}  restart {healthy:6.0f} ms  "
                  f"checked {checked} by id, {searched} by image  verify {verify_s[-1]:4.1f}s  {verdict}", flush=True)
            for text in (ledger.lost[nlost:] + ledger.bad[nbad:])[:5]:
                print("    " + text, flush=True)
    finally:
        sizes = store.sizes() if server.proc and server.proc.poll() is None else None
        server.stop()
    elapsed = time.monotonic() - t_phase
    L = ledger
    print(f"\n### crash soak: {len(restarts)} cycles in {elapsed / 60:.1f} min\n")
    print("| figure | value |\n|---|---|")
    print(f"| cycles (kill -9, restart, verify) | {len(restarts)} |")
    print(f"| acknowledged writes | {sum(L.acked.values())}: {L.acked['add']} adds, {L.acked['delete']} deletes, "
          f"{L.acked['metadata']} metadata sets |")
    print(f"| **lost writes** (must be 0) | **{len(L.lost)}** |")
    print(f"| **inconsistencies** (must be 0) | **{len(L.bad)}** |")
    print(f"| in-doubt writes (no answer at the kill) | {sum(L.doubt.values())}: {L.doubt['add']} adds, "
          f"{L.doubt['delete']} deletes, {L.doubt['metadata']} metadata sets |")
    r = L.resolved
    print(f"| how they resolved (each whole) | adds: {r['add committed']} committed, {r['add absent']} absent; "
          f"deletes: {r['delete committed']} committed, {r['delete not applied']} not applied; metadata: "
          f"{r['metadata new']} new, {r['metadata old']} old |")
    print(f"| refused writes (non-2xx answers) | {sum(L.refused.values())} {L.refused or ''} |")
    print(f"| reads during the writes | {sum(L.reads.values())}: {L.reads} |")
    if restarts:
        print(f"| restart until healthy p50 / p99 / max | {percentile(restarts, 50):.0f} / "
              f"{percentile(restarts, 99):.0f} / {max(restarts):.0f} ms |")
        print(f"| restart until first answer p50 / p99 | {percentile(first_answers, 50):.0f} / "
              f"{percentile(first_answers, 99):.0f} ms |")
        print(f"| restarts from the HNSW snapshot + replay / that found it unusable and rebuilt | "
              f"{from_snapshot} / {rebuilds} |")
        print(f"| verification per cycle p50 / max | {percentile(verify_s, 50):.1f} / {max(verify_s):.1f} s |")
    print(f"| images at the end | {len(L.live)} live, {len(L.deleted)} deleted |")
    if sizes:
        print(f"| store at the end | database {sizes['db'] / 2**20:.1f} MiB, blobs {sizes['blobs'] / 2**20:.1f} MiB, "
              f"index snapshot {sizes['snapshot'] / 2**20:.1f} MiB |")
    for text in (L.lost + L.bad)[:40]:
        print("- " + text)
    return {"cycles": len(restarts), "acked": L.acked, "lost": L.lost, "inconsistencies": L.bad, "doubt": L.doubt,
            "resolved": L.resolved, "refused": L.refused, "reads": L.reads, "restart_ms": restarts,
            "first_answer_ms": first_answers, "rebuilds": rebuilds, "from_snapshot": from_snapshot, "sizes": sizes,
            "live": len(L.live), "deleted": len(L.deleted)}


# ---- phase 2: memory over a long ingest -----------------------------------------------------

def multipart(parts, boundary="imgsearchsoakboundary"):
    body = b""
    for name, filename, value in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def phase_rss(args, work, binary, store_factory):
    n_total = args.adds
    print(f"\n## Phase 2: RSS over {n_total} adds, {args.writers} writers + 1 reader, "
          f"--hnsw-threshold {args.hnsw_threshold}, sampled every {args.sample_seconds} s\n", flush=True)
    data = os.path.join(work, "rss")
    os.makedirs(data)
    extra, store = store_factory(data)
    server = Server(binary, data, ["--threads", "2", "--hnsw-threshold", str(args.hnsw_threshold), *extra],
                    os.path.join(work, "rss.log"))
    pool = [make_image(args.seed * 1000 + i) for i in range(args.pool)]
    counter = iter(range(1, 1 << 62))
    lock = threading.Lock()
    done = [0]
    errors = []
    stop = threading.Event()

    def writer(w):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        rnd = random.Random(w)
        while not stop.is_set():
            with lock:
                n = next(counter)
                if n > n_total:
                    return
            base = pool[n % len(pool)]
            body, ctype = multipart([("image", f"r{n:06d}.{image_ext(base)}", unique_copy(base, n)),
                                     ("data", None, json.dumps({"n": n, "w": w, "tag": rnd.choice("abc")}).encode())])
            try:
                for _ in range(50):
                    conn.request("POST", "/image/add", body, {"Content-Type": ctype})
                    r = conn.getresponse()
                    text = r.read()
                    if r.status != 503:  # busy: wait and send it again
                        break
                    time.sleep(0.2)
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"add {n}: {e!r}")
                stop.set()
                return
            if r.status != 201:
                errors.append(f"add answered {r.status}: {text[:200]}")
                stop.set()
                return
            with lock:
                done[0] += 1

    def reader():
        s, rnd, reads = requests.Session(), random.Random(1), 0
        while not stop.is_set():
            count = done[0]
            if count < 10:
                time.sleep(0.2)
                continue
            op = rnd.random()
            i = rnd.randrange(1, count)
            if op < 0.4:
                r = s.post(server.url + "/image/search", params={"k": 10},
                           files={"image": ("q.jpg", pool[rnd.randrange(len(pool))])}, timeout=TIMEOUT)
            elif op < 0.6:
                r = s.get(f"{server.url}/image/{i}/similar", params={"k": 10}, timeout=TIMEOUT)
            elif op < 0.8:
                r = s.get(server.url + "/images", params={"offset": rnd.randrange(count), "limit": 100}, timeout=TIMEOUT)
            else:
                r = s.get(f"{server.url}/image/{i}", timeout=TIMEOUT)
            if r.status_code != 200:
                errors.append(f"{r.request.method} {r.url} answered {r.status_code}: {r.text[:200]}")
            reads += 1
            reads_done[0] = reads
            time.sleep(0.05)  # a light load: the point is the read paths, not their speed

    samples = []  # (seconds, adds acknowledged, count, VmRSS, RssAnon, index bytes)

    def sample():
        st = requests.get(server.url + "/index/status", timeout=TIMEOUT).json()["result"]
        rss, anon = server.rss()
        samples.append((time.monotonic() - t0, done[0], st["count"], rss, anon, st["hnsw"]["memory_bytes"]))

    def warm():
        """Searches from two clients at once: both inference sessions built, as in the run."""
        def some(k):
            s = requests.Session()
            for j in range(10):
                s.post(server.url + "/image/search", params={"k": 10}, files={"image": ("q.jpg", pool[k + j])},
                       timeout=TIMEOUT)
                s.get(server.url + "/images", params={"limit": 100}, timeout=TIMEOUT)
        ths = [threading.Thread(target=some, args=(k * 10,)) for k in range(2)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()

    reads_done = [0]
    server.start()
    t0 = time.monotonic()
    try:
        warm()
        sample()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        next_report, next_sample = 0, time.monotonic() + args.sample_seconds
        while any(t.is_alive() for t in threads[:-1]):
            time.sleep(0.1)
            if time.monotonic() >= next_sample and any(t.is_alive() for t in threads[:-1]):
                next_sample += args.sample_seconds
                sample()
                if samples[-1][1] >= next_report:
                    print(f"  {samples[-1][1]:7d} adds  RSS {samples[-1][3] / 2**20:7.1f} MB  "
                          f"index {samples[-1][5] / 2**20:7.1f} MB  {time.monotonic() - t0:6.0f} s", flush=True)
                    next_report += max(1, n_total // 10)
        stop.set()
        for t in threads:
            t.join()
        ingest_s = time.monotonic() - t0
        time.sleep(2)  # let a snapshot save under way finish
        sample()
        end_rss, end_anon, end_index = samples[-1][3], samples[-1][4], samples[-1][5]
        sizes = store.sizes()
        # the yardstick: a fresh process on the same collection (snapshot + metadata), warmed with the
        # same kinds of requests (two inference sessions, the store's caches)
        server.stop()
        restart = server.start()
        warm()
        fresh_rss, fresh_anon = server.rss()
        st = requests.get(server.url + "/index/status", timeout=TIMEOUT).json()["result"]
        fresh_index = st["hnsw"]["memory_bytes"]
    finally:
        stop.set()
        server.stop()
    mb = 2 ** 20
    print(f"\n### memory over {done[0]} adds in {ingest_s / 60:.1f} min ({done[0] / ingest_s:.0f} adds/s, "
          f"{reads_done[0]} reads beside)\n")
    print("| adds | count | RSS MB | RssAnon MB | index MB | RSS − index MB |\n|---|---|---|---|---|---|")
    shown, step = set(), max(1, len(samples) // 20)
    for j, smp in enumerate(samples):
        if j % step == 0 or j == len(samples) - 1:
            shown.add(j)
            print(f"| {smp[1]} | {smp[2]} | {smp[3] / mb:.1f} | {smp[4] / mb:.1f} | {smp[5] / mb:.1f} | "
                  f"{(smp[3] - smp[5]) / mb:.1f} |")
    # the verdict: from the first sample at 10 % of the adds to the end
    ref = next((smp for smp in samples if smp[1] >= n_total // 10), samples[-1])
    end = samples[-1]
    growth = (end[3] - end[5]) - (ref[3] - ref[5])
    added = end[2] - ref[2]
    per_image = growth / added if added else 0
    # What RSS − index still holds per image: its name and metadata, parsed (jansson), in the
    # engine's maps (index_put_meta). The fresh process measures it: (RSS − index) of the restarted
    # server minus that of the first sample (an empty collection), per image.
    fresh_other = fresh_rss - fresh_index
    empty_other = samples[0][3] - samples[0][5]
    per_image_state = (fresh_other - empty_other) / end[2] if end[2] else 0
    allowance = args.rss_slack * mb + per_image_state * added
    print(f"\nRSS − index grew {growth / mb:.1f} MB from {ref[1]} to {end[1]} adds ({per_image:.0f} bytes per image).")
    print(f"A fresh server on the same {end[2]} images (snapshot loaded, warmed with searches): RSS "
          f"{fresh_rss / mb:.1f} MB, index {fresh_index / mb:.1f} MB, RSS − index {fresh_other / mb:.1f} MB; "
          f"at the start of the run (empty) {empty_other / mb:.1f} MB: so names and metadata kept in memory "
          f"cost {per_image_state:.0f} bytes per image. Restart took {restart[1]:.0f} ms.")
    print(f"The run's own process ended {(end[3] - fresh_rss) / mb:+.1f} MB over the fresh one "
          f"(RssAnon {(end[4] - fresh_anon) / mb:+.1f} MB).")
    ok = growth <= allowance and not errors
    print(f"\nVerdict: {'FLAT' if ok else 'GROWS'} — RSS − index grew {growth / mb:.1f} MB between 10 % and 100 % "
          f"of the run; allowed X = {args.rss_slack} MB + {per_image_state:.0f} bytes × {added} images = "
          f"{allowance / mb:.1f} MB (the per-image records the engine keeps beside the index, measured on the "
          f"fresh process, plus {args.rss_slack} MB for the allocator's free lists, per-thread arenas and "
          f"SQLite's page cache, which a run reaches early and then reuses).")
    if errors:
        print(f"errors during the run: {len(errors)}, first: {errors[:3]}")
    print(f"store at the end: database {sizes['db'] / mb:.1f} MiB, blobs {sizes['blobs'] / mb:.1f} MiB, "
          f"snapshot {sizes['snapshot'] / mb:.1f} MiB")
    return {"adds": done[0], "seconds": ingest_s, "samples": samples, "growth_bytes": growth,
            "allowance_bytes": allowance, "per_image_state_bytes": per_image_state, "fresh_rss": fresh_rss,
            "fresh_index": fresh_index, "ok": ok, "errors": errors, "sizes": sizes}


# ---- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=("crash", "rss", "both"), default="both")
    ap.add_argument("--cycles", type=int, default=100, help="kill -9 cycles (phase 1)")
    ap.add_argument("--adds", type=int, default=100_000, help="adds of the memory run (phase 2)")
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2, help="reader threads of phase 1")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "imgsearch"),
                    help="copied into the run's directory first, so that a rebuild cannot swap it mid-run")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="postgresql: a throw-away cluster from tests/pg.py")
    ap.add_argument("--hnsw-threshold", type=int, default=0,
                    help="passed to the server (default 0: the HNSW with its snapshots and replay from the "
                         "first image; 10000 is the product's default, the exact index at these sizes)")
    ap.add_argument("--kill-min", type=float, default=0.3)
    ap.add_argument("--kill-max", type=float, default=4.0)
    ap.add_argument("--sample", type=int, default=30, help="images checked by id / by image per cycle")
    ap.add_argument("--sample-seconds", type=float, default=5.0)
    ap.add_argument("--pool", type=int, default=400, help="base images of the memory run")
    ap.add_argument("--rss-slack", type=int, default=32, help="MB of RSS − index growth allowed beyond the records")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the data directories even when all is well")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"soak.py: no executable {args.binary}")
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(dir=OUT, prefix="soak-")
    binary = os.path.join(work, "imgsearch")
    shutil.copy2(args.binary, binary)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"binary {args.binary} (sha256 {sha(open(binary, 'rb').read())[:12]}, "
          f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(args.binary)))}); work in {work}",
          flush=True)
    cluster = None
    if args.store == "postgresql":
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from pg import PostgresCluster
        cluster = PostgresCluster().start()

    def store_factory(data_dir):
        if cluster is None:
            return [], EmbeddedStore(data_dir)
        url = cluster.create_database()
        return ["--store", url], PostgresStore(cluster, url)
    results, failed = {}, False
    try:
        if args.phase in ("crash", "both"):
            results["crash"] = phase_crash(args, work, binary, store_factory)
            failed |= bool(results["crash"]["lost"] or results["crash"]["inconsistencies"])
        if args.phase in ("rss", "both"):
            results["rss"] = phase_rss(args, work, binary, store_factory)
            failed |= bool(results["rss"]["errors"])
    finally:
        if cluster:
            cluster.cleanup()
        with open(os.path.join(OUT, "soak.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        if failed or args.keep:
            print(f"\ndata and server logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
