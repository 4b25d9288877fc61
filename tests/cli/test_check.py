"""`imgsearch check DATA_DIR [--repair]` on each kind of damaged file, and what a server says when it
meets one: a blob with flipped bytes, a missing blob, a blob no image names, unsound vectors (NaN,
not unit norm, wrong size), a stale or damaged index snapshot, garbage over the database and a
database cut short. Each test damages its own copy of one data directory made once by a real
server (three photos, then a fourth, with an HNSW snapshot), checks the exact lines reported and
the exit status, repairs what can be repaired (then the check is clean and a server finds the
image again), and checks what is said about what cannot be."""
import hashlib
import os
import shutil
import sqlite3
import struct
import subprocess

import pytest
import requests

from paths import DARKNET, SKIMAGE
from server import Server, embedded_only

pytestmark = embedded_only  # the embedded store's own files

PHOTOS = [f"{DARKNET}/dog.jpg", f"{DARKNET}/eagle.jpg", f"{DARKNET}/giraffe.jpg", f"{SKIMAGE}/chelsea.png"]
HNSW = ["--hnsw-threshold", "0"]  # an HNSW index from the first image, so a snapshot is saved


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def blob_path(data, h):
    return f"{data}/blobs/{h[:2]}/{h[2:4]}/{h}"


