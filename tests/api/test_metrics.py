"""GET /metrics (issue 17): the Prometheus text exposition, read by a strict parser written here
from the format's rules (version 0.0.4), its counters moving by exactly what the requests did, its
index gauges equal to /index/status, its scope, and (when Debian's prometheus is installed) a real
Prometheus scraping it. Runs on the embedded store and (IMGSEARCH_TEST_STORE=postgresql) on
PostgreSQL."""
import math
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from paths import DARKNET, SKIMAGE
from server import free_port, store_kind

DOG, CAT, PERSON = f"{DARKNET}/dog.jpg", f"{SKIMAGE}/chelsea.png", f"{DARKNET}/person.jpg"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---- a strict parser of the text format ------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_RE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL_NAME}={LABEL_VALUE}(?:,{LABEL_NAME}={LABEL_VALUE})*)?,?)\}})?"
                       rf" (\S+)(?: (-?[0-9]+))?$")
LABEL_RE = re.compile(rf"({LABEL_NAME})=({LABEL_VALUE})")
HELP_RE = re.compile(rf"^# HELP ({NAME}) ((?:[^\\\n]|\\[\\n])*)$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def unescape(quoted):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), quoted[1:-1])


def number(text):
    """A sample value as the format spells it (Go's ParseFloat, plus NaN and +/-Inf)."""
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf"))
    assert re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text), f"bad value {text!r}"
    return float(text)


def parse(text):
    """{family: {"type", "help", "samples": {(name, frozenset(labels)): value}}}, checking every rule."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    families, current, done = {}, None, set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line!r}"
        if not line.strip():
            continue
        if line.startswith("#"):
            m = HELP_RE.match(line) or TYPE_RE.match(line)
            if not m:
                assert not re.match(r"^# *(HELP|TYPE)\b", line), f"malformed {where}"
                continue  # a plain comment
            name = m.group(1)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            kind = "help" if line.startswith("# HELP") else "type"
            assert fam[kind] is None, f"second {kind.upper()} for {name}, {where}"
            assert not fam["samples"], f"{kind.upper()} after samples of {name}, {where}"
            assert name not in done, f"{name} announced again after other families, {where}"
            fam[kind] = m.group(2)
            if current and current != name:
                done.add(current)
            current = name
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"malformed sample, {where}"
        name, labels_text, value = m.group(1), m.group(2) or "", number(m.group(3))
        labels = LABEL_RE.findall(labels_text)
        assert ",".join(f"{k}={v}" for k, v in labels) == labels_text.rstrip(","), f"bad labels, {where}"
        label_map = {k: unescape(v) for k, v in labels}
        assert len(label_map) == len(labels), f"a label twice, {where}"
        assert not any(k.startswith("__") for k in label_map), f"reserved label name, {where}"
        owner = [f for f, d in families.items()
                 if any(name == f + s for s in SUFFIXES.get(d["type"], ("",)))]
        assert owner, f"sample of no declared family, {where}"
        fam = owner[0]
        assert fam == current and fam not in done, f"samples of {fam} are not one group, {where}"
        d = families[fam]
        assert d["type"] and d["help"] is not None, f"{fam} has samples before its HELP and TYPE, {where}"
        if d["type"] == "histogram":
            assert ("le" in label_map) == name.endswith("_bucket"), f"le on a bucket and only there, {where}"
        key = (name, frozenset(label_map.items()))
        assert key not in d["samples"], f"the same series twice, {where}"
        d["samples"][key] = value
    for fam, d in families.items():
        assert d["type"] and d["help"] is not None, f"{fam} lacks HELP or TYPE"
        if d["type"] == "counter":
            assert all(v >= 0 for v in d["samples"].values()), fam
        if d["type"] == "histogram":
            check_histogram(fam, d["samples"])
    return families


def check_histogram(fam, samples):
    groups = {}
    for (name, labels), v in samples.items():
        rest = frozenset((k, x) for k, x in labels if k != "le")
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            g["buckets"].append((number(dict(labels)["le"]), v))
        else:
            g[name[len(fam) + 1:]] = v
    for labels, g in groups.items():
        where = f"{fam}{dict(labels)}"
        assert g["sum"] is not None and g["count"] is not None and g["buckets"], where
        bounds = sorted(g["buckets"])
        assert bounds[-1][0] == math.inf, f"{where}: no +Inf bucket"
        assert all(a[1] <= b[1] for a, b in zip(bounds, bounds[1:])), f"{where}: buckets not cumulative"
        assert bounds[-1][1] == g["count"], f"{where}: +Inf bucket != _count"
        assert g["sum"] >= 0, where


def scrape(server, headers=None):
    r = requests.get(server.url + "/metrics", headers=headers or {}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    return parse(r.text)


def series(fams, family, name=None):
    """{frozenset(labels): value} of one family's samples named name (default: the family)."""
    name = name or family
    return {labels: v for (n, labels), v in fams.get(family, {"samples": {}})["samples"].items() if n == name}


