"""How the server serves the UI's files: fixed types and charsets, no-cache with an ETag, a CSP on
the page, and no file outside the whitelist (no traversal, no other names)."""
import os

import requests

from paths import ROOT

WEB = os.path.join(ROOT, "web")


def test_page_and_assets(ui_server):
    url = ui_server.url
    page = requests.get(url + "/")
    assert page.status_code == 200 and page.text == open(os.path.join(WEB, "index.html")).read()
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    # every file the page loads is served from /ui/, with its type
    for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("api.js", "text/javascript; charset=utf-8"),
                        ("style.css", "text/css; charset=utf-8"), ("icon.svg", "image/svg+xml")):
        assert f"/ui/{name}" in page.text or name == "api.js"
        r = requests.get(f"{url}/ui/{name}")
        assert r.status_code == 200, name
        assert r.headers["Content-Type"] == ctype and r.content == open(os.path.join(WEB, name), "rb").read()
        assert r.headers["Cache-Control"] == "no-cache" and "Content-Security-Policy" not in r.headers
        # revalidation: the same ETag gives 304 and no body; another one gives the file
        etag = r.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        again = requests.get(f"{url}/ui/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert requests.get(f"{url}/ui/{name}", headers={"If-None-Match": '"0"'}).status_code == 200
    # the API's own files keep working, now with validators too
    assert requests.get(url + "/openapi.json").headers["ETag"]


def test_only_whitelisted_names(ui_server):
    url = ui_server.url
    for path in ("/ui/missing.js", "/ui/openapi.json", "/ui/App.js", "/ui/a.b.js", "/ui/.js", "/ui/app",
                 "/ui/..%2FCMakeLists.txt", "/ui/%2e%2e%2fREADME.md", "/ui/app.js/x", "/ui/",
                 "/ui/" + "a" * 70 + ".js"):
        r = requests.get(url + path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/json" and "detail" in r.json()
    # a path the client does not normalise
    s = requests.Session()
    req = requests.Request("GET", url + "/ui/../README.md").prepare()
    req.url = url + "/ui/../README.md"
    assert s.send(req).status_code == 404
    assert requests.post(url + "/ui/app.js").status_code == 405
    assert requests.delete(url + "/").status_code == 405
