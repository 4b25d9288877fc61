"""Every endpoint of the HTTP API against the real binary and model, and every error path:
the right status, a clear message, and a server that keeps serving."""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import requests

from paths import DARKNET, JSON_TYPE, SKIMAGE


def add(server, path, data=None, name=None):
    with open(path, "rb") as f:
        files = {"image": (name or str(path).rsplit("/", 1)[-1], f.read())}
    form = {"data": json.dumps(data)} if data is not None else {}
    return requests.post(server.url + "/image/add", files=files, data=form, timeout=60)


def search(server, path, k=None, query=None, query_in_form=False):
    params = {} if k is None else {"k": k}
    form = {}
    if query is not None:
        (form if query_in_form else params)["query"] = query if isinstance(query, str) else json.dumps(query)
    with open(path, "rb") as f:
        return requests.post(server.url + "/image/search", params=params, files={"image": f}, data=form, timeout=60)


def test_add_get_search_delete(server, images):
    r = add(server, images / "cat.png", {"animal": "cat", "owner": {"city": "Oslo"}})
    assert r.status_code == 201 and r.json() == {"result": 1, "message": "saved"}
    dog = add(server, f"{DARKNET}/dog.jpg", {"animal": "dog"}).json()["result"]
    add(server, f"{SKIMAGE}/coffee.png")
    cat2 = add(server, images / "cat_q90.jpg", {"animal": "cat"}).json()["result"]

    # the original bytes, type and name come back
    r = requests.get(f"{server.url}/image/{dog}")
    assert r.status_code == 200
    assert r.content == open(f"{DARKNET}/dog.jpg", "rb").read()
    assert r.headers["Content-Type"] == "image/jpeg"
    assert r.headers["Content-Disposition"] == "attachment; filename=\"dog.jpg\"; filename*=UTF-8''dog.jpg"

    # nearest first, cosine distance, name and data
    res = search(server, images / "cat_half.png", k=3).json()["result"]
    assert [h["id"] for h in res[:2]] in ([1, cat2], [cat2, 1])
    assert res[0]["dist"] <= res[1]["dist"] <= res[2]["dist"]
    assert res[0]["data"]["animal"] == "cat" and res[0]["name"] in ("cat.png", "cat_q90.jpg")
    assert len(search(server, images / "cat.png", k=100).json()["result"]) == 4  # fewer than k: all
    assert len(search(server, images / "cat.png").json()["result"]) == 4       # k defaults to 10

    # delete: gone from every endpoint
    r = requests.delete(f"{server.url}/image/{cat2}")
    assert r.json() == {"result": cat2, "message": "deleted"}
    assert requests.get(f"{server.url}/image/{cat2}").status_code == 404
    assert requests.get(f"{server.url}/data/{cat2}").status_code == 404
    assert requests.delete(f"{server.url}/image/{cat2}").status_code == 404
    assert cat2 not in [h["id"] for h in search(server, images / "cat_q90.jpg", k=10).json()["result"]]
    assert cat2 not in [r["id"] for r in requests.get(server.url + "/images").json()["result"]]
    assert requests.get(server.url + "/index/health").json()["result"] is True


def test_filters_in_search_query_and_listing(server, images):
    add(server, images / "cat.png", {"animal": "cat", "age": 3})
    dog = add(server, f"{DARKNET}/dog.jpg", {"animal": "dog", "age": 7}).json()["result"]
    add(server, f"{SKIMAGE}/rocket.jpg", {"tags": ["space"]})
    res = search(server, images / "cat.png", k=10, query={"animal": "dog"}).json()["result"]
    assert [h["id"] for h in res] == [dog]
    res = search(server, images / "cat.png", k=10, query={"age": {"$gte": 3}}, query_in_form=True).json()["result"]
    assert len(res) == 2 and res[0]["data"]["animal"] == "cat"
    r = requests.post(server.url + "/data/query", json={"tags": "space"})
    assert r.status_code == 200 and r.json()["total"] == 1 and r.json()["result"][0]["name"] == "rocket.jpg"
    page = requests.get(server.url + "/images", params={"offset": 1, "limit": 1}).json()
    assert page["total"] == 3 and [r["id"] for r in page["result"]] == [dog]
    listed = requests.get(server.url + "/images", params={"query": json.dumps({"animal": {"$in": ["cat", "dog"]}})})
    assert listed.json()["total"] == 2
    similar = requests.get(f"{server.url}/image/{dog}/similar", params={"k": 5}).json()["result"]
    assert dog not in [h["id"] for h in similar] and len(similar) == 2


