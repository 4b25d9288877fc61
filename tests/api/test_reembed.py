"""A data directory made with the previous embedding (the plain pooled vector, before the fitted
head) is recognised, refused with a pointer to `imgsearch reembed`, and after reembed serves the
same images, ids and metadata with the new vectors; reembed resumes after a kill -9, and neither
it nor a second server runs on a directory a server is using."""
import json
import os
import signal
import sqlite3
import subprocess
import time

import requests

from paths import DARKNET, SKIMAGE
from server import Server

PHOTOS = [f"{DARKNET}/{n}" for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "person.jpg", "kite.jpg")] + \
         [f"{SKIMAGE}/{n}" for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]


def previous_model(model, tmp_path):
    """The same network without its head: what data directories were made with before heads."""
    d = tmp_path / "previous"
    d.mkdir(exist_ok=True)
    for ext in (".json", ".safetensors"):
        target = d / ("efficientnet_lite0" + ext)
        if not target.exists():
            os.symlink(os.path.join(os.path.dirname(model), "efficientnet_lite0" + ext), target)
    return str(d / "efficientnet_lite0.json")


def fill(server, copies):
    ids = {}
    for i in range(copies):
        for p in PHOTOS:
            with open(p, "rb") as f:
                r = requests.post(server.url + "/image/add", files={"image": (os.path.basename(p), f.read())},
                                  data={"data": json.dumps({"copy": i, "file": os.path.basename(p)})}, timeout=60)
            assert r.status_code == 201, r.text
            ids[r.json()["result"]] = (p, i)
    return ids


def reembed(binary, model, data_dir, **kw):
    return subprocess.run([binary, "reembed", "--model", model, str(data_dir)], capture_output=True, text=True,
                          timeout=600, **kw)


def head_dims(model):
    return json.load(open(model.replace(".json", ".head.json")))["dims"]


def test_previous_store_is_refused_then_reembedded(binary, model, tmp_path):
    old = previous_model(model, tmp_path)
    data = tmp_path / "data"
    s = Server(binary, old, data, ["--hnsw-threshold", "0"]).start()  # an HNSW snapshot too
    ids = fill(s, 1)
    # neither a second server nor a reembed may work on a directory a server is using
    second = subprocess.run([binary, "serve", "--port", "1", "--data", str(data), "--model", old],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "in use by another imgsearch process" in second.stderr
    busy = reembed(binary, model, data)
    assert busy.returncode == 1 and "in use by another imgsearch process" in busy.stderr
    assert s.stop() == 0
    assert os.path.exists(data / "index.hnsw")

    # the current embedding recognises the directory as made with another one
    refused = subprocess.run([binary, "serve", "--port", "1", "--data", str(data), "--model", model],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "efficientnet_lite0, not efficientnet_lite0+" in refused.stderr and "imgsearch reembed" in refused.stderr

    done = reembed(binary, model, data)
    assert done.returncode == 0, done.stderr
    assert f"{len(ids)}/{len(ids)} images (100.0 %)" in done.stderr and "done" in done.stderr
    assert not os.path.exists(data / "index.hnsw")  # the old graph is gone, not mixed in

    s = Server(binary, model, data, ["--hnsw-threshold", "0"]).start()
    assert requests.get(s.url + "/index/health").json()["result"] is True
    listed = requests.get(s.url + "/images?limit=100").json()["result"]
    assert {r["id"]: r["data"]["file"] for r in listed} == {i: os.path.basename(p) for i, (p, _) in ids.items()}
    for i, (p, _) in ids.items():
        got = requests.get(f"{s.url}/data/{i}").json()["result"]
        assert len(got["vector"]) == head_dims(model)
        with open(p, "rb") as f:
            hits = requests.post(s.url + "/image/search?k=1", files={"image": f}).json()["result"]
        assert hits[0]["id"] == i and hits[0]["dist"] < 1e-4
    assert s.stop() == 0


def test_reembed_resumes_after_kill(binary, model, tmp_path):
    old = previous_model(model, tmp_path)
    data = tmp_path / "data"
    s = Server(binary, old, data).start()
    ids = fill(s, 12)
    assert s.stop() == 0
    p = subprocess.Popen([binary, "reembed", "--model", model, str(data)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    db = sqlite3.connect(f"file:{data}/imgsearch.db?mode=ro", uri=True)
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and p.poll() is None and committed == 0:
        try:
            committed = db.execute("SELECT count(*) FROM reembed").fetchone()[0]
        except sqlite3.OperationalError:  # busy or not migrated yet
            pass
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    db.close()
    assert 0 < committed < len(ids), "the kill came too late to test resuming"
    # the directory still holds the previous vectors whole: the old model still serves it
    s = Server(binary, old, tmp_path / "data").start()
    assert requests.get(s.url + "/index/health").json()["result"] is True
    assert s.stop() == 0
    again = reembed(binary, model, data)
    assert again.returncode == 0, again.stderr
    first = again.stderr.splitlines()[0]  # "reembed: N/M images ..." with the work already done
    assert int(first.split()[1].split("/")[0]) >= committed, first
    s = Server(binary, model, data).start()
    assert requests.get(s.url + "/index/health").json()["result"] is True
    assert requests.get(s.url + "/images").json()["total"] == len(ids)
    assert s.stop() == 0
