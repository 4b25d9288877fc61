"""`imgsearch import` (issue 17): a folder tree with images, non-images, a symbolic link loop and
metadata (sidecars, JSON lines, CSV) into a server or a data directory; refusals listed with their
reasons; an interrupted run run again stores nothing twice and misses nothing; usage and key errors
stop with exit 2. Also POST /images/exists, the lookup that makes the re-run cheap."""
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
import requests
from PIL import Image, ImageDraw

from paths import DARKNET, JSON_TYPE
from server import Server, embedded_only, free_port


@pytest.fixture
def servers(binary, model, tmp_path):
    made = []

    def _make(name="data", start=True):
        s = Server(binary, model, tmp_path / name)
        made.append(s)
        return s.start() if start else s
    yield _make
    for s in made:
        assert s.stop() in (0, None)


def run_import(binary, *args, env=None, cwd=None):
    p = subprocess.run([binary, "import", *map(str, args)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})}, cwd=cwd)
    return p.returncode, summary(p.stdout), p.stderr


def summary(out):
    """The summary on stdout: counts by label, and refused files (path -> reason)."""
    counts, refused, in_list = {}, {}, False
    for line in out.splitlines():
        if line == "refused files:":
            in_list = True
        elif in_list:
            path, reason = line.strip().split(": ", 1)
            refused[path] = reason
        elif ": " in line:
            k, v = line.split(": ", 1)
            counts[k] = int(v) if v.isdigit() else v
    counts["refused files"] = refused
    return counts


def listing(s):
    rows = requests.get(s.url + "/images", params={"limit": 1000}, timeout=30).json()["result"]
    return {r["name"]: r["data"] for r in rows}, len(rows)


def jpeg(i, size=96):
    """A distinct small JPEG (seeded noise and a shape)."""
    rnd = random.Random(i)
    im = Image.effect_noise((size, size), 40 + i % 50).convert("RGB")
    ImageDraw.Draw(im).ellipse((rnd.randrange(40), rnd.randrange(40), 60 + rnd.randrange(30), 60 + rnd.randrange(30)),
                               fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path, images):
    """Images, non-images, a nested folder, a link loop, a hidden folder, sidecars, repeated bytes."""
    t = tmp_path / "tree"
    (t / "nested" / "deeper").mkdir(parents=True)
    (t / ".cache").mkdir()
    shutil.copy(images / "cat.png", t / "cat.png")
    (t / "cat.png.json").write_text('{"animal": "cat", "n": 1}')       # sidecar NAME.EXT.json
    shutil.copy(images / "cat.webp", t / "cat.webp")
    shutil.copy(f"{DARKNET}/dog.jpg", t / "dog.jpg")
    (t / "dog.json").write_text('{"animal": "dog"}')                  # sidecar NAME.json
    (t / "notes.txt").write_text("not an image\n")
    shutil.copy(images / "empty.jpg", t / "empty.jpg")
    shutil.copy(images / "text.jpg", t / "text.jpg")                   # a text file named .jpg
    shutil.copy(f"{DARKNET}/eagle.jpg", t / "nested" / "eagle.jpg")
    shutil.copy(f"{DARKNET}/giraffe.jpg", t / "nested" / "giraffe.jpg")
    (t / "nested" / "giraffe.json").write_text('{"animal": ')          # a broken sidecar: refused
    shutil.copy(images / "truncated.jpg", t / "nested" / "truncated.jpg")  # refused by the server
    shutil.copy(f"{DARKNET}/horses.jpg", t / "nested" / "deeper" / "horses.jpg")
    shutil.copy(f"{DARKNET}/dog.jpg", t / "nested" / "deeper" / "dog-copy.jpg")  # same bytes as dog.jpg
    os.symlink("..", t / "nested" / "loop")                            # a symbolic link loop
    os.symlink("nested/eagle.jpg", t / "zz-eagle-link.jpg")             # a link to a file walked already
    shutil.copy(f"{DARKNET}/kite.jpg", t / ".cache" / "kite.jpg")      # hidden: left out
    return t


STORED = {"cat.png": {"animal": "cat", "n": 1}, "cat.webp": {}, "dog.jpg": {"animal": "dog"}, "eagle.jpg": {},
          "horses.jpg": {}}