def add(server, path):
    with open(path, "rb") as f:
        r = requests.post(server.url + "/image/add", files={"image": (os.path.basename(path), f.read())}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["result"]


class Made:
    pass


@pytest.fixture(scope="module")
def made(binary, model, tmp_path_factory):
    """data: four photos (ids[path]), snapshot at change 4; three: the same after three photos."""
    m = Made()
    m.root = tmp_path_factory.mktemp("check")
    m.data, m.three = m.root / "data", m.root / "three"
    s = Server(binary, model, m.data, HNSW).start()
    m.ids = {p: add(s, p) for p in PHOTOS[:3]}
    assert s.stop() == 0
    shutil.copytree(m.data, m.three)
    s.start()
    m.ids[PHOTOS[3]] = add(s, PHOTOS[3])
    assert s.stop() == 0
    assert os.path.exists(m.data / "index.hnsw") and os.path.exists(m.three / "index.hnsw")
    return m


@pytest.fixture
def data(made, tmp_path):
    """A private copy of the four-photo directory."""
    return shutil.copytree(made.data, tmp_path / "data")


def check(binary, model, data, *opts):
    p = subprocess.run([binary, "check", "--model", model, *opts, str(data)], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout.splitlines(), p.stderr


def assert_clean(binary, model, data, images=4, blobs=4):
    assert check(binary, model, data) == (0, [f"checked {images} images, {blobs} blobs: 0 problems, 0 repaired"], "")


def finds(binary, model, data, photo, image_id):
    """A server starts on data and finds the photo's image first by similarity; returns its log."""
    s = Server(binary, model, data, HNSW).start()
    try:
        with open(photo, "rb") as f:
            r = requests.post(s.url + "/image/search?k=3", files={"image": f}, timeout=60)
        assert r.status_code == 200, r.text
        hit = r.json()["result"][0]
        assert hit["id"] == image_id and hit["dist"] < 1e-3, r.json()
    finally:
        assert s.stop() == 0
    return open(s.log.name).read()


def serve_fails(binary, model, data):
    """Starts a server that must refuse the directory: (exit status, its stderr lines)."""
    p = subprocess.run([binary, "serve", "--port", "1", "--data", str(data), "--model", model],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr.splitlines()


def test_clean_directory_and_usage(binary, model, data, tmp_path):
    assert_clean(binary, model, data)
    assert check(binary, model, data, "--quiet") == (0, [], "")
    code, out, err = check(binary, model, tmp_path / "nothing-here")
    assert code == 2 and out == [] and "holds no imgsearch data" in err
    code, _, err = check(binary, model, data, "--drop-unrecoverable")
    assert code == 2 and "--drop-unrecoverable goes with --repair" in err
    # a server holds the directory: the check refuses to run beside it
    s = Server(binary, model, data, HNSW).start()
    try:
        code, out, err = check(binary, model, data)
        assert code == 2 and out == [] and "in use by another imgsearch process" in err and "stop the server first" in err
    finally:
        assert s.stop() == 0


def test_flipped_bytes_in_a_blob(binary, model, data, made):
    path, image, other = blob_path(data, sha(PHOTOS[0])), made.ids[PHOTOS[0]], made.ids[PHOTOS[1]]
    with open(path, "r+b") as f:
        f.seek(5000)
        b = f.read(4)
        f.seek(5000)
        f.write(bytes(x ^ 0xFF for x in b))
    actual = sha(path)
    code, out, err = check(binary, model, data)
    assert code == 1 and err == ""
    assert out == [f"image {image}: file {path} is damaged: its bytes hash to {actual}",
                   "checked 4 images, 4 blobs: 1 problems, 0 repaired"]
    # the bytes cannot be derived: said, and the image is not deleted behind the user's back
    code, out, _ = check(binary, model, data, "--repair")
    assert code == 1
    assert out[1] == (f"cannot repair: image {image}: its file is damaged, and it cannot be derived from anything "
                      f"else: restore the data directory from a backup (imgsearch restore), or delete the image "
                      f"(DELETE /image/{image} on a server, or imgsearch check --repair --drop-unrecoverable {data})")
    assert out[-1] == "checked 4 images, 4 blobs: 1 problems, 0 repaired"

    # a server serves the others, and answers for this one with an error, never the damaged bytes
    s = Server(binary, model, data, HNSW).start()
    try:
        for target in (f"/image/{image}", f"/image/{image}/thumbnail"):
            r = requests.get(s.url + target, timeout=60)
            assert r.status_code == 500 and "in the server log" in r.json()["detail"], r.text
        assert requests.get(f"{s.url}/image/{other}", timeout=60).content == open(PHOTOS[1], "rb").read()
    finally:
        assert s.stop() == 0
    log = open(s.log.name).read()
    assert log.count(f"blob file {path} is damaged: its bytes hash to {actual}; run `imgsearch check {data}`") == 2
    # so does a reembed, which reads every image
    p = subprocess.run([binary, "reembed", "--model", model, str(data)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and f"image {image}: blob file {path} is damaged" in p.stderr
    assert f"run `imgsearch check {data}`" in p.stderr

    code, out, _ = check(binary, model, data, "--repair", "--drop-unrecoverable")
    assert code == 0
    assert out[1:] == [f"repaired: image {image}: deleted, as its file was damaged (--drop-unrecoverable)",
                       "checked 4 images, 4 blobs: 1 problems, 1 repaired"]
    assert_clean(binary, model, data, images=3, blobs=3)
    assert not os.path.exists(path)
    finds(binary, model, data, PHOTOS[1], other)


def test_missing_blob(binary, model, data, made):
    path = blob_path(data, sha(PHOTOS[2]))
    os.unlink(path)
    image = made.ids[PHOTOS[2]]
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"image {image}: file {path} is missing",
                               "checked 4 images, 3 blobs: 1 problems, 0 repaired"])
    code, out, _ = check(binary, model, data, "--repair")
    assert code == 1 and out[1].startswith(f"cannot repair: image {image}: its file is missing, and it cannot be ")
    # the server says which file is missing and what to run; the image is not "not found"
    s = Server(binary, model, data, HNSW).start()
    try:
        r = requests.get(f"{s.url}/image/{image}", timeout=60)
        assert r.status_code == 500, r.text
    finally:
        assert s.stop() == 0
    assert (f"blob file {path} is missing, though an image names it; run `imgsearch check {data}`"
            in open(s.log.name).read())
    # what the user can do: put the file back (from a backup) and the directory is whole again
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(PHOTOS[2], path)
    assert_clean(binary, model, data)


def test_orphan_blob(binary, model, data):
    stray = b"bytes no image names: a crash between the file and its row leaves such"
    h = hashlib.sha256(stray).hexdigest()
    path = blob_path(data, h)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(stray)
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"blob {path}: no image names it", "checked 4 images, 5 blobs: 1 problems, 0 repaired"])
    code, out, _ = check(binary, model, data, "--repair")
    assert (code, out) == (0, [f"blob {path}: no image names it", f"repaired: blob {path}: removed",
                               "checked 4 images, 5 blobs: 1 problems, 1 repaired"])
    assert not os.path.exists(path)
    assert_clean(binary, model, data)


def test_unsound_vectors_are_recomputed(binary, model, data, made, dims):
    db = sqlite3.connect(data / "imgsearch.db")
    ids = [made.ids[p] for p in PHOTOS]
    before = {i: db.execute("SELECT vector FROM images WHERE id = ?", (i,)).fetchone()[0] for i in ids}
    v = list(struct.unpack(f"{dims}f", before[ids[0]]))
    db.execute("UPDATE images SET vector = ? WHERE id = ?", (struct.pack(f"{dims}f", float("nan"), *v[1:]), ids[0]))
    db.execute("UPDATE images SET vector = ? WHERE id = ?", (struct.pack(f"{dims}f", *(2 * x for x in v)), ids[1]))
    db.execute("UPDATE images SET vector = ? WHERE id = ?", (struct.pack("3f", 1, 0, 0), ids[2]))
    db.commit()
    db.close()
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"image {ids[0]}: vector value 0 is nan",
                               f"image {ids[1]}: vector norm is 2.000000, not 1",
                               f"image {ids[2]}: vector has 3 values, not {dims}",
                               "checked 4 images, 4 blobs: 3 problems, 0 repaired"])
    # a model of another embedding cannot recompute them, and says so
    other = os.path.join(os.path.dirname(model), "efficientnet_lite1.json")
    if os.path.exists(other):
        code, out, _ = check(binary, other, data, "--repair")
        assert code == 1 and f"cannot repair: image {ids[0]}: vector: the store's vectors are of" in out[3]
    code, out, err = check(binary, model, data, "--repair")
    assert code == 0, out
    assert out[3:] == [f"repaired: image {i}: vector recomputed from its file" for i in ids[:3]] + \
        ["checked 4 images, 4 blobs: 3 problems, 3 repaired"]
    assert f"note: {data}/index.hnsw rebuilt from the store, as vectors changed (4 images, change 4)" in err
    assert_clean(binary, model, data)
    db = sqlite3.connect(data / "imgsearch.db")
    for i in ids[:3]:  # the same image gives the same vector again
        got = struct.unpack(f"{dims}f", db.execute("SELECT vector FROM images WHERE id = ?", (i,)).fetchone()[0])
        want = struct.unpack(f"{dims}f", before[i])
        assert sum(a * b for a, b in zip(got, want)) > 0.999
    db.close()
    log = finds(binary, model, data, PHOTOS[0], ids[0])
    assert "index loaded from its snapshot at change 4" in log


