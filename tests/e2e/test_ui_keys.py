"""The web UI against a server that needs API keys (issue 15): it asks for a key on the first 401,
remembers it (thumbnails load too), shows a 403 in words, and forgets the key on request. Runs
after test_ui.py in the same browser, on a server of its own."""
import subprocess

import pytest
import requests

from paths import DARKNET, SKIMAGE
from server import Server

PHOTOS = [f"{DARKNET}/dog.jpg", f"{SKIMAGE}/chelsea.png"]


def make_key(binary, s, scope, name):
    p = subprocess.run([binary, "keys", "create", "--scope", scope, "--name", name, "--data", s.data_dir],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture(scope="module")
def keyed(binary, model, tmp_path_factory, browser):
    s = Server(binary, model, tmp_path_factory.mktemp("e2e-keys") / "data", extra=["--require-keys"])
    keys = {"admin": make_key(binary, s, "admin", "ui-admin"), "read": make_key(binary, s, "read", "ui-read")}
    s.start()
    for path in PHOTOS:
        with open(path, "rb") as f:
            r = requests.post(s.url + "/image/add", files={"image": (path.rsplit("/", 1)[1], f)},
                              headers={"X-API-Key": keys["admin"]}, timeout=120)
        assert r.status_code == 201, r.text
    b = type(browser)(browser.d, s)  # the same Chromium, on this server
    yield b, keys
    b.js("localStorage.clear(); document.cookie = 'imgsearch_key=; Path=/; Max-Age=0'")
    b.console_errors()  # the 401s this test provoked are not the next test's errors
    assert s.stop() == 0


def dialog_open(b):
    return b.js("return document.getElementById('key-dialog').open")


def enter_key(b, key):
    b.el("#key-input").send_keys(key)
    b.el("#key-ok").click()
    b.wait(lambda d: d.execute_script("return document.readyState") == "complete")


def test_asks_for_a_key_and_remembers_it(keyed):
    b, keys = keyed
    b.open()
    b.wait(lambda d: dialog_open(b), msg="no key dialog after a 401")
    assert b.text("#summary-text") == "API key needed"
    assert not b.el("#key-why").is_displayed()  # no stored key was refused: nothing to explain
    b.shot("key-asked")
    enter_key(b, keys["read"])
    b.wait(lambda d: b.text("#summary-text").startswith("2 images"))
    assert not dialog_open(b) and b.el("#key-forget").is_displayed()
    assert b.js("return localStorage.getItem('imgsearch.apiKey')") == keys["read"]
    # thumbnails are <img> loads: the key's cookie carries them
    b.go("#/browse")
    b.wait(lambda d: len(b.els("#browse-grid li.card img")) == 2)
    b.wait(lambda d: b.js("return [...document.querySelectorAll('#browse-grid img')]"
                          ".every(i => i.complete && i.naturalWidth > 0)"), msg="thumbnails did not load")
    b.shot("key-browse")


def test_a_403_is_shown_in_words(keyed):
    b, keys = keyed
    first = requests.get(b.url + "/images", headers={"X-API-Key": keys["admin"]}).json()["result"][0]["id"]
    b.go(f"#/image/{first}")
    b.wait(lambda d: b.el("#detail-delete").is_enabled())
    b.el("#detail-delete").click()
    b.wait(lambda d: b.el("#confirm").is_displayed())
    b.el("#confirm-ok").click()
    b.wait(lambda d: "may not do this" in b.text("#detail-status"))
    assert "scope 'write'" in b.text("#detail-status") and "ui-read" in b.text("#detail-status")
    b.shot("key-403")
    assert requests.get(f"{b.url}/data/{first}", headers={"X-API-Key": keys["admin"]}).status_code == 200
    b.el("#detail-close").click()


def test_forget_then_a_refused_key(keyed):
    b, keys = keyed
    b.el("#key-forget").click()
    b.wait(lambda d: dialog_open(b), msg="no key dialog after forgetting the key")
    assert b.js("return localStorage.getItem('imgsearch.apiKey')") is None
    assert "imgsearch_key=" not in b.js("return document.cookie")
    enter_key(b, "isk_" + "A" * 43)  # well formed, unknown
    b.wait(lambda d: dialog_open(b) and b.el("#key-why").is_displayed())
    assert "unknown or revoked" in b.text("#key-why")
    b.shot("key-refused")
    b.el("#key-cancel").click()
