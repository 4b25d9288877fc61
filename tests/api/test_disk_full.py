"""A full disk (issue 16): the data directory on a small tmpfs the test mounts (as root, as CI
runs). Adds that cannot be stored get 507 with a detail, nothing stored is damaged, searches go on,
the snapshot writer fails and keeps the old snapshot, and adds work again once space is freed —
without a restart."""
import hashlib
import os
import subprocess
import time

import pytest
import requests

from paths import DARKNET
from server import Server, embedded_only

pytestmark = embedded_only  # the PostgreSQL store's disk is its server's


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory):
    """Writes a file until the filesystem refuses another byte; returns its path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError:
                    break
    return path


def add(s, name, data=None):
    with open(f"{DARKNET}/{name}", "rb") as f:
        files = {"image": (name, f)}
        if data is not None:
            files["data"] = (None, data)
        return requests.post(s.url + "/image/add", files=files, timeout=120)


def top_hit(s, name):
    with open(f"{DARKNET}/{name}", "rb") as f:
        r = requests.post(s.url + "/image/search?k=1", files={"image": (name, f)}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["result"][0]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_full_disk_refuses_adds_with_507_and_loses_nothing(binary, model, small_disk):
    s = Server(binary, model, small_disk, ["--hnsw-threshold", "0"]).start()
    try:
        stored = {}
        for name in ("dog.jpg", "eagle.jpg", "giraffe.jpg"):
            r = add(s, name, '{"kind": "photo"}')
            assert r.status_code == 201, r.text
            stored[r.json()["result"]] = name
        assert s.stop() == 0  # the stop writes the snapshot of all three
        snapshot = os.path.join(small_disk, "index.hnsw")
        before = sha(snapshot)
        s.start()

        filler = fill(small_disk)
        # a new image: its bytes cannot be written
        r = add(s, "horses.jpg")
        assert r.status_code == 507, r.text
        detail = r.json()["detail"]
        assert detail.startswith("insufficient_storage: the server's disk is full") and "error " in detail
        # the same bytes as a stored image need no new blob, only a row, which the database refuses;
        # the shared blob stays (checked below)
        r = add(s, "dog.jpg")
        assert r.status_code == 507, r.text
        # new metadata cannot be written either, and the old stays
        some_id = next(iter(stored))
        r = requests.post(f"{s.url}/data/{some_id}", json={"image_data": {"kind": "drawing"}}, timeout=30)
        assert r.status_code == 507, r.text
        assert requests.get(f"{s.url}/data/{some_id}", timeout=30).json()["result"]["data"] == {"kind": "photo"}
        # nothing stored is damaged, and searches go on
        for id_, name in stored.items():
            got = requests.get(f"{s.url}/image/{id_}", timeout=30)
            assert got.status_code == 200
            assert got.content == open(f"{DARKNET}/{name}", "rb").read()
        assert top_hit(s, "eagle.jpg")["name"] == "eagle.jpg"
        assert requests.get(s.url + "/images", timeout=30).json()["total"] == len(stored)
        assert requests.get(s.url + "/index/health", timeout=30).json()["result"] is True

        # a rebuilt index cannot be saved: the old snapshot stays, whole
        assert requests.get(s.url + "/index/reindex", timeout=30).status_code == 200
        deadline = time.monotonic() + 60
        while requests.get(s.url + "/index/status", timeout=30).json()["result"]["reindex"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert sha(snapshot) == before
        assert not os.path.exists(snapshot + ".tmp")
        assert "index snapshot not saved" in open(s.log.name).read()
        assert top_hit(s, "giraffe.jpg")["name"] == "giraffe.jpg"

        # space freed: adds work again, same process
        os.unlink(filler)
        r = add(s, "horses.jpg", '{"kind": "photo"}')
        assert r.status_code == 201, r.text
        stored[r.json()["result"]] = "horses.jpg"
        assert top_hit(s, "horses.jpg")["name"] == "horses.jpg"
        assert s.alive()

        # and everything is there after a restart
        assert s.stop() == 0
        s.start()
        assert requests.get(s.url + "/images", timeout=30).json()["total"] == len(stored)
        for id_, name in stored.items():
            assert requests.get(f"{s.url}/data/{id_}", timeout=30).json()["result"]["name"] == name
        assert requests.get(s.url + "/index/health", timeout=30).json()["result"] is True
    finally:
        s.stop()