def value(fams, family, name=None, **labels):
    return series(fams, family, name).get(frozenset(labels.items()), 0.0)


def deltas(before, after, family, name=None):
    """What each series of a counter moved by between two scrapes (all of them, zeros left out);
    asserts none went down."""
    a, b = series(before, family, name), series(after, family, name)
    out = {}
    for labels in set(a) | set(b):
        d = b.get(labels, 0.0) - a.get(labels, 0.0)
        assert d >= 0, f"{family} {dict(labels)} went down"
        if d:
            out[labels] = d
    return out


def labels(**kw):
    return frozenset(kw.items())


def counters_never_decrease(before, after):
    for fam, d in before.items():
        if d["type"] in ("counter", "histogram"):
            for (name, lbl), v in d["samples"].items():
                if d["type"] == "counter" or not name.endswith("_sum"):
                    assert after[fam]["samples"].get((name, lbl), -1) >= v, (name, dict(lbl))


def add(server, path, name=None):
    with open(path, "rb") as f:
        return requests.post(server.url + "/image/add", files={"image": (name or os.path.basename(path), f)},
                             timeout=120)


def store_files(data_dir):
    """The embedded store's files as /metrics counts them: imgsearch.db, its -wal, blobs/."""
    total = sum(os.path.getsize(os.path.join(data_dir, f)) for f in ("imgsearch.db", "imgsearch.db-wal")
                if os.path.exists(os.path.join(data_dir, f)))
    for d, _, files in os.walk(os.path.join(data_dir, "blobs")):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


# ---- the tests --------------------------------------------------------------------------------

