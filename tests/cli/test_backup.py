"""`imgsearch backup DATA_DIR DEST` while a server serves and writes, and `imgsearch restore BACKUP
DATA_DIR`: the backup holds every write acknowledged before it started, it is consistent (`imgsearch
check` passes on the restored directory, every row's bytes are there and hash to their name, the
change log replays to the rows), and a server started on the restored directory finds every image.
A test hook (IMGSEARCH_FAULT_BACKUP_PAUSE) stops the backup after its blob pass and after its
database copy, so that writes land exactly between its steps: an add before the database copy
whose bytes the blob pass missed, an add deleted before its bytes were copied (left out), a delete
before the copy (its bytes swept), a delete after it (kept). Then the refusals, and a backup of a
stopped directory equal to its source."""
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest
import requests
from PIL import Image

from paths import DARKNET, SKIMAGE
from server import Server, embedded_only

pytestmark = embedded_only  # a PostgreSQL store is backed up with pg_dump

PHOTOS = [f"{DARKNET}/{n}" for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "person.jpg", "kite.jpg")] + \
         [f"{SKIMAGE}/{n}" for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
SUMMARY = re.compile(r"(backed up|restored) (\d+) images \((\d+) blobs, [\d.]+ MB\) at change (\d+) to (.+) in [\d.]+ s\n")


@pytest.fixture(scope="module")
def pictures():
    """Small distinct pictures (JPEG bytes): quarter crops of packaged photos."""
    out = []
    for quarter in range(2):
        for p in PHOTOS:
            im = Image.open(p).convert("RGB")
            side = min(im.size) // 2
            x = quarter * (im.size[0] - side)
            crop = im.crop((x, 0, x + side, side)).resize((128, 128))
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    assert len(set(out)) == len(out)
    return out


def add(url, data, name, meta):
    r = requests.post(url + "/image/add", files={"image": (name, data)}, data={"data": json.dumps(meta)}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["result"]


def delete(url, image_id):
    r = requests.delete(f"{url}/image/{image_id}", timeout=60)
    assert r.status_code == 200, r.text


def run(binary, *args, env=None):
    p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env} if env else None)
    return p.returncode, p.stdout, p.stderr


def sha(data):
    return hashlib.sha256(data).hexdigest()


def blob_files(data_dir):
    """name → path of every blob file under <data_dir>/blobs (temp files left out)."""
    root = os.path.join(data_dir, "blobs")
    return {f: os.path.join(d, f) for d, _, files in os.walk(root) if os.path.basename(d) != "tmp" for f in files}


def table(db, sql):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute(sql).fetchall()


def assert_consistent(data_dir):
    """What `imgsearch check` checks, by other means: the database is intact, every row's bytes are
    there and hash to their name, no other bytes are kept, and the change log replays to the rows."""
    db = os.path.join(data_dir, "imgsearch.db")
    assert table(db, "PRAGMA integrity_check") == [("ok",)]
    rows = dict(table(db, "SELECT id, sha256 FROM images"))
    files = blob_files(data_dir)
    assert set(files) == set(rows.values())
    for name, path in files.items():
        with open(path, "rb") as f:
            assert sha(f.read()) == name
    live = set()
    for op, image_id in table(db, "SELECT op, image_id FROM changes ORDER BY seq"):
        if op == "a":
            live.add(image_id)
        elif op == "d":
            live.discard(image_id)
        elif op == "c":
            live.clear()
    assert live == set(rows)
    return rows


class Writer(threading.Thread):
    """Adds pictures and deletes its own older ones through the API until stopped; records when
    each request was sent and when it was acknowledged."""

    def __init__(self, url, pool):
        super().__init__(daemon=True)
        self.url, self.pool, self.stop, self.log, self.error = url, pool, threading.Event(), [], None
        self.acked = threading.Semaphore(0)

    def run(self):
        mine, i = [], 0
        try:
            while not self.stop.is_set():
                sent = time.monotonic()
                if len(mine) >= 3 and i % 3 == 2:
                    image_id = mine.pop(0)
                    delete(self.url, image_id)
                    self.log.append(("d", image_id, None, sent, time.monotonic()))
                else:
                    data = self.pool[i % len(self.pool)]
                    image_id = add(self.url, data, f"w{i}.jpg", {"writer": i})
                    mine.append(image_id)
                    self.log.append(("a", image_id, (data, {"writer": i}), sent, time.monotonic()))
                self.acked.release()
                i += 1
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.error = e


def wait_for(path, proc):
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


