"""Several imgsearch nodes over one PostgreSQL (issue #13): they converge, the two-writer
sequence/commit race cannot make a node skip a change, kill -9 of a node and a restart of the
database lose nothing acknowledged, a late node catches up from its snapshot plus the log, and
delete-all / reindex on one node are seen by all. Runs against a throw-away PostgreSQL started by
the test process (tests/pg.py)."""
import json
import os
import random
import threading
import time

import pytest
import requests

from paths import DARKNET  # noqa: E402
from server import Server  # noqa: E402  (tests/cluster/conftest.py puts tests/ and tests/api/ on the path)
from test_consistency import all_ids, nearest, post_add, variants  # noqa: E402


@pytest.fixture
def nodes(binary, model, pg, tmp_path):
    """nodes(n, extra=(), env=None) -> n servers over one fresh database, each with its own --data."""
    made = []
    url = pg.create_database()

    def _make(n, extra=(), env=None, start=True):
        out = []
        for _ in range(n):
            s = Server(binary, model, tmp_path / f"node{len(made)}", ["--store", url, *extra], env=env)
            made.append(s)
            out.append(s.start() if start else s)
        return out
    _make.url = url
    _make.db = url.rsplit("/", 1)[1]
    yield _make
    codes = [s.stop() for s in made]
    assert codes == [0] * len(made), f"servers exited with {codes} (see their logs)"


def status(s):
    return requests.get(s.url + "/index/status", timeout=30).json()["result"]


def health(s):
    return requests.get(s.url + "/index/health", timeout=60).json()


def converged(servers, timeout=20):
    """Waits until every node's index is at the same change as the database, then returns it."""
    deadline = time.monotonic() + timeout
    while True:
        st = [status(s) for s in servers]
        seqs = {x["seq"] for x in st} | {x["store"]["seq"] for x in st}
        if len(seqs) == 1:
            return seqs.pop()
        assert time.monotonic() < deadline, f"nodes did not converge: {[(x['seq'], x['store']) for x in st]}"
        time.sleep(0.1)


def same_everywhere(servers, queries):
    """Every node holds the same ids and answers the same queries with the same ids; all healthy."""
    ids = [all_ids(s.url) for s in servers]
    assert all(x == ids[0] for x in ids), [len(x) for x in ids]
    for q in queries:
        answers = [[h["id"] for h in requests.post(s.url + "/image/search", params={"k": 5},
                                                    files={"image": ("q.jpg", q)}, timeout=60).json()["result"]]
                   for s in servers]
        assert all(a == answers[0] for a in answers), answers
    for s in servers:
        h = health(s)
        assert h["result"] is True, h
    return ids[0]


def test_concurrent_writers_on_three_nodes_converge(nodes):
    a, b, c = nodes(3)
    imgs = variants(30, seed=11)
    acked, lock, errors = {}, threading.Lock(), []

    def writer(node, part):
        try:
            for i in part:
                r = post_add(node.url, imgs[i], {"i": i, "node": node.port})
                assert r.status_code == 201, r.text
                with lock:
                    acked[r.json()["result"]] = i
                # read-your-writes: the node that acknowledged it finds it at once
                assert nearest(node.url, imgs[i])[0]["dist"] < 1e-4
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(n, range(k, 30, 3))) for k, n in enumerate((a, b, c))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # deletes and metadata changes from other nodes than the ones that added
    ids = sorted(acked)
    for k, id_ in enumerate(ids[:6]):
        node = (a, b, c)[k % 3]
        assert requests.delete(f"{node.url}/image/{id_}").status_code == 200
    for k, id_ in enumerate(ids[6:12]):
        node = (c, a, b)[k % 3]
        r = requests.post(f"{node.url}/data/{id_}", json={"image_data": {"label": "changed"}})
        assert r.status_code == 201, r.text
    converged([a, b, c])
    present = same_everywhere([a, b, c], [imgs[i] for i in range(0, 30, 5)])
    assert present == set(ids[6:])
    for s in (a, b, c):  # filters see other nodes' metadata without asking the database
        r = requests.post(s.url + "/data/query", json={"label": "changed"}).json()
        assert sorted(x["id"] for x in r["result"]) == ids[6:12]


