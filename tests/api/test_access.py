"""Who may do what (issue 15): API keys and scopes on every endpoint, the keys command, revocation
without a restart, the log, cross-origin writes, and requests refused at their headers. Runs on
the embedded store and (IMGSEARCH_TEST_STORE=postgresql) on PostgreSQL, where keys live in the
database every node shares."""
import os
import re
import socket
import subprocess
import time

import pytest
import requests

from paths import DARKNET, JSON_TYPE, SKIMAGE
from server import Server

DOG, CAT = f"{DARKNET}/dog.jpg", f"{SKIMAGE}/chelsea.png"
KEY_RE = re.compile(r"^isk_[A-Za-z0-9_-]{43}$")


def keys_cmd(binary, s, *args):
    """`imgsearch keys ...` on the server's store (its data directory, or its PostgreSQL)."""
    where = ["--store", s.store_url] if s.store_url else ["--data", s.data_dir]
    return subprocess.run([binary, "keys", *args, *where], capture_output=True, text=True, timeout=60)


def create_key(binary, s, scope, name):
    p = keys_cmd(binary, s, "create", "--scope", scope, "--name", name)
    assert p.returncode == 0, p.stderr
    key = p.stdout.strip()
    assert p.stdout == key + "\n" and KEY_RE.match(key), p.stdout  # the key alone on standard output
    return key


def add(s, path, key, **kw):
    with open(path, "rb") as f:
        return requests.post(s.url + "/image/add", files={"image": (os.path.basename(path), f)},
                             headers={"X-API-Key": key}, timeout=120, **kw)


@pytest.fixture
def keyed(binary, model, tmp_path):
    """A server whose store holds a key of each scope and one revoked key."""
    s = Server(binary, model, tmp_path / "data")
    keys = {scope: create_key(binary, s, scope, f"the-{scope}") for scope in ("read", "write", "admin")}
    keys["revoked"] = create_key(binary, s, "admin", "gone")
    assert keys_cmd(binary, s, "revoke", "gone").returncode == 0
    s.start()
    yield s, keys
    assert s.stop() == 0


# What each endpoint needs. {id} is an image that exists; {victim} one a write may delete.
ENDPOINTS = [
    ("GET", "/", None), ("GET", "/ui/app.js", None), ("GET", "/docs", None), ("GET", "/openapi.json", None),
    ("GET", "/images", "read"), ("GET", "/image/{id}", "read"), ("HEAD", "/image/{id}", "read"),
    ("GET", "/image/{id}/thumbnail", "read"), ("GET", "/image/{id}/similar", "read"), ("GET", "/data/{id}", "read"),
    ("POST", "/data/query", "read"), ("POST", "/image/search", "read"), ("GET", "/duplicates", "read"),
    ("GET", "/index/health", "read"), ("GET", "/index/status", "read"), ("GET", "/no/such/path", "read"),
    ("POST", "/image/add", "write"), ("POST", "/data/{id}", "write"), ("DELETE", "/image/{victim}", "write"),
    ("POST", "/index/reindex", "admin"), ("GET", "/index/reindex", "admin"),
    ("DELETE", "/image/all/records", "admin"),
]
RANK = {None: 0, "read": 1, "write": 2, "admin": 3}
WHO = {"none": None, "read": "read", "write": "write", "admin": "admin", "revoked": None, "malformed": None}


def call(s, method, path, headers):
    headers = dict(headers)
    kw = {}
    if path in ("/image/add", "/image/search"):
        kw["files"] = {"image": ("dog.jpg", open(DOG, "rb").read())}
    elif path.startswith("/data/"):
        kw["data"] = '{"image_data": {"x": 1}}' if path != "/data/query" else "{}"
        headers.update(JSON_TYPE)
    return requests.request(method, s.url + path, headers=headers, timeout=120, **kw)


def test_every_endpoint_against_every_kind_of_key(keyed):
    s, keys = keyed
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    base = add(s, CAT, keys["write"]).json()["result"]
    presented = {"none": {}, "read": {"X-API-Key": keys["read"]}, "write": {"Authorization": f"Bearer {keys['write']}"},
                 "admin": {"authorization": f"bearer {keys['admin']}"}, "revoked": {"X-API-Key": keys["revoked"]},
                 "malformed": {"Authorization": f"Basic {keys['admin']}"}}
    for method, template, need in ENDPOINTS:
        for who, headers in presented.items():
            victim = add(s, DOG, keys["write"]).json()["result"] if "{victim}" in template else 0
            path = template.replace("{id}", str(base)).replace("{victim}", str(victim))
            if path == "/image/all/records" and RANK[WHO[who]] >= RANK[need]:
                continue  # done last, below
            r = call(s, method, path, headers)
            where = f"{method} {path} with {who}"
            if need is None:
                assert r.status_code == 200, where
            elif who in ("none", "revoked", "malformed"):
                assert r.status_code == 401, (where, r.status_code, r.text)
                assert r.headers["WWW-Authenticate"].startswith('Bearer realm="imgsearch"'), where
                assert method == "HEAD" or r.json()["detail"], where
            elif RANK[WHO[who]] < RANK[need]:
                assert r.status_code == 403, (where, r.status_code, r.text)
                assert method == "HEAD" or (f"scope '{need}'" in r.json()["detail"] and
                                            f"key 'the-{who}'" in r.json()["detail"]), where
            else:
                assert r.status_code in (200, 201, 404), (where, r.status_code, r.text)
                assert r.status_code != 404 or path == "/no/such/path", where
            if victim and r.status_code != 200:  # what a refused delete left is still there
                assert requests.get(f"{s.url}/data/{victim}", headers=admin).status_code == 200, where
    r = requests.delete(s.url + "/image/all/records", headers=admin)
    assert r.status_code == 200 and requests.get(s.url + "/images", headers=admin).json()["total"] == 0