def test_backup_during_writes_then_restore_then_check(binary, model, pictures, tmp_path):
    base, extra, pool = pictures[:6], pictures[6:8], pictures[8:]
    data, dest, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    s = Server(binary, model, data).start()
    writer = Writer(s.url, pool)
    try:
        expected = {}  # id -> (bytes, metadata): acknowledged before the backup started
        base_ids = []
        for i, b in enumerate(base):
            base_ids.append(add(s.url, b, f"base{i}.jpg", {"base": i}))
            expected[base_ids[-1]] = (b, {"base": i})
        writer.start()
        for _ in range(7):  # some of the writer's adds and a delete acknowledged before the backup
            assert writer.acked.acquire(timeout=60), writer.error
        pause = tmp_path / "pause"
        pause.mkdir()
        t0 = time.monotonic()
        proc = subprocess.Popen([binary, "backup", data, dest], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "IMGSEARCH_FAULT_BACKUP_PAUSE": str(pause)})
        # between the blob pass and the database copy: an add whose bytes the pass did not see, one
        # more that is deleted after the copy (so its bytes are gone: left out), a delete (swept)
        wait_for(pause / "blobs", proc)
        late = add(s.url, extra[0], "late.jpg", {"late": 0})
        gone = add(s.url, extra[1], "gone.jpg", {"late": 1})
        delete(s.url, base_ids[0])
        (pause / "blobs.go").touch()
        # after the database copy: a delete of an image it holds (kept: its bytes were linked)
        wait_for(pause / "database", proc)
        t_copied = time.monotonic()
        delete(s.url, gone)
        delete(s.url, base_ids[1])
        (pause / "database.go").touch()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        m = SUMMARY.fullmatch(out)
        assert m and m[1] == "backed up" and m[5] == str(dest), out
        dropped = re.search(r"(\d+) image\(s\) added after the backup began and deleted", err)
        assert dropped and int(dropped[1]) >= 1, err  # `gone` (and perhaps some of the writer's)
        assert writer.acked.acquire(timeout=60), writer.error  # the writer is still going
    finally:
        writer.stop.set()
        writer.join(timeout=120)
        assert s.stop() == 0
    assert writer.error is None, writer.error

    # what was acknowledged before the backup started, and what must be gone
    must_be_gone = set()
    for op, image_id, what, sent, acked in writer.log:
        if op == "a" and acked < t0:
            expected[image_id] = what
        if op == "d" and acked < t0:
            must_be_gone.add(image_id)
    deleted_later = {image_id for op, image_id, _, sent, _ in writer.log if op == "d" and sent < t_copied}
    for image_id in must_be_gone | deleted_later:
        expected.pop(image_id, None)
    assert must_be_gone, "no delete was acknowledged before the backup"
    expected.pop(base_ids[0])  # deleted before the database copy
    expected[late] = (extra[0], {"late": 0})
    must_be_gone |= {base_ids[0], gone}

    # the backup itself: its files, its manifest, no index snapshot
    assert sorted(os.listdir(dest)) == ["BACKUP.json", "blobs", "imgsearch.db"]
    manifest = json.load(open(dest / "BACKUP.json"))
    assert manifest["format"] == "imgsearch-backup" and manifest["version"] == 1
    assert manifest["images"] == int(m[2]) and manifest["blobs"] == int(m[3]) and manifest["source_change"] == int(m[4])
    assert manifest["dropped"] == int(dropped[1]) and manifest["model"].startswith("efficientnet_lite0")
    rows = assert_consistent(dest)
    assert len(rows) == manifest["images"] and sha(base[0]) not in blob_files(dest)

    code, out, err = run(binary, "restore", dest, restored)
    assert code == 0, err
    assert SUMMARY.fullmatch(out).group(1, 2) == ("restored", str(manifest["images"])), out
    code, out, err = run(binary, "check", restored)
    assert code == 0, out + err
    assert assert_consistent(restored) == rows

    r = Server(binary, model, restored).start()
    try:
        for image_id, (b, meta) in expected.items():
            got = requests.get(f"{r.url}/image/{image_id}", timeout=60)
            assert got.status_code == 200 and got.content == b, image_id
            assert requests.get(f"{r.url}/data/{image_id}", timeout=60).json()["result"]["data"] == meta
            hits = requests.post(r.url + "/image/search?k=5", files={"image": ("q.jpg", b)}, timeout=60).json()["result"]
            same = {i for i, (c, _) in expected.items() if c == b} | {i for i in rows if i not in expected}
            assert hits[0]["dist"] < 1e-4 and hits[0]["id"] in same, (image_id, hits[:2])
            if image_id in base_ids or image_id == late:  # bytes stored once: found first, by id
                assert hits[0]["id"] == image_id
        for image_id in must_be_gone:
            assert requests.get(f"{r.url}/image/{image_id}", timeout=60).status_code == 404, image_id
        health = requests.get(r.url + "/index/health", timeout=60).json()
        assert health["result"] is True, health
        assert requests.get(r.url + "/images?limit=1", timeout=60).json()["total"] == manifest["images"]
    finally:
        assert r.stop() == 0


@pytest.fixture(scope="module")
def stopped(binary, model, pictures, tmp_path_factory):
    """A data directory with a few images, a metadata change and a delete; no server on it."""
    data = tmp_path_factory.mktemp("stopped") / "data"
    s = Server(binary, model, data).start()
    try:
        ids = [add(s.url, b, f"p{i}.jpg", {"i": i}) for i, b in enumerate(pictures[:4])]
        r = requests.post(f"{s.url}/data/{ids[1]}", json={"image_data": {"i": 1, "edited": True}}, timeout=60)
        assert r.status_code == 201, r.text
        delete(s.url, ids[3])
    finally:
        assert s.stop() == 0
    return data