def test_data_read_and_replace(server, images, dims):
    add(server, images / "cat.png", {"animal": "cat"})
    d = requests.get(server.url + "/data/1").json()["result"]
    assert d["id"] == 1 and d["name"] == "cat.png" and d["content_type"] == "image/png"
    assert (d["width"], d["height"]) == (451, 300) and d["size"] == (images / "cat.png").stat().st_size
    assert d["created_at"].endswith("Z") and d["data"] == {"animal": "cat"}
    assert len(d["vector"]) == dims and abs(sum(x * x for x in d["vector"]) - 1) < 1e-3
    r = requests.post(server.url + "/data/1", json={"image_data": {"animal": "tiger", "n": [1, 2]}})
    assert r.status_code == 201 and r.json() == {"result": 1, "message": "saved"}
    assert requests.get(server.url + "/data/1").json()["result"]["data"] == {"animal": "tiger", "n": [1, 2]}
    assert requests.post(server.url + "/data/query", json={"animal": "tiger"}).json()["total"] == 1


def test_delete_all_and_reindex(server, images):
    for name in ("cat.png", "cat_q90.jpg", "rgba.png"):
        add(server, images / name)
    r = requests.get(server.url + "/index/reindex")
    assert r.json() == {"result": None, "message": "reindex finished"}
    assert requests.get(server.url + "/index/health").json()["result"] is True
    assert requests.delete(server.url + "/image/all/records").json()["result"] == 3
    assert search(server, images / "cat.png").json()["result"] == []
    assert requests.get(server.url + "/images").json()["total"] == 0
    h = requests.get(server.url + "/index/health").json()
    assert h["result"] is True and "0 images" in h["message"]
    assert add(server, images / "cat.png").json()["result"] == 4  # ids are never reused


def expect(r, status, text):
    assert r.status_code == status, (r.status_code, r.text)
    assert text in r.json()["detail"], r.json()


def test_error_paths_and_the_server_keeps_serving(server, images):
    url = server.url
    expect(add(server, images / "empty.jpg"), 400, "empty")
    expect(add(server, images / "truncated.jpg"), 400, "the JPEG data is truncated or damaged")
    expect(add(server, images / "text.jpg"), 415, "not a supported image format")
    expect(add(server, images / "bomb.png"), 413, "megapixels")
    expect(add(server, images / "cat.png", data=[1, 2]), 400, "JSON object")
    r = requests.post(url + "/image/add", files={"image": open(images / "cat.png", "rb")}, data={"data": "{oops"})
    expect(r, 400, "not valid JSON")
    expect(requests.post(url + "/image/add", data={"x": "1"}, files={"other": b"x"}), 400, "missing form field 'image'")
    expect(requests.post(url + "/image/add", json={"image": "x"}), 415, "multipart/form-data")
    expect(search(server, images / "cat.png", k=0), 400, "k must be an integer between 1 and 1000")
    expect(search(server, images / "cat.png", k=1001), 400, "k must be")
    expect(search(server, images / "cat.png", k="ten"), 400, "k must be")
    expect(search(server, images / "cat.png", query="{\"a\": {\"$gt\": []}}"), 400, "filter.a.$gt")
    expect(search(server, images / "cat.png", query="{nope"), 400, "not valid JSON")
    expect(requests.get(url + "/image/999"), 404, "no image with id 999")
    expect(requests.get(url + "/image/abc"), 400, "integer from 1 to")
    expect(requests.get(url + "/image/-1"), 400, "integer from 1 to")
    expect(requests.delete(url + "/image/999"), 404, "999")
    expect(requests.get(url + "/data/999"), 404, "999")
    expect(requests.post(url + "/data/999", json={"image_data": {}}), 404, "999")
    expect(requests.post(url + "/data/1", data="{broken", headers=JSON_TYPE), 400, "JSON")
    expect(requests.post(url + "/data/1", json={"image_data": [1]}), 400, "image_data must be a JSON object")
    expect(requests.post(url + "/data/query", data="[1]", headers=JSON_TYPE), 400, "must be a JSON object")
    expect(requests.get(url + "/images", params={"limit": 0}), 400, "limit")
    expect(requests.get(url + "/nothing/here"), 404, "no route")
    expect(requests.put(url + "/image/1"), 405, "not allowed")
    # after all of that, it still works
    assert add(server, images / "cat.png").status_code == 201
    assert requests.get(url + "/index/health").json()["result"] is True
    assert server.alive()
    # the refused uploads left nothing on disk (their bytes are written while they are decoded)
    assert blob_names(server) == {hashlib.sha256((images / "cat.png").read_bytes()).hexdigest()}


def blob_names(server):
    return server.stored_blobs()