def test_keys_command_round_trip(binary, keyed):
    s, keys = keyed
    listing = keys_cmd(binary, s, "list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {"the-read", "the-write", "the-admin"}  # the revoked one is gone
    assert rows["the-read"][1] == "read" and rows["the-admin"][1] == "admin" and rows["the-read"][-1] == "never"
    assert not any(k in listing.stdout for k in keys.values())
    # used → its last use is recorded (the first use at once, later ones at most once a minute)
    assert requests.get(s.url + "/images", headers={"X-API-Key": keys["read"]}).status_code == 200
    deadline = time.monotonic() + 10
    while keys_cmd(binary, s, "list").stdout.splitlines()[-1].split()[-1] == "never" and time.monotonic() < deadline:
        time.sleep(0.2)
    read_row = [line for line in keys_cmd(binary, s, "list").stdout.splitlines() if line.startswith("the-read")][0]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", read_row), read_row
    # the store never holds a key in clear (the embedded store: every file of the data directory)
    if not s.store_url:
        for root, _, files in os.walk(s.data_dir):
            for f in files:
                blob = open(os.path.join(root, f), "rb").read()
                assert not any(k.encode() in blob for k in keys.values()), f
    # refused: a taken name, a bad name, a bad scope, an unknown key to revoke
    assert keys_cmd(binary, s, "create", "--scope", "read", "--name", "the-read").returncode == 2
    assert keys_cmd(binary, s, "create", "--scope", "read", "--name", "a b").returncode == 2
    assert keys_cmd(binary, s, "create", "--scope", "root").returncode == 2
    p = keys_cmd(binary, s, "revoke", "nobody")
    assert p.returncode == 2 and "no key is named 'nobody'" in p.stderr


def test_a_key_made_or_revoked_counts_without_a_restart(binary, keyed):
    s, keys = keyed
    fresh = create_key(binary, s, "read", "late")
    deadline = time.monotonic() + 5
    while requests.get(s.url + "/images", headers={"X-API-Key": fresh}).status_code != 200:
        assert time.monotonic() < deadline, "a new key was not accepted within 5 s"
        time.sleep(0.1)
    assert keys_cmd(binary, s, "revoke", "late").returncode == 0
    deadline = time.monotonic() + 5
    while (r := requests.get(s.url + "/images", headers={"X-API-Key": fresh})).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still worked after 5 s"
        time.sleep(0.1)
    assert "unknown or revoked" in r.json()["detail"]
    assert requests.get(s.url + "/images", headers={"X-API-Key": keys["read"]}).status_code == 200


def test_header_forms_and_the_ui_cookie(keyed):
    s, keys = keyed
    url = s.url + "/images"
    assert requests.get(url, headers={"Authorization": f"Bearer  {keys['read']} "}).status_code == 200
    assert requests.get(url, cookies={"imgsearch_key": keys["read"]}).status_code == 200
    both = {"Authorization": f"Bearer {keys['read']}", "X-API-Key": keys["admin"]}
    r = requests.get(url, headers=both)
    assert r.status_code == 401 and "different keys" in r.json()["detail"]
    for bad in ("Bearer", "Bearer ", "Token abc", "Bearer a\tb"):
        r = requests.get(url, headers={"Authorization": bad})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"], bad
    r = requests.get(url, headers={"X-API-Key": "x" * 300})
    assert r.status_code == 401
    # a header wins over the cookie: a read header with an admin cookie may not delete all
    r = requests.delete(s.url + "/image/all/records", headers={"X-API-Key": keys["read"]},
                        cookies={"imgsearch_key": keys["admin"]})
    assert r.status_code == 403


def test_log_names_the_key_and_the_client_never_the_key(keyed):
    s, keys = keyed
    requests.get(s.url + "/images", headers={"X-API-Key": keys["write"]})
    requests.get(s.url + "/images", headers={"X-API-Key": keys["revoked"]})
    s.stop()
    log = open(s.log.name).read()
    assert re.search(r"^GET /images 200 [\d.]+ms 127\.0\.0\.1 key=the-write$", log, re.M), log[-2000:]
    assert re.search(r"^GET /images 401 [\d.]+ms 127\.0\.0\.1 key=-$", log, re.M)
    assert not any(k in log for k in keys.values())
    s.start()


def test_require_keys_and_the_open_network_warning(binary, model, tmp_path):
    s = Server(binary, model, tmp_path / "data", extra=["--require-keys"])
    with pytest.raises(RuntimeError):
        s.start()
    assert "--require-keys, but the store holds no API key" in open(s.log.name).read()
    # without keys, on an address others reach: one warning line, and it serves as before
    open_server = Server(binary, model, tmp_path / "open")
    open_server.extra += ["--host", "0.0.0.0"]  # the later --host wins
    open_server.start()
    try:
        assert requests.get(open_server.url + "/images").status_code == 200
    finally:
        open_server.stop()
    log = open(open_server.log.name).read()
    assert log.count("warning: no API key exists, so anyone who can reach 0.0.0.0") == 1
    # with a key it starts, and asks for it
    create_key(binary, s, "read", "r")
    s.start()
    try:
        assert requests.get(s.url + "/images").status_code == 401
    finally:
        s.stop()


def test_no_key_means_open_as_the_replaced_api(server):
    r = requests.get(server.url + "/images")
    assert r.status_code == 200 and "WWW-Authenticate" not in r.headers
    assert "warning: no API key" not in open(server.log.name).read()  # loopback: nothing to warn of


def raw(s, data, read_timeout=10):
    """Sends bytes as they are; returns the first response (head and body) or what came before the
    connection closed."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=read_timeout) as c:
        try:
            c.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the rest was read: the answer is still there to read
        out = b""
        while True:
            head_end = out.find(b"\r\n\r\n")
            if head_end >= 0:
                m = re.search(rb"\r\nContent-Length: (\d+)", out[:head_end], re.I)
                if len(out) >= head_end + 4 + (int(m.group(1)) if m else 0):
                    return out
            try:
                piece = c.recv(65536)
            except ConnectionResetError:
                return out
            if not piece:
                return out
            out += piece


# Found by the hostile-input probe: bodies refused at their headers, and ambiguous lengths.
def test_requests_refused_at_their_headers(server):
    t = time.monotonic()
    out = raw(server, b"POST /image/add HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n"
                      b"Expect: 100-continue\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413") and b"100 Continue" not in out, out[:200]
    out = raw(server, b"POST /image/add HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n" + b"x" * 65536)
    assert out.startswith(b"HTTP/1.1 413") and b"upload limit" in out, out[:200]
    assert time.monotonic() - t < 5  # answered, not read to the end
    out = raw(server, b"POST /data/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
    assert out.startswith(b"HTTP/1.1 400") and b"Content-Length headers that disagree" in out, out[:200]
    out = raw(server, b"POST /data/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"both Content-Length and Transfer-Encoding" in out, out[:200]
    assert requests.get(server.url + "/index/health").json()["result"] is True


def test_cross_origin_writes_and_json_bodies(make_server):
    s = make_server(extra=["--cors-origin", "https://app.example"]).start()
    with open(DOG, "rb") as f:
        id_ = requests.post(s.url + "/image/add", files={"image": ("dog.jpg", f)}).json()["result"]
    body = '{"image_data": {"owner": "page"}}'
    data = f"{s.url}/data/{id_}"
    # what a foreign page can send without asking first: refused, and nothing changed
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Origin": "http://evil.example", "Content-Type": "application/json"},
                    {"Origin": "null", "Content-Type": "application/json"}):
        r = requests.post(data, data=body, headers=headers)
        assert r.status_code == 403 and "another origin" in r.json()["detail"], (headers, r.text)
    with open(DOG, "rb") as f:
        r = requests.post(s.url + "/image/add", files={"image": ("x.jpg", f)}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = requests.get(s.url + "/index/reindex", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert requests.get(s.url + "/images").json()["total"] == 1
    assert requests.get(data).json()["result"]["data"] == {}
    # not declared JSON: 415, whoever sends it
    for ct in (None, "text/plain", "application/x-www-form-urlencoded"):
        r = requests.post(data, data=body, headers={"Content-Type": ct} if ct else {})
        assert r.status_code == 415 and "application/json" in r.json()["detail"], ct
    # the server's own pages, a client that is no browser, and an allowed origin may
    assert requests.post(data, data=body, headers={"Origin": s.url, **JSON_TYPE}).status_code == 201
    assert requests.post(data, data=body, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 201
    r = requests.post(data, data=body, headers={"Origin": "https://app.example", **JSON_TYPE})
    assert r.status_code == 201 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert requests.get(s.url + "/index/reindex").status_code == 200  # the replaced API's GET, from a script
    # preflight: the allowed origin gets the methods and headers, another gets 403
    pre = {"Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "x-api-key"}
    r = requests.options(s.url + "/image/1", headers={"Origin": "https://app.example", **pre})
    assert r.status_code == 204 and "DELETE" in r.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in r.headers["Access-Control-Allow-Headers"]
    r = requests.options(s.url + "/image/1", headers={"Origin": "https://other.example", **pre})
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(s.url + "/images", headers={"Origin": "https://other.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_bad_cors_origin_is_refused_at_start(make_server):
    s = make_server(extra=["--cors-origin", "app.example/path"])
    with pytest.raises(RuntimeError):
        s.start()
    assert "--cors-origin needs an origin like" in open(s.log.name).read()