def test_a_tree_is_imported_once_with_its_metadata_and_refusals_listed(binary, servers, tree):
    s = servers()
    code, out, err = run_import(binary, "--server", s.url, "--jobs", "3", tree)
    assert code == 1, err
    assert (out["imported"], out["already stored"], out["same bytes as another file of this run"],
            out["skipped non-image files"], out["refused"]) == (5, 0, 2, 3, 2), out
    refused = out["refused files"]
    assert set(refused) == {f"{tree}/nested/giraffe.jpg", f"{tree}/nested/truncated.jpg"}
    assert "giraffe.json" in refused[f"{tree}/nested/giraffe.jpg"] and "not JSON" in refused[f"{tree}/nested/giraffe.jpg"]
    assert "truncated or damaged" in refused[f"{tree}/nested/truncated.jpg"], refused
    assert "HTTP 400" in refused[f"{tree}/nested/truncated.jpg"]
    names, n = listing(s)
    assert n == len(STORED) and names == STORED
    # run again: everything stored is skipped, the same files are refused again
    code, out, _ = run_import(binary, "--server", s.url, tree)
    assert code == 1 and out["imported"] == 0 and out["already stored"] == 5 and out["refused"] == 2
    assert listing(s)[1] == len(STORED)
    # one file as the PATH
    code, out, _ = run_import(binary, "--server", s.url, tree / "dog.jpg", tree / "cat.webp")
    assert code == 0 and out["already stored"] == 2 and out["imported"] == 0


def test_metadata_from_json_lines_and_csv(binary, servers, tmp_path, images):
    t = tmp_path / "photos"
    (t / "b").mkdir(parents=True)
    shutil.copy(f"{DARKNET}/dog.jpg", t / "a.jpg")
    shutil.copy(images / "cat.png", t / "b" / "c.png")
    shutil.copy(f"{DARKNET}/eagle.jpg", t / "d.jpg")
    (t / "d.json").write_text('{"sidecar": true}')  # not read: --metadata is the one source
    jsonl = tmp_path / "meta.jsonl"
    jsonl.write_text(json.dumps({"path": "a.jpg", "data": {"breed": "malamute", "age": 4}}) + "\n\n"
                     + json.dumps({"path": str(t / "b" / "c.png"), "data": {"animal": "cat"}}) + "\n"
                     + json.dumps({"path": "missing.jpg", "data": {}}) + "\n")
    s = servers("one")
    code, out, err = run_import(binary, "--server", s.url, "--metadata", jsonl, t)
    assert code == 0 and out["imported"] == 3, err
    assert "missing.jpg" in err  # an entry that matched no image is named
    assert listing(s)[0] == {"a.jpg": {"breed": "malamute", "age": 4}, "c.png": {"animal": "cat"}, "d.jpg": {}}

    csv = tmp_path / "meta.csv"  # paths relative to PATH, to the working directory, quoted fields
    csv.write_text('path,breed,note\r\na.jpg,husky,"one, two"\r\n"photos/b/c.png",,"say ""hi"""\r\n')
    s2 = servers("two")
    code, out, err = run_import(binary, "--server", s2.url, "--metadata", csv, "photos", cwd=tmp_path)
    assert code == 0 and out["imported"] == 3, err
    assert listing(s2)[0] == {"a.jpg": {"breed": "husky", "note": "one, two"}, "c.png": {"note": 'say "hi"'},
                              "d.jpg": {}}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.jpg", "data": {}}\n{"path": "b.jpg", "data": [1]}\n')
    code, _, err = run_import(binary, "--server", s2.url, "--metadata", bad, t)
    assert code == 2 and "line 2" in err
    nopath = tmp_path / "nopath.csv"
    nopath.write_text("file,breed\na.jpg,husky\n")
    code, _, err = run_import(binary, "--server", s2.url, "--metadata", nopath, t)
    assert code == 2 and "path" in err


def wait_for(cond, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def total(s):
    return requests.get(s.url + "/images", params={"limit": 1}, timeout=30).json()["total"]


def test_interrupted_runs_resume_without_doubles_or_gaps(binary, servers, tmp_path):
    n = 80
    t = tmp_path / "many"
    t.mkdir()
    for i in range(n):
        (t / f"img{i:03d}.jpg").write_bytes(jpeg(i))
    s = servers()
    cmd = [binary, "import", "--server", s.url, "--jobs", "1", str(t)]

    # Ctrl-C: the image under way is finished and counted, then exit 2
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: total(s) >= 5, "5 images stored")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "interrupted" in err, err
    first = summary(out)["imported"]
    assert total(s) == first and 5 <= first < n

    # SIGKILL: nothing reported; what the server stored stays stored
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: total(s) >= first + 5, "5 more images stored")
    p.kill()
    p.wait()
    stable = [-1]

    def settled():  # the request under way when the importer died may still finish on the server
        now = total(s)
        same = now == stable[0]
        stable[0] = now
        time.sleep(0.3)
        return same
    wait_for(settled, "the server to settle")
    second = stable[0]
    assert first + 5 <= second < n

    code, out, err = run_import(binary, "--server", s.url, "--jobs", "2", t)
    assert code == 0, err
    assert out["already stored"] == second and out["imported"] == n - second and out["refused"] == 0
    names, count = listing(s)
    assert count == n and sorted(names) == [f"img{i:03d}.jpg" for i in range(n)]


