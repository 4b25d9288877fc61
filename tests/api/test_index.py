"""The service on its HNSW index: the same answers as the exact scan, the switch above the
threshold, snapshots (clean stop, kill -9, damaged file), int8 storage, reindex and status."""
import json
import os
import time

import pytest
import requests

from test_consistency import nearest, post_add, variants

HNSW = ("--hnsw-threshold", "0")


def add_all(url, imgs):
    ids = []
    for i, b in enumerate(imgs):
        r = post_add(url, b, {"i": i, "group": "even" if i % 2 == 0 else "odd", "tag": "rare" if i == 5 else "common"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["result"])
    return ids


def status(url):
    r = requests.get(url + "/index/status")
    assert r.status_code == 200
    return r.json()["result"]


def health(url):
    return requests.get(url + "/index/health").json()


def search(url, img, k=3, **params):
    r = requests.post(url + "/image/search", params={"k": k, **params}, files={"image": ("q.jpg", img)}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def log_text(server):
    server.log.flush()
    with open(server.log.name, "rb") as f:
        return f.read().decode(errors="replace")


@pytest.mark.parametrize("extra", [HNSW, HNSW + ("--hnsw-int8",)], ids=["float32", "int8"])
def test_hnsw_answers_like_the_exact_scan(make_server, extra):
    imgs = variants(16, seed=11)
    exact = make_server("exact").start()
    graph = make_server("graph", extra).start()
    ids_e, ids_g = add_all(exact.url, imgs), add_all(graph.url, imgs)
    assert ids_e == ids_g
    st = status(graph.url)
    assert st["kind"] == "hnsw" and st["count"] == 16
    assert st["hnsw"]["storage"] == ("int8" if "--hnsw-int8" in extra else "float32")
    assert status(exact.url)["kind"] == "exact"
    for i, img in enumerate(imgs):
        a, b = search(exact.url, img, k=5), search(graph.url, img, k=5)
        assert b[0]["id"] == ids_g[i] and b[0]["dist"] < 1e-4  # int8 too: re-ranked with the exact vector
        assert [h["id"] for h in a] == [h["id"] for h in b]
        assert all(abs(x["dist"] - y["dist"]) < 1e-5 for x, y in zip(a, b))
    # filters: half, one image, none
    odd = search(graph.url, imgs[0], k=20, query=json.dumps({"group": "odd"}))
    assert len(odd) == 8 and all(h["data"]["group"] == "odd" for h in odd)
    rare = search(graph.url, imgs[0], k=5, query=json.dumps({"tag": "rare"}))
    assert [h["id"] for h in rare] == [ids_g[5]]
    assert search(graph.url, imgs[0], k=5, query=json.dumps({"tag": "none"})) == []
    # similar leaves the image itself out
    r = requests.get(f"{graph.url}/image/{ids_g[3]}/similar", params={"k": 3}).json()["result"]
    assert ids_g[3] not in [h["id"] for h in r] and len(r) == 3
    # deletes: gone from search at once
    assert requests.delete(f"{graph.url}/image/{ids_g[2]}").status_code == 200
    assert all(h["id"] != ids_g[2] for h in search(graph.url, imgs[2], k=16))
    h = health(graph.url)
    assert h["result"] is True and "HNSW" in h["message"], h


def test_ef_is_validated(make_server):
    s = make_server("ef", HNSW).start()
    img = variants(1, seed=3)[0]
    add_all(s.url, [img])
    assert len(search(s.url, img, k=1, ef=200)) == 1
    for ef in (5, 5000, "x"):
        r = requests.post(s.url + "/image/search", params={"k": 10, "ef": ef}, files={"image": ("q.jpg", img)})
        assert r.status_code == 400 and "ef" in r.json()["detail"], r.text


def test_switches_to_hnsw_above_the_threshold(make_server):
    s = make_server("switch", ("--hnsw-threshold", "6")).start()
    imgs = variants(10, seed=4)
    ids = add_all(s.url, imgs[:6])
    assert status(s.url)["kind"] == "exact"
    ids += add_all(s.url, imgs[6:])  # over the threshold: built in the background
    deadline = time.monotonic() + 60
    while status(s.url)["kind"] != "hnsw":
        assert search(s.url, imgs[7], k=1)[0]["id"] == ids[7]  # answered meanwhile
        assert time.monotonic() < deadline, "HNSW was never swapped in"
        time.sleep(0.1)
    assert health(s.url)["result"] is True
    for i, img in enumerate(imgs):
        assert search(s.url, img, k=1)[0]["id"] == ids[i]
    assert os.path.exists(os.path.join(s.data_dir, "index.hnsw"))


def test_snapshot_survives_stop_and_kill(make_server):
    s = make_server("snap", HNSW).start()
    imgs = variants(14, seed=5)
    ids = add_all(s.url, imgs[:10])
    assert requests.delete(f"{s.url}/image/{ids[0]}").status_code == 200
    assert s.stop() == 0  # a clean stop saves the snapshot
    assert os.path.exists(os.path.join(s.data_dir, "index.hnsw"))
    s.start()
    assert "index loaded from its snapshot" in log_text(s)
    assert health(s.url)["result"] is True
    assert search(s.url, imgs[4], k=1)[0]["id"] == ids[4]
    # changes after the snapshot, then a crash: they are replayed from the store's change log
    ids += add_all(s.url, imgs[10:])
    assert requests.delete(f"{s.url}/image/{ids[1]}").status_code == 200
    requests.post(f"{s.url}/data/{ids[3]}", json={"image_data": {"after": "crash"}})
    s.kill()
    s.start()
    assert health(s.url)["result"] is True
    assert search(s.url, imgs[12], k=1)[0]["id"] == ids[12]
    assert all(h["id"] not in (ids[0], ids[1]) for h in search(s.url, imgs[1], k=14))
    after = search(s.url, imgs[0], k=5, query=json.dumps({"after": "crash"}))
    assert [h["id"] for h in after] == [ids[3]]


def test_damaged_snapshot_is_rebuilt(make_server):
    s = make_server("damaged", HNSW).start()
    imgs = variants(6, seed=6)
    ids = add_all(s.url, imgs)
    assert s.stop() == 0
    path = os.path.join(s.data_dir, "index.hnsw")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    s.start()
    assert "refused" in log_text(s)
    assert health(s.url)["result"] is True
    assert search(s.url, imgs[2], k=1)[0]["id"] == ids[2]
    # it is the exact scan until the background build swaps the HNSW back in
    deadline = time.monotonic() + 60
    while status(s.url)["kind"] != "hnsw":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert health(s.url)["result"] is True


def test_reindex_keeps_hnsw_and_health(make_server):
    s = make_server("reindex", HNSW).start()
    imgs = variants(8, seed=7)
    ids = add_all(s.url, imgs)
    r = requests.get(s.url + "/index/reindex")
    assert r.json() == {"result": None, "message": "reindex finished"}
    st = status(s.url)
    assert st["kind"] == "hnsw" and st["count"] == 8 and st["reindex"]["running"] is False
    assert st["reindex"]["done"] == st["reindex"]["total"] == 8
    assert health(s.url)["result"] is True
    assert search(s.url, imgs[6], k=1)[0]["id"] == ids[6]
    # delete-all empties the index and forgets the snapshot
    assert requests.delete(s.url + "/image/all/records").json()["result"] == 8
    assert status(s.url)["count"] == 0
    assert not os.path.exists(os.path.join(s.data_dir, "index.hnsw"))
    assert health(s.url)["result"] is True
    ids = add_all(s.url, imgs[:2])
    assert search(s.url, imgs[1], k=1)[0]["id"] == ids[1]


def test_precision_is_named_and_both_share_one_store(make_server):
    """--precision picks the arithmetic and /index/status names it; images added at one
    precision are found by queries embedded at the other (embed.h: vectors of both mix)."""
    imgs = variants(8, seed=21)
    s = make_server("shared", ("--precision", "fp32")).start()
    assert status(s.url)["inference"] in ("fp32 (oneDNN, AVX-512)", "fp32 (XNNPACK)")
    ids = add_all(s.url, imgs)
    s.stop()
    auto = make_server("shared").start()
    inference = status(auto.url)["inference"]
    assert inference.startswith("bf16 (oneDNN") or inference.startswith("fp32 ("), inference
    for i, img in enumerate(imgs):
        hits = search(auto.url, img, k=2)
        # bf16 against fp32 on such small crops: cosine 0.983 at worst (docs/ARCHITECTURE.md)
        assert hits[0]["id"] == ids[i] and hits[0]["dist"] < 0.03, (inference, hits)
        assert hits[1]["dist"] > 0.2
    auto.stop()
    bad = make_server("bad", ("--precision", "fp16"))
    with pytest.raises(RuntimeError):
        bad.start()
    assert "precision 'fp16': use auto, fp32 or bf16" in open(bad.log.name).read()