def test_damaged_snapshot_is_rebuilt(binary, model, data):
    snap = data / "index.hnsw"
    with open(snap, "r+b") as f:
        f.seek(os.path.getsize(snap) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    code, out, _ = check(binary, model, data)
    assert code == 1 and len(out) == 2 and out[0].startswith(f"index snapshot {snap} refused: ")
    code, out, _ = check(binary, model, data, "--repair")
    assert code == 0 and out[1:] == [f"repaired: {snap}: rebuilt from the store (4 images, change 4)",
                                     "checked 4 images, 4 blobs: 1 problems, 1 repaired"]
    assert_clean(binary, model, data)
    log = finds(binary, model, data, PHOTOS[3], 4)
    assert "index loaded from its snapshot at change 4, 0 later change(s) replayed" in log


def test_snapshot_against_the_change_log(binary, model, data, made, tmp_path):
    # an older snapshot is no damage: the change log after it brings it up to date, as at start-up
    shutil.copyfile(made.three / "index.hnsw", data / "index.hnsw")
    assert_clean(binary, model, data)
    # a newer one (the database is an older copy of the directory) does not fit
    three = shutil.copytree(made.three, tmp_path / "three")
    shutil.copyfile(made.data / "index.hnsw", three / "index.hnsw")
    code, out, _ = check(binary, model, three)
    assert (code, out[0]) == (1, f"{three}/index.hnsw: made at change 4, after the store's last change 3 (from "
                                 "another database, or the database is an older copy)")
    # a snapshot whose vectors the store does not have (two rows' vectors swapped behind its back)
    db = sqlite3.connect(data / "imgsearch.db")
    (a,), (b,) = db.execute("SELECT vector FROM images WHERE id IN (1, 2) ORDER BY id").fetchall()
    db.execute("UPDATE images SET vector = ? WHERE id = 1", (b,))
    db.execute("UPDATE images SET vector = ? WHERE id = 2", (a,))
    db.commit()
    db.close()
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"{data}/index.hnsw: does not match the store (snapshot at change 3, store at change "
                               "4), 2 vector(s) differ from the store's (first: image 1)",
                               "checked 4 images, 4 blobs: 1 problems, 0 repaired"])
    code, out, _ = check(binary, model, three, "--repair")
    assert code == 0 and out[1] == f"repaired: {three}/index.hnsw: rebuilt from the store (3 images, change 3)"
    assert_clean(binary, model, three, images=3, blobs=3)


