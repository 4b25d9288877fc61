"""Back-pressure (issue 15): a request rate per key or client address (429 + Retry-After), and a
bounded queue in front of inference (503 + Retry-After) while the server keeps answering."""
import io
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from PIL import Image


def key_for(binary, s, name):
    where = ["--store", s.store_url] if s.store_url else ["--data", s.data_dir]
    p = subprocess.run([binary, "keys", "create", "--scope", "read", "--name", name, *where], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def get_from(s, source, path):
    """GET path from another loopback address (all of 127/8 is this machine): (status, head and body)."""
    with socket.socket() as c:
        c.bind((source, 0))
        c.settimeout(10)
        c.connect(("127.0.0.1", s.port))
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while piece := c.recv(65536):
            out += piece
    return int(out.split(b" ", 2)[1]), out


def test_rate_per_client_address(make_server):
    s = make_server(extra=["--rate-limit", "5"]).start()
    answers = [get_from(s, "127.0.0.2", "/images") for _ in range(12)]
    assert [code for code, _ in answers[:5]] == [200] * 5
    limited = [out for code, out in answers if code == 429]
    assert limited, [code for code, _ in answers]
    assert re.search(rb"\r\nRetry-After: [1-9]", limited[0], re.I)
    assert b"at most 5 a second per client address" in limited[0]
    assert get_from(s, "127.0.0.2", "/")[0] == 200  # the UI's files are not counted
    assert get_from(s, "127.0.0.3", "/images")[0] == 200  # another address has its own budget
    # 127.0.0.1 (a proxy on this machine, this test) speaks for many: no budget of its own
    assert all(requests.get(s.url + "/images").status_code == 200 for _ in range(20))
    time.sleep(1.3)
    assert get_from(s, "127.0.0.2", "/images")[0] == 200  # the budget refills


def test_rate_per_key(binary, make_server):
    s = make_server(extra=["--rate-limit", "3"])
    a, b = key_for(binary, s, "a"), key_for(binary, s, "b")
    s.start()
    codes = [requests.get(s.url + "/images", headers={"X-API-Key": a}).status_code for _ in range(8)]
    assert codes[:3] == [200] * 3 and 429 in codes
    r = requests.get(s.url + "/images", headers={"X-API-Key": a})
    assert r.status_code == 429 and "per key" in r.json()["detail"]
    assert requests.get(s.url + "/images", headers={"X-API-Key": b}).status_code == 200


def big_jpeg():
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_full_inference_queue_answers_503_and_health_goes_on(make_server):
    s = make_server(extra=["--threads", "1", "--queue", "1"]).start()
    data = big_jpeg()

    def search(_):
        return requests.post(s.url + "/image/search?k=1", files={"image": ("big.jpg", data)}, timeout=120)

    busy, health = [], []
    with ThreadPoolExecutor(12) as pool:
        for _ in range(4):
            futures = [pool.submit(search, i) for i in range(12)]
            t0 = time.monotonic()
            health.append(requests.get(s.url + "/index/health", timeout=30).status_code)
            health_ms = (time.monotonic() - t0) * 1000
            answers = [f.result() for f in futures]
            assert all(r.status_code in (200, 503) for r in answers), [r.status_code for r in answers]
            busy += [r for r in answers if r.status_code == 503]
            assert health_ms < 5000
            if busy:
                break
    assert busy, "12 searches at once never filled a queue of one"
    r = busy[0]
    assert r.headers["Retry-After"] == "1" and "busy" in r.json()["detail"] and "--queue" in r.json()["detail"]
    assert health == [200] * len(health)
    assert search(0).status_code == 200  # and once it drains, searches are served again
