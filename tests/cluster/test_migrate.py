"""imgsearch migrate: an embedded data directory into PostgreSQL and back gives the same ids, bytes,
metadata and vectors; a second run goes on where the first stopped; a bad destination is refused."""
import hashlib
import os
import sqlite3
import subprocess

import pytest
import requests

from server import Server  # noqa: E402  (tests/cluster/conftest.py puts tests/ and tests/api/ on the path)
from test_consistency import all_rows, nearest, post_add, variants  # noqa: E402


def migrate(binary, src, dst):
    return subprocess.run([binary, "migrate", "--from", str(src), "--to", str(dst)], capture_output=True, text=True,
                          timeout=300)


def rows(data_dir):
    db = sqlite3.connect(f"file:{data_dir}/imgsearch.db?mode=ro", uri=True)
    out = db.execute("SELECT id, name, content_type, width, height, size, sha256, created_at, data, vector"
                     " FROM images ORDER BY id").fetchall()
    db.close()
    return out


def blobs(data_dir):
    out = {}
    for d, _, files in os.walk(os.path.join(data_dir, "blobs")):
        if os.path.basename(d) != "tmp":
            for f in files:
                out[f] = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
    return out


def test_round_trip_embedded_postgres_embedded(binary, model, pg, tmp_path):
    imgs = variants(8, seed=21)
    src = tmp_path / "src"
    s = Server(binary, model, src).start()
    ids = [post_add(s.url, imgs[i], {"i": i, "name": f"ü{i}"}).json()["result"] for i in range(6)]
    ids.append(post_add(s.url, imgs[0], {"copy": True}).json()["result"])  # the same bytes twice
    assert requests.delete(f"{s.url}/image/{ids[2]}").status_code == 200  # a gap in the ids
    assert s.stop() == 0
    url = pg.create_database()

    p = migrate(binary, src, url)
    assert p.returncode == 0, p.stderr
    assert "6 images copied, 0 already there, all 6 verified" in p.stderr
    node = Server(binary, model, tmp_path / "node", ["--store", url]).start()
    assert sorted(r["id"] for r in all_rows(node.url)) == sorted(set(ids) - {ids[2]})
    hit = nearest(node.url, imgs[3])[0]
    assert hit["id"] == ids[3] and hit["data"] == {"i": 3, "name": "ü3"}
    assert requests.get(f"{node.url}/image/{ids[4]}").content == imgs[4]
    new = post_add(node.url, imgs[7], {"i": 7}).json()["result"]
    assert new > max(ids)  # ids go on after the imported ones
    assert requests.delete(f"{node.url}/image/{new}").status_code == 200
    assert node.stop() == 0

    # resumable: the source grew since; the second run copies only what is new
    s.start()
    more = post_add(s.url, imgs[6], {"i": 6}).json()["result"]
    assert s.stop() == 0
    p = migrate(binary, src, url)
    assert p.returncode == 0, p.stderr
    assert "1 images copied, 6 already there, all 7 verified" in p.stderr
    assert more > max(ids)

    back = tmp_path / "back"
    p = migrate(binary, url, back)
    assert p.returncode == 0, p.stderr
    assert rows(back) == rows(src)  # ids, names, metadata text, vectors, times: the same
    assert blobs(back) == blobs(src) and all(k == v for k, v in blobs(back).items())
    s2 = Server(binary, model, back).start()
    assert nearest(s2.url, imgs[6])[0]["id"] == more
    assert requests.get(s2.url + "/index/health").json()["result"] is True
    assert s2.stop() == 0


def test_refusals(binary, model, pg, tmp_path):
    p = migrate(binary, tmp_path / "nothing", pg.create_database())
    assert p.returncode == 2 and "holds no imgsearch data" in p.stderr
    imgs = variants(3, seed=22)
    a, b = tmp_path / "a", tmp_path / "b"
    for d, n in ((a, 1), (b, 3)):
        s = Server(binary, model, d).start()
        for i in range(n):
            post_add(s.url, imgs[i], {})
        s.stop()
    url = pg.create_database()
    assert migrate(binary, b, url).returncode == 0
    p = migrate(binary, a, url)  # the destination is not an interrupted copy of a
    assert p.returncode == 2 and "not an interrupted copy" in p.stderr
    s = Server(binary, model, a).start()  # a server holds the directory: no copy from under it
    p = migrate(binary, a, pg.create_database())
    assert p.returncode == 2 and "in use" in p.stderr
    s.stop()