@embedded_only
def test_into_a_data_directory_without_a_server(binary, model, servers, tree, tmp_path):
    data = tmp_path / "data"
    code, out, err = run_import(binary, "--data", data, "--model", model, "--jobs", "2", tree)
    assert code == 1 and out["imported"] == 5 and out["refused"] == 2, err
    assert "corrupt_image" in out["refused files"][f"{tree}/nested/truncated.jpg"]
    code, out, _ = run_import(binary, "--data", data, "--model", model, tree)
    assert code == 1 and out["imported"] == 0 and out["already stored"] == 5
    s = servers("data")  # the same directory, served
    assert listing(s) == (STORED, len(STORED))
    code, _, err = run_import(binary, "--data", data, "--model", model, tree)
    assert code == 2 and "in use" in err  # a server holds the directory


def test_usage_and_unreachable_server_exit_2(binary, tree, tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    for args, text in [((), "PATH"), (("--server", nobody, "--data", tmp_path / "d", tree), "exclude"),
                       (("--jobs", "0", tree), "--jobs"), (("--server", "ftp://x", tree), "http"),
                       (("--server", nobody, tmp_path / "nowhere"), "nowhere"),
                       (("--server", nobody, "--metadata", tmp_path / "none.csv", tree), "none.csv"),
                       (("--server", nobody, tree), "cannot reach")]:
        code, _, err = run_import(binary, *args)
        assert code == 2 and text in err, (args, err)


def test_api_keys(binary, servers, tmp_path):
    s = servers(start=False)

    def key(scope):
        where = ["--store", s.store_url] if s.store_url else ["--data", s.data_dir]
        p = subprocess.run([binary, "keys", "create", "--scope", scope, *where], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()
    write, read = key("write"), key("read")
    s.start()
    t = tmp_path / "few"
    t.mkdir()
    shutil.copy(f"{DARKNET}/dog.jpg", t / "dog.jpg")
    code, _, err = run_import(binary, "--server", s.url, t)
    assert code == 2 and "refused the API key (HTTP 401)" in err
    code, _, err = run_import(binary, "--server", s.url, "--api-key", "isk_" + "x" * 43, t)
    assert code == 2 and "HTTP 401" in err
    code, out, err = run_import(binary, "--server", s.url, "--api-key", read, t)  # may look, may not add
    assert code == 2 and "HTTP 403" in err and "stopped" in err and out["imported"] == 0
    code, out, err = run_import(binary, "--server", s.url, t, env={"IMGSEARCH_API_KEY": write})
    assert code == 0 and out["imported"] == 1, err
    # the lookup itself needs read scope
    r = requests.post(s.url + "/images/exists", data='{"sha256": []}', headers={**JSON_TYPE, "X-API-Key": read})
    assert r.status_code == 200


def test_images_exists_endpoint(servers):
    s = servers()
    dog = open(f"{DARKNET}/dog.jpg", "rb").read()
    have, other = hashlib.sha256(dog).hexdigest(), hashlib.sha256(b"x").hexdigest()
    assert requests.post(s.url + "/image/add", files={"image": ("dog.jpg", dog)}).status_code == 201

    def ask(body, headers=JSON_TYPE):
        return requests.post(s.url + "/images/exists", data=body, headers=headers, timeout=30)
    r = ask(json.dumps({"sha256": [other, have, other]}))
    assert r.status_code == 200 and r.json() == {"result": [have]}
    assert ask(json.dumps({"sha256": [have.upper()]})).status_code == 400
    assert "64 lowercase" in ask(json.dumps({"sha256": ["abc"]})).json()["detail"]
    assert ask(json.dumps({"sha256": [1]})).status_code == 400
    assert ask(json.dumps({"hashes": []})).status_code == 400
    assert ask(json.dumps({"sha256": [other] * 1001})).status_code == 400
    assert ask(json.dumps({"sha256": []}), headers={}).status_code == 415
    assert requests.get(s.url + "/images/exists").status_code == 405
