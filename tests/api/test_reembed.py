"""A data directory made with the previous embedding (the plain pooled vector, before the fitted
head) is recognised and served as it is; `imgsearch reembed` recomputes its vectors while the
server serves, swaps them in once the server is stopped, and after that the same images, ids and
metadata are served with the new vectors. Reembed resumes after a kill -9; a directory of another
model is refused with a pointer to reembed; no second server runs on a directory in use."""
import json
import os
import signal
import sqlite3
import subprocess
import time

import requests

from paths import DARKNET, SKIMAGE
from server import embedded_only
from server import Server

pytestmark = embedded_only  # reembed works on an embedded data directory

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


def search_self(s, ids):
    """Each stored photo, sent as a query, finds itself (or a stored copy of the same file) first."""
    copies = {}
    for i, (p, _) in ids.items():
        copies.setdefault(p, set()).add(i)
    for p, same in copies.items():
        with open(p, "rb") as f:
            hits = requests.post(s.url + "/image/search?k=50", files={"image": f}).json()["result"]
        assert hits[0]["dist"] < 1e-4 and same <= {h["id"] for h in hits if h["dist"] < 1e-4}, (p, hits[:3])


def test_previous_store_is_served_then_reembedded_while_serving(binary, model, tmp_path):
    old = previous_model(model, tmp_path)
    data = tmp_path / "data"
    s = Server(binary, old, data, ["--hnsw-threshold", "0"]).start()  # an HNSW snapshot too
    ids = fill(s, 1)
    # a second server may not work on a directory a server is using
    second = subprocess.run([binary, "serve", "--port", "1", "--data", str(data), "--model", old],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "in use by another imgsearch process" in second.stderr
    assert s.stop() == 0
    assert os.path.exists(data / "index.hnsw")

    # the current embedding recognises the older one and serves its vectors as they are
    s = Server(binary, model, data, ["--hnsw-threshold", "0"]).start()
    status = requests.get(s.url + "/index/status").json()["result"]
    assert status["embedding"] == "efficientnet_lite0" and status["reembed_to"].startswith("efficientnet_lite0+")
    assert status["dims"] == 1280
    search_self(s, ids)
    late = fill(s, 1)  # adds meanwhile get the stored embedding too
    assert requests.get(s.url + "/index/health").json()["result"] is True

    # reembed computes while the server serves; the swap waits for the server to stop
    busy = reembed(binary, model, data)
    assert busy.returncode == 3 and "not swapped in" in busy.stderr, busy.stderr
    assert f"{len(ids) + len(late)} vectors computed" in busy.stderr
    search_self(s, ids)  # still served, old vectors
    more = fill(s, 1)    # added after the computation: caught up at the swap
    assert s.stop() == 0
    done = reembed(binary, model, data)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stderr and not os.path.exists(data / "index.hnsw")  # the old graph is gone
    # only what the server added after the first run was computed the second time
    assert f"{len(ids) + len(late)}/{len(ids) + len(late) + len(more)} images" in done.stderr.splitlines()[0]

    s = Server(binary, model, data, ["--hnsw-threshold", "0"]).start()
    status = requests.get(s.url + "/index/status").json()["result"]
    assert status["embedding"].startswith("efficientnet_lite0+") and status["reembed_to"] is None
    assert requests.get(s.url + "/index/health").json()["result"] is True
    everything = {**ids, **late, **more}
    listed = requests.get(s.url + "/images?limit=100").json()["result"]
    assert {r["id"]: r["data"]["file"] for r in listed} == {i: os.path.basename(p) for i, (p, _) in everything.items()}
    for i in everything:
        assert len(requests.get(f"{s.url}/data/{i}").json()["result"]["vector"]) == head_dims(model)
    search_self(s, {i: v for i, v in more.items()})
    assert s.stop() == 0


def test_other_embeddings_are_refused(binary, model, models_dir, tmp_path):
    lite1 = os.path.join(models_dir, "efficientnet_lite1.json")
    data = tmp_path / "data"
    s = Server(binary, lite1, data).start()
    fill(s, 1)
    assert s.stop() == 0
    refused = subprocess.run([binary, "serve", "--port", "1", "--data", str(data), "--model", model],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "vectors of model efficientnet_lite1, not efficientnet_lite0+" in refused.stderr
    assert "imgsearch reembed" in refused.stderr


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
    s = Server(binary, old, data).start()
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