def dump(data_dir):
    db = os.path.join(data_dir, "imgsearch.db")
    return {t: table(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("images", "changes", "meta", "api_keys")}


def test_backup_of_a_stopped_directory_equals_its_source(binary, stopped, tmp_path):
    code, out, err = run(binary, "backup", "--copy", stopped, tmp_path / "copy")
    assert code == 0, err
    assert SUMMARY.fullmatch(out).group(2, 3) == ("3", "3"), out
    assert dump(tmp_path / "copy") == dump(stopped)
    assert set(blob_files(tmp_path / "copy")) == set(blob_files(stopped))
    source = {os.stat(p).st_ino for p in blob_files(stopped).values()}
    assert not source & {os.stat(p).st_ino for p in blob_files(tmp_path / "copy").values()}  # copies
    code, out, err = run(binary, "restore", "--link", tmp_path / "copy", tmp_path / "again")
    assert code == 0, err
    assert dump(tmp_path / "again") == dump(stopped)
    linked = {n: os.stat(p).st_ino for n, p in blob_files(tmp_path / "again").items()}
    assert linked == {n: os.stat(p).st_ino for n, p in blob_files(tmp_path / "copy").items()}
    assert_consistent(tmp_path / "again")


def test_refusals_and_damaged_backups(binary, model, pictures, stopped, tmp_path):
    backup = tmp_path / "backup"
    code, _, err = run(binary, "backup", stopped, backup)
    assert code == 0, err
    # DEST not empty, a directory without a store, a PostgreSQL store
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, _, err = run(binary, "backup", stopped, tmp_path / "full")
    assert code == 2 and "exists and is not empty" in err, err
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    code, _, err = run(binary, "backup", tmp_path / "full", tmp_path / "b2")
    assert code == 2 and "holds no imgsearch data" in err and not os.path.exists(tmp_path / "b2"), err
    code, _, err = run(binary, "backup", "--store", "postgresql://localhost/images", tmp_path / "b3")
    assert code == 2 and "pg_dump" in err, err

    # restore over a store: refused without --force, and while a server uses it; done with --force
    target = tmp_path / "target"
    code, _, err = run(binary, "restore", backup, target)
    assert code == 0, err
    restored = dump(target)
    code, _, err = run(binary, "restore", backup, target)
    assert code == 2 and "holds an imgsearch store already" in err and "--force" in err, err
    code, _, err = run(binary, "restore", backup, tmp_path / "full")
    assert code == 2 and "holds no imgsearch store" in err, err
    s = Server(binary, model, target, ["--hnsw-threshold", "0"]).start()  # an index snapshot at its stop
    try:
        add(s.url, pictures[5], "after.jpg", {})
        code, _, err = run(binary, "restore", "--force", backup, target)
        assert code == 2 and "in use" in err, err
    finally:
        assert s.stop() == 0
    assert len(dump(target)["images"]) == len(restored["images"]) + 1 and os.path.exists(target / "index.hnsw")
    code, out, err = run(binary, "restore", "--force", backup, target)
    assert code == 0, err
    assert dump(target) == restored and not os.path.exists(target / "index.hnsw")
    assert not [f for f in os.listdir(tmp_path) if ".restore-" in f or ".old-" in f]

    # damaged backups are refused, and nothing is left behind
    def damaged(name, harm):
        copy = tmp_path / name
        shutil.copytree(backup, copy)
        harm(copy)
        code, _, err = run(binary, "restore", copy, tmp_path / f"from-{name}")
        assert not os.path.exists(tmp_path / f"from-{name}")
        assert not [f for f in os.listdir(tmp_path) if ".restore-" in f]
        return code, err

    one_blob = lambda d: sorted(blob_files(d).values())[0]  # noqa: E731
    code, err = damaged("missing", lambda d: os.unlink(one_blob(d)))
    assert code == 1 and re.search(r"the backup is damaged: the bytes of image \d+ \([0-9a-f]{64}\) are missing", err), err
    code, err = damaged("altered", lambda d: open(one_blob(d), "r+b").write(b"\0\0\0\0"))
    assert code == 1 and "the backup is damaged" in err and "SHA-256" in err, err
    code, err = damaged("garbage", lambda d: (d / "imgsearch.db").write_bytes(b"not a database at all " * 512))
    assert code == 1 and "the backup is damaged" in err and "not a database" in err, err
    code, err = damaged("nomanifest", lambda d: os.unlink(d / "BACKUP.json"))
    assert code == 2 and "is not an imgsearch backup" in err, err
    code, err = damaged("mismatch", lambda d: (d / "BACKUP.json").write_text(
        json.dumps({**json.load(open(backup / "BACKUP.json")), "images": 99})))
    assert code == 1 and "does not match" in err, err