def test_sequence_and_commit_order_race(nodes):
    """Node A draws its change number and then takes 1.5 s to commit; meanwhile node B writes.
    Without the write lock B's larger number would commit first, node C would apply it and never
    look at A's again. With it, B waits for A, and C ends with both."""
    (c,) = nodes(1)
    (a,) = nodes(1, env={"IMGSEARCH_FAULT_COMMIT_DELAY_MS": "1500"})
    (b,) = nodes(1)
    imgs = variants(2, seed=12)
    result = {}

    def add_on_a():
        result["a"] = post_add(a.url, imgs[0], {"by": "a"})

    a_start = time.monotonic()
    t = threading.Thread(target=add_on_a)
    t.start()
    time.sleep(0.5)  # A holds its change number now
    rb = post_add(b.url, imgs[1], {"by": "b"})
    b_done = time.monotonic()
    t.join()
    ra = result["a"]
    assert ra.status_code == 201 and rb.status_code == 201, (ra.text, rb.text)
    assert rb.json()["result"] > ra.json()["result"]
    assert b_done >= a_start + 1.5  # B could not commit before A did (A sleeps 1.5 s before committing)
    converged([a, b, c])
    assert all_ids(c.url) == {ra.json()["result"], rb.json()["result"]}
    same_everywhere([a, b, c], imgs)


def test_kill9_of_a_node_under_writes_loses_nothing(nodes):
    imgs = variants(16, seed=13)
    a, b = nodes(2)
    acked, lock = {}, threading.Lock()
    rnd = random.Random(5)
    for cycle in range(4):
        stop = threading.Event()

        def writer(n):
            while not stop.is_set():
                i = random.randrange(len(imgs))
                try:
                    r = post_add(a.url, imgs[i], {"i": i}, timeout=10)
                except requests.RequestException:
                    return  # A died under us: unanswered means unknown
                if r.status_code == 201:
                    with lock:
                        acked[r.json()["result"]] = i

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.3, 1.0))
        a.kill()
        stop.set()
        for t in threads:
            t.join()
        # B never stopped: it holds every acknowledged add, and nothing half-written exists
        converged([b])
        present = all_ids(b.url)
        assert set(acked) <= present, f"cycle {cycle}: lost {set(acked) - present}"
        a.start()
        converged([a, b])
        same_everywhere([a, b], imgs[:3])


def test_database_restart_under_load(nodes, pg):
    a, b = nodes(2)
    imgs = variants(8, seed=14)
    for i in range(4):
        assert post_add(a.url, imgs[i], {"i": i}).status_code == 201
    converged([a, b])
    pg.stop()
    # writes: a clear 503; searches: answered from each node's index, flagged stale
    r = post_add(a.url, imgs[4], {"i": 4})
    assert r.status_code == 503, r.text
    assert "database cannot be reached" in r.json()["detail"] and "store_unavailable" in r.json()["detail"]
    assert requests.delete(f"{b.url}/image/1").status_code == 503
    for s in (a, b):
        hit = nearest(s.url, imgs[2])[0]
        assert hit["dist"] < 1e-4 and hit["data"] == {"i": 2}
    time.sleep(0.6 + 5)  # past one poll and the staleness bound
    assert status(a)["store"]["stale"] is True
    h = requests.get(b.url + "/index/health", timeout=30)
    assert h.status_code == 503 and h.json()["result"] is False and "cannot be reached" in h.json()["message"]
    pg.start()
    # the nodes reconnect by themselves (back-off at most 5 s)
    deadline = time.monotonic() + 30
    while True:
        r = post_add(b.url, imgs[5], {"i": 5})
        if r.status_code == 201:
            break
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.5)
    converged([a, b])
    assert status(a)["store"]["stale"] is False
    assert len(same_everywhere([a, b], imgs[:6])) == 5