def test_same_bytes_twice_then_one_deleted(server, images):
    """Two images with the same bytes share one blob; deleting one keeps it for the other, and an
    add racing deletes of the same bytes still ends with its blob on disk."""
    a = add(server, images / "cat.png").json()["result"]
    b = add(server, images / "cat.png").json()["result"]
    assert requests.delete(f"{server.url}/image/{a}").status_code == 200
    assert requests.get(f"{server.url}/image/{b}").content == (images / "cat.png").read_bytes()
    assert requests.delete(f"{server.url}/image/{b}").status_code == 200
    assert blob_names(server) == set()
    old = [add(server, images / "cat.png").json()["result"] for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:  # deletes and adds of the same bytes at once
        deleting = [pool.submit(requests.delete, f"{server.url}/image/{i}") for i in old]
        adding = [pool.submit(add, server, images / "cat.png") for _ in range(4)]
        assert all(f.result().status_code == 200 for f in deleting)
        new = [f.result().json()["result"] for f in adding]
    for i in new:
        assert requests.get(f"{server.url}/image/{i}").content == (images / "cat.png").read_bytes()
    assert len(blob_names(server)) == 1
    server.stop()
    server.start()  # and the restart's orphan sweep keeps it
    assert requests.get(f"{server.url}/image/{new[0]}").content == (images / "cat.png").read_bytes()


def test_upload_limit(make_server, images):
    s = make_server(extra=["--max-upload", "100000"]).start()
    expect(add(s, images / "cat.png"), 413, "upload limit of 100000 bytes")  # 223 KB
    assert add(s, images / "cat_half.jpg").status_code == 201
    assert s.alive()


def test_thumbnails(server, images):
    import io

    from PIL import Image
    add(server, images / "cat_12mp.jpg")
    add(server, images / "exif_rotate90.jpg")
    r = requests.get(server.url + "/image/1/thumbnail", params={"size": 200})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "JPEG" and im.size == (200, 150)  # 4000 x 3000 fitted into 200 x 200
    r = requests.get(server.url + "/image/2/thumbnail", params={"size": 100, "format": "webp"})
    im = Image.open(io.BytesIO(r.content))
    assert r.headers["Content-Type"] == "image/webp" and im.size == (50, 100)  # EXIF rotation applied
    assert im.convert("RGB").getpixel((25, 10))[0] > 200  # red on top once upright
    assert requests.get(server.url + "/image/1/thumbnail").status_code == 200  # default size
    expect(requests.get(server.url + "/image/1/thumbnail", params={"format": "gif"}), 400, "jpeg or webp")
    expect(requests.get(server.url + "/image/1/thumbnail", params={"size": 5}), 400, "size")
    expect(requests.get(server.url + "/image/9/thumbnail"), 404, "no image with id 9")


def test_openapi_and_docs(server):
    spec = requests.get(server.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    routes = {("post", "/image/add"), ("get", "/image/{id}"), ("delete", "/image/{id}"), ("post", "/image/search"),
              ("get", "/image/{id}/similar"), ("get", "/image/{id}/thumbnail"), ("delete", "/image/all/records"),
              ("get", "/images"), ("get", "/data/{id}"), ("post", "/data/{id}"), ("post", "/data/query"),
              ("get", "/index/reindex"), ("get", "/index/health"), ("get", "/openapi.json"), ("get", "/docs")}
    described = {(m, p) for p, ms in spec["paths"].items() for m in ms}
    assert routes <= described
    for p, ms in spec["paths"].items():
        for m, op in ms.items():
            assert op["summary"] and op["responses"], (m, p)
    docs = requests.get(server.url + "/docs")
    assert docs.status_code == 200 and docs.headers["Content-Type"].startswith("text/html")
    script = requests.get(server.url + "/ui/docs.js").text  # the page's code, allowed by its CSP
    assert "/openapi.json" in docs.text and "/ui/docs.js" in docs.text and "http" not in script.split("fetch")[0]


def test_max_dist_returns_only_what_is_that_close(server, images):
    cat = add(server, images / "cat.png").json()["result"]
    near = add(server, images / "cat_q90.jpg").json()["result"]
    dog = add(server, f"{DARKNET}/dog.jpg").json()["result"]
    everything = search(server, images / "cat.png", k=3).json()["result"]
    assert [h["id"] for h in everything] == [cat, near, dog]
    gap = (everything[1]["dist"] + everything[2]["dist"]) / 2  # between the near copy and the dog
    r = requests.post(server.url + "/image/search", params={"k": 3, "max_dist": gap},
                      files={"image": open(images / "cat.png", "rb")})
    assert [h["id"] for h in r.json()["result"]] == [cat, near]
    r = requests.post(server.url + "/image/search", params={"k": 3, "max_dist": 0.000001},
                      files={"image": open(images / "cat.png", "rb")})
    assert [h["id"] for h in r.json()["result"]] == [cat]
    r = requests.get(f"{server.url}/image/{cat}/similar", params={"k": 5, "max_dist": gap})
    assert [h["id"] for h in r.json()["result"]] == [near]
    r = requests.get(f"{server.url}/image/{cat}/similar", params={"k": 5, "max_dist": 2})
    assert [h["id"] for h in r.json()["result"]] == [near, dog]
    for bad in ("-0.1", "2.5", "abc", "nan", "", "1e400"):
        r = requests.get(f"{server.url}/image/{cat}/similar", params={"max_dist": bad})
        assert r.status_code == 400 and r.json()["detail"] == "max_dist must be a number between 0 and 2", bad
        r = requests.post(server.url + "/image/search", params={"max_dist": bad},
                          files={"image": open(images / "cat.png", "rb")})
        assert r.status_code == 400 and "max_dist" in r.json()["detail"], bad