def test_the_parser_refuses_what_the_format_forbids():
    good = ('# HELP a_total A "counter" with \\\\ and \\n.\n# TYPE a_total counter\n'
            'a_total{x="q\\"\\\\\\n"} 3\n# TYPE h histogram\n# HELP h H.\n'
            'h_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.7\nh_count 2\n')
    assert value(parse(good), "a_total", x='q"\\\n') == 3
    bad = [
        "a 1",                                             # no final line feed
        "a 1\n",                                           # no family declared
        "# TYPE a gauge\na 1\n",                           # no HELP
        "# HELP a A.\n# TYPE a gauge\n# TYPE a gauge\na 1\n",   # TYPE twice
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n",  # HELP after samples
        '# HELP a A.\n# TYPE a gauge\na{x="\\t"} 1\n',     # an escape the format lacks
        '# HELP a A.\n# TYPE a gauge\na{x="1",x="2"} 1\n',  # a label twice
        '# HELP a A.\n# TYPE a gauge\na{1x="1"} 1\n',      # a bad label name
        "# HELP a A.\n# TYPE a gauge\na one\n",            # a bad value
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",         # a series twice
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",  # a negative counter
        "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\na 1\n",  # not grouped
        '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',  # no +Inf
        '# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',  # +Inf != count
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse(text)


def test_counters_move_by_what_the_requests_did(server, images, dims):
    before = scrape(server)
    if store_kind() == "sqlite":
        # measured at the first scrape (then cached for a minute), and nothing was written since
        assert value(before, "imgsearch_store_size_bytes") == store_files(server.data_dir) > 0
    else:
        assert "imgsearch_store_size_bytes" not in before  # PostgreSQL: not measured (README)
    assert "imgsearch_index_snapshot_age_seconds" not in before  # the exact index has no snapshot
    assert value(before, "imgsearch_inference_queue_depth") == 0
    assert value(before, "imgsearch_http_requests_in_flight") >= 1  # the scrape itself

    first, second = add(server, DOG), add(server, CAT)
    assert first.status_code == second.status_code == 201
    bad = add(server, images / "truncated.jpg")
    assert bad.status_code == 400
    hits = requests.post(server.url + "/image/search?k=2", files={"image": open(PERSON, "rb")}, timeout=120)
    assert hits.status_code == 200 and len(hits.json()["result"]) == 2
    assert requests.get(server.url + "/image/999999").status_code == 404
    assert requests.get(server.url + "/no/such/path").status_code == 404
    assert requests.delete(f"{server.url}/image/{first.json()['result']}").status_code == 200
    assert requests.head(server.url + "/metrics").status_code == 200
    after = scrape(server)

    counters_never_decrease(before, after)
    route = "imgsearch_http_requests_total"
    assert deltas(before, after, route) == {
        labels(method="POST", route="/image/add", status="201"): 2,
        labels(method="POST", route="/image/add", status="400"): 1,
        labels(method="POST", route="/image/search", status="200"): 1,
        labels(method="GET", route="/image/{id}", status="404"): 1,
        labels(method="GET", route="other", status="404"): 1,
        labels(method="DELETE", route="/image/{id}", status="200"): 1,
        labels(method="GET", route="/metrics", status="200"): 1,  # the first scrape
        labels(method="HEAD", route="/metrics", status="200"): 1,
    }
    duration = "imgsearch_http_request_duration_seconds"
    assert deltas(before, after, duration, duration + "_count") == {
        labels(route="/image/add"): 3, labels(route="/image/search"): 1, labels(route="/image/{id}"): 2,
        labels(route="other"): 1, labels(route="/metrics"): 2}
    assert deltas(before, after, "imgsearch_images_added_total") == {labels(): 2}
    assert deltas(before, after, "imgsearch_images_refused_total") == {labels(reason="corrupt_image"): 1}
    reasons = {dict(lbl)["reason"] for lbl in series(after, "imgsearch_images_refused_total")}
    assert {"corrupt_image", "unsupported_image", "too_large", "image_too_large", "busy"} <= reasons
    assert deltas(before, after, "imgsearch_images_deleted_total") == {labels(): 1}
    # three uploads and one query were decoded; the truncated upload stopped there, the other
    # three waited in the inference queue once each and, one at a time, each had a run of its own
    assert deltas(before, after, "imgsearch_inferences_total") == {labels(): 4}
    wait = "imgsearch_inference_queue_wait_seconds"
    assert deltas(before, after, wait, wait + "_count") == {labels(): 3}
    assert deltas(before, after, "imgsearch_inference_runs_total") == {labels(): 3}
    assert value(after, "imgsearch_inference_queue_depth") == value(after, "imgsearch_inference_sessions_busy") == 0
    assert value(after, "imgsearch_inference_sessions_max") >= 1

    status = requests.get(server.url + "/index/status").json()["result"]
    assert value(after, "imgsearch_index_images") == status["count"] == 1
    assert series(after, "imgsearch_index_info") == {labels(kind=status["kind"]): 1}
    assert value(after, "imgsearch_index_building") == int(status["reindex"]["running"]) == 0
    assert value(after, "imgsearch_index_last_change_seq") == status["seq"]
    assert value(after, "imgsearch_store_last_change_seq") == status["store"]["seq"]
    assert status["kind"] == "exact"  # a row: its vector and its id
    assert value(after, "imgsearch_index_memory_bytes") == status["count"] * (4 * dims + 8)

    assert value(after, "process_resident_memory_bytes") > 1 << 20
    assert value(after, "process_open_fds") > 3
    assert value(after, "process_max_fds") >= value(after, "process_open_fds")
    started = value(after, "process_start_time_seconds")
    assert time.time() - 600 < started <= time.time()
    assert value(after, "process_cpu_seconds_total") > 0


def test_hnsw_snapshot_age(make_server, images):
    """An HNSW index gets a snapshot after its first writes: the age appears; a restart loads the
    snapshot and reports its file's age; the memory gauge is the graph's."""
    s = make_server(extra=["--hnsw-threshold", "0"]).start()
    try:
        assert "imgsearch_index_snapshot_age_seconds" not in scrape(s)  # an empty graph has none
        began = time.time()
        assert add(s, DOG).status_code == 201
        deadline = time.monotonic() + 60  # the maintenance thread saves it in the background
        while "imgsearch_index_snapshot_age_seconds" not in (fams := scrape(s)):
            assert time.monotonic() < deadline, "no snapshot was saved"
            time.sleep(0.1)
        age = value(fams, "imgsearch_index_snapshot_age_seconds")
        assert 0 <= age <= time.time() - began
        status = requests.get(s.url + "/index/status").json()["result"]
        assert status["kind"] == "hnsw" and series(fams, "imgsearch_index_info") == {labels(kind="hnsw"): 1}
        assert value(fams, "imgsearch_index_memory_bytes") == status["hnsw"]["memory_bytes"] > 0
    finally:
        assert s.stop() == 0
    saved = os.path.getmtime(os.path.join(s.data_dir, "index.hnsw"))
    s.start()
    try:
        fams = scrape(s)
        age = value(fams, "imgsearch_index_snapshot_age_seconds")
        assert 0 <= age <= time.time() - saved + 1  # the file's age (its time rounded to the millisecond)
        assert value(fams, "imgsearch_index_images") == 1
    finally:
        assert s.stop() == 0


def read_key(binary, s, scope="read"):
    """A new key of that scope in the (not yet started) server's store."""
    where = ["--store", s.store_url] if s.store_url else ["--data", s.data_dir]
    made = subprocess.run([binary, "keys", "create", "--scope", scope, "--name", f"prom-{scope}", *where],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_metrics_needs_the_read_scope(make_server, binary):
    s = make_server()
    key = read_key(binary, s)
    s.start()
    try:
        r = requests.get(s.url + "/metrics")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        fams = scrape(s, {"Authorization": f"Bearer {key}"})
        assert value(fams, "imgsearch_http_requests_total", method="GET", route="/metrics", status="401") == 1
        assert requests.post(s.url + "/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 405
    finally:
        assert s.stop() == 0


def wait_ready(url, deadline):
    """Until Prometheus says it is ready (before that, its API answers 503 in plain text)."""
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/-/ready", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"prometheus at {url} was not ready in time")


@pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian's prometheus package is not installed")
def test_a_real_prometheus_scrapes_it(make_server, binary, tmp_path):
    """Prometheus 2 (Debian's package) scrapes a server that has keys with the README's scrape
    config (every second instead of 15 s); its own parser must take every line (a scrape it cannot
    parse or is refused sets up to 0)."""
    server = make_server()
    key, write = read_key(binary, server), read_key(binary, server, "write")
    server.start()
    try:
        with open(DOG, "rb") as f:
            r = requests.post(server.url + "/image/add", files={"image": ("dog.jpg", f)},
                              headers={"X-API-Key": write}, timeout=120)
        assert r.status_code == 201
        (tmp_path / "imgsearch.key").write_text(key + "\n")
        run_prometheus(server, tmp_path)
    finally:
        assert server.stop() == 0


def run_prometheus(server, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""scrape_configs:
  - job_name: imgsearch
    scrape_interval: 1s
    authorization:
      credentials_file: {tmp_path / "imgsearch.key"}
    static_configs:
      - targets: ["127.0.0.1:{server.port}"]
""")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        wait_ready(f"http://127.0.0.1:{port}", deadline)
        api = f"http://127.0.0.1:{port}/api/v1"

        def query(q):
            r = requests.get(api + "/query", params={"query": q}, timeout=10).json()
            assert r["status"] == "success", r
            return r["data"]["result"]
        while not (up := query('up{job="imgsearch"}')):
            assert time.monotonic() < deadline, f"no scrape in 60 s; see {log.name}"
            time.sleep(0.2)
        targets = requests.get(api + "/targets", timeout=10).json()["data"]["activeTargets"]
        assert up[0]["value"][1] == "1", ("the scrape failed", [t["lastError"] for t in targets])
        assert [t["lastError"] for t in targets] == [""]
        added = query('imgsearch_http_requests_total{route="/image/add",status="201"}')
        assert [(a["metric"]["method"], a["value"][1]) for a in added] == [("POST", "1")]
        buckets = query('imgsearch_http_request_duration_seconds_bucket{route="/image/add"}')
        assert {b["metric"]["le"] for b in buckets} == {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                                                         "2.5", "5", "10", "+Inf"}
        assert query('imgsearch_index_images')[0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