def test_database_crash_under_concurrent_load(nodes, pg):
    """PostgreSQL killed (crash, not a clean stop) while two nodes take adds, metadata changes and
    searches, then started again: writes only ever get 201 or 503, searches always 200, every
    acknowledged write is on both nodes afterwards, and both are healthy."""
    a, b = nodes(2)
    imgs = variants(12, seed=19)
    acked, unknown, statuses, lock = {}, set(), [], threading.Lock()
    stop = threading.Event()

    def writer(node, seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            i = rnd.randrange(len(imgs))
            try:
                if acked and rnd.random() < 0.3:
                    with lock:
                        id_ = rnd.choice(sorted(acked))
                    r = requests.post(f"{node.url}/data/{id_}", json={"image_data": {"i": acked[id_], "t": 1}},
                                      timeout=30)
                else:
                    r = post_add(node.url, imgs[i], {"i": i}, timeout=30)
                    if r.status_code == 201:
                        with lock:
                            acked[r.json()["result"]] = i
                with lock:
                    statuses.append(("write", r.status_code))
            except requests.RequestException as e:
                with lock:
                    statuses.append(("write", repr(e)))

    def searcher(node, seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            r = requests.post(node.url + "/image/search", params={"k": 3},
                              files={"image": ("q.jpg", imgs[rnd.randrange(len(imgs))])}, timeout=30)
            with lock:
                statuses.append(("search", r.status_code))

    threads = [threading.Thread(target=writer, args=(n, k)) for k, n in enumerate((a, b))] + \
              [threading.Thread(target=searcher, args=(n, 10 + k)) for k, n in enumerate((a, b))]
    for t in threads:
        t.start()
    time.sleep(1.5)
    pg.kill()
    time.sleep(2)
    pg.start()
    time.sleep(7)  # the nodes' back-off is at most 5 s: writes succeed again before the end
    stop.set()
    for t in threads:
        t.join()
    writes = [s for k, s in statuses if k == "write"]
    searches = [s for k, s in statuses if k == "search"]
    assert set(writes) <= {201, 503}, set(writes)
    assert 503 in writes and writes[-4:].count(201) >= 1, writes[-10:]
    assert set(searches) == {200}, set(searches)
    converged([a, b])
    for s in (a, b):
        assert set(acked) <= all_ids(s.url)
    same_everywhere([a, b], imgs[:3])


def test_late_node_catches_up_from_snapshot_and_log(nodes):
    a, c = nodes(2, extra=("--hnsw-threshold", "0"))
    imgs = variants(12, seed=15)
    ids = [post_add(a.url, imgs[i], {"i": i}).json()["result"] for i in range(6)]
    converged([a, c])
    assert c.stop() == 0  # a clean stop writes C's snapshot
    assert os.path.exists(os.path.join(c.data_dir, "index.hnsw"))
    # 1,000 changes while C is away: adds, deletes and many metadata changes
    for i in range(6, 12):
        ids.append(post_add(a.url, imgs[i], {"i": i}).json()["result"])
    for id_ in ids[:2]:
        assert requests.delete(f"{a.url}/image/{id_}").status_code == 200
    live = ids[2:]
    for n in range(1000 - 8):
        r = requests.post(f"{a.url}/data/{live[n % len(live)]}", json={"image_data": {"n": n}})
        assert r.status_code == 201
    c.start()
    log = open(c.log.name, "rb").read().decode(errors="replace")
    assert "1000 later change(s) replayed" in log, log[-2000:]
    converged([a, c])
    same_everywhere([a, c], imgs[2:5])
    last = {live[(1000 - 9 - k) % len(live)]: 1000 - 9 - k for k in range(len(live))}
    for id_, n in last.items():  # the replayed metadata is what C's filters see
        assert requests.get(f"{c.url}/data/{id_}").json()["result"]["data"] == {"n": n}
        r = requests.post(c.url + "/data/query", json={"n": n}).json()
        assert [x["id"] for x in r["result"]] == [id_]


def test_delete_all_and_reindex_on_one_node_reach_every_node(nodes):
    a, b, c = nodes(3)
    imgs = variants(6, seed=16)
    for i in range(6):
        assert post_add((a, b, c)[i % 3].url, imgs[i], {"i": i}).status_code == 201
    converged([a, b, c])
    r = requests.post(b.url + "/index/reindex")
    assert r.status_code == 200, r.text
    same_everywhere([a, b, c], imgs[:2])
    r = requests.delete(c.url + "/image/all/records")
    assert r.status_code == 200, r.text
    converged([a, b, c])
    for s in (a, b, c):
        assert all_ids(s.url) == set()
        assert requests.post(s.url + "/image/search", files={"image": ("q.jpg", imgs[0])}).json()["result"] == []
        assert health(s)["result"] is True
    # ids are never reused, whichever node adds next
    assert post_add(a.url, imgs[0], {}).json()["result"] > 6


def test_database_of_another_model_is_refused(nodes, binary, models_dir, tmp_path):
    (a,) = nodes(1)
    assert post_add(a.url, variants(1, seed=17)[0], {}).status_code == 201
    lite1 = os.path.join(models_dir, "efficientnet_lite1.json")
    if not os.path.exists(lite1):
        pytest.skip("efficientnet_lite1 not fetched")
    s = Server(binary, lite1, tmp_path / "other", ["--store", nodes.url])
    with pytest.raises(RuntimeError):
        s.start()
    log = open(s.log.name, "rb").read().decode(errors="replace")
    assert "the database holds vectors of model efficientnet_lite0" in log, log


def test_snapshot_of_another_database_is_not_loaded(binary, model, pg, tmp_path):
    imgs = variants(4, seed=18)
    first, second = pg.create_database(), pg.create_database()
    s = Server(binary, model, tmp_path / "node", ["--store", first, "--hnsw-threshold", "0"]).start()
    for i in range(3):
        post_add(s.url, imgs[i], {"i": i})
    assert s.stop() == 0 and os.path.exists(os.path.join(s.data_dir, "index.hnsw"))
    # the same cache directory, another database that happens to be further along
    t = Server(binary, model, tmp_path / "other", ["--store", second]).start()
    for i in range(4):
        post_add(t.url, imgs[3], {"other": i})
    t.stop()
    s = Server(binary, model, tmp_path / "node", ["--store", second, "--hnsw-threshold", "0"]).start()
    assert all_ids(s.url) == {1, 2, 3, 4}
    assert nearest(s.url, imgs[3])[0]["data"]["other"] in range(4)
    assert health(s)["result"] is True
    assert s.stop() == 0


def test_a_key_value_connection_string_works(binary, model, pg, tmp_path):
    db = pg.create_database().rsplit("/", 1)[1]
    conninfo = f"host=127.0.0.1 port={pg.port} user=postgres dbname={db} connect_timeout=3"
    s = Server(binary, model, tmp_path / "node", ["--store", conninfo]).start()
    img = variants(1, seed=20)[0]
    id_ = post_add(s.url, img, {"kv": True}).json()["result"]
    assert nearest(s.url, img)[0]["id"] == id_
    assert status(s)["store"]["kind"] == "postgresql"
    assert s.stop() == 0


def test_node_restarted_after_a_delete_all_replays_it_over_its_snapshot(nodes):
    """B's snapshot predates a delete-all made on A: B's start-up replays the clear over it (the
    loaded graph is replaced, never used after) and ends with what A holds."""
    a, b = nodes(2, extra=("--hnsw-threshold", "0"))
    imgs = variants(4, seed=23)
    for i in range(3):
        assert post_add(a.url, imgs[i], {"i": i}).status_code == 201
    converged([a, b])
    assert b.stop() == 0 and os.path.exists(os.path.join(b.data_dir, "index.hnsw"))
    assert requests.delete(a.url + "/image/all/records").status_code == 200
    new = post_add(a.url, imgs[3], {"i": 3}).json()["result"]
    b.start()
    converged([a, b])
    assert same_everywhere([a, b], imgs[3:]) == {new}
    assert nearest(b.url, imgs[3])[0]["id"] == new


def test_labels_reach_every_node_also_when_reindex_computes_them(nodes, pg):
    a, b = nodes(2)
    with open(f"{DARKNET}/dog.jpg", "rb") as f:
        dog = requests.post(a.url + "/image/add", files={"image": ("dog.jpg", f)}, timeout=120).json()["result"]
    converged([a, b])
    for s in (a, b):
        found = requests.get(s.url + "/images", params={"label": "dog"}, timeout=30).json()["result"]
        assert [r["id"] for r in found] == [dog]
    # an image stored before labels existed: reindex on one node labels it, and the other sees it
    pg.psql("UPDATE imgsearch.images SET labels = NULL", dbname=nodes.db)
    b.stop()
    b.start()  # rereads the rows: no labels now
    assert requests.get(b.url + "/images", params={"label": "dog"}, timeout=30).json()["result"] == []
    r = requests.get(b.url + "/index/reindex", timeout=300)
    assert "labelled 1 image(s)" in r.json()["message"], r.text
    converged([a, b])
    for s in (a, b):
        found = requests.get(s.url + "/images", params={"label": "animal"}, timeout=30).json()["result"]
        assert [r["id"] for r in found] == [dog], s.url