def garble(path, start, length):
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes((i * 151 + 17) % 256 for i in range(length)))


def test_garbage_over_the_database(binary, model, data):
    db = data / "imgsearch.db"
    garble(db, 0, 4096)
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"{db} is damaged (read schema version: file is not a database)",
                               "checked 0 images, 4 blobs: 1 problems, 0 repaired"])
    code, out, _ = check(binary, model, data, "--repair")
    assert code == 1 and out[1] == (
        f"cannot repair: {db}: a damaged database cannot be derived from the image files: restore the data "
        f"directory from a backup (imgsearch restore), or copy out what SQLite can still read (sqlite3 {db} .recover)")
    # a server refuses to start, with one message naming the file and what to run
    code, lines = serve_fails(binary, model, data)
    assert code == 2 and lines == [f"imgsearch serve: {db} is damaged (read schema version: file is not a "
                                   f"database); run `imgsearch check {data}`"]


def test_garbage_over_later_pages(binary, model, data):
    db = data / "imgsearch.db"
    size = os.path.getsize(db)
    garble(db, 4096, size - 4096)
    code, out, _ = check(binary, model, data)
    assert code == 1 and out[-1].endswith("repaired") and len(out) >= 2
    assert all(line.startswith(f"{db}") for line in out[:-1]), out
    code, lines = serve_fails(binary, model, data)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"imgsearch serve: {db} is damaged (") and \
        lines[0].endswith(f"; run `imgsearch check {data}`")


def test_database_cut_short(binary, model, data):
    db = data / "imgsearch.db"
    os.truncate(db, 0)  # an empty file would be a new, empty store: refused while images are there
    message = f"{db} holds no database, but {data}/blobs holds images: the database was lost or cut short"
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [message, "checked 0 images, 4 blobs: 1 problems, 0 repaired"])
    code, lines = serve_fails(binary, model, data)
    assert (code, lines) == (2, [f"imgsearch serve: {message}; run `imgsearch check {data}`"])
    os.unlink(db)
    code, out, _ = check(binary, model, data)
    assert (code, out) == (1, [f"{db}: missing, though {data}/blobs holds images",
                               "checked 0 images, 4 blobs: 1 problems, 0 repaired"])
    assert not os.path.exists(db)  # the check made none


def test_damaged_snapshot_at_start_names_the_file(binary, model, data):
    snap = data / "index.hnsw"
    garble(snap, 0, 64)
    log = finds(binary, model, data, PHOTOS[1], 2)
    assert f"index snapshot {snap} refused: not a snapshot; rebuilding" in log
