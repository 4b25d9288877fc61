"""GET /duplicates on a set with planted exact copies, near copies (re-encoded, resized,
brightened) and near misses (another framing of the same scene, other photos of the same kind):
the copies are grouped with their original, nothing else is, and the answer follows deletes."""
import io

import pytest

import requests
from PIL import Image, ImageEnhance

from paths import DARKNET, SKIMAGE


def jpeg(im, q=90):
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=q)
    return buf.getvalue()


def png(im):
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def add(server, name, data):
    r = requests.post(server.url + "/image/add", files={"image": (name, data)}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["result"]


def groups_of(server, **params):
    r = requests.get(server.url + "/duplicates", params=params, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_planted_copies_are_grouped_and_near_misses_are_not(server):
    dog_bytes = open(f"{DARKNET}/dog.jpg", "rb").read()
    dog = Image.open(io.BytesIO(dog_bytes))
    cat = Image.open(f"{SKIMAGE}/chelsea.png").convert("RGB")
    w, h = dog.size
    ids = {
        "dog": add(server, "dog.jpg", dog_bytes),
        "dog again": add(server, "dog-copy.jpg", dog_bytes),                       # byte-identical
        "dog q30": add(server, "dog-q30.jpg", jpeg(dog, 30)),                      # recompressed
        "dog half": add(server, "dog-half.png", png(dog.resize((w // 2, h // 2)))),  # resized
        "dog bright": add(server, "dog-bright.jpg", jpeg(ImageEnhance.Brightness(dog).enhance(1.2))),
        "cat": add(server, "cat.png", png(cat)),
        "cat q40": add(server, "cat-q40.jpg", jpeg(cat, 40)),
        # near misses: another framing of the dog scene, other animals, another cat photo
        "dog left": add(server, "dog-left.jpg", jpeg(dog.crop((0, 0, int(w * 0.55), h)))),
        "horses": add(server, "horses.jpg", open(f"{DARKNET}/horses.jpg", "rb").read()),
        "eagle": add(server, "eagle.jpg", open(f"{DARKNET}/eagle.jpg", "rb").read()),
        "coffee": add(server, "coffee.png", open(f"{SKIMAGE}/coffee.png", "rb").read()),
    }
    body = groups_of(server)
    assert body["total"] == 2 and body["images"] == len(ids) and body["max_dist"] == 0.15
    big, small = body["result"]
    assert big["size"] == 5 and small["size"] == 2  # largest first
    assert {m["id"] for m in big["members"]} == {ids[k] for k in ("dog", "dog again", "dog q30", "dog half",
                                                                   "dog bright")}
    assert {m["id"] for m in small["members"]} == {ids["cat"], ids["cat q40"]}
    assert not big["exact"] and not small["exact"]
    # the anchor: most copies around it, then the lowest id; the file sent twice is marked identical
    assert big["members"][0]["id"] == ids["dog"]
    assert {m["id"] for m in big["members"] if m["identical"]} == {ids["dog"], ids["dog again"]}
    dists = [m["dist"] for m in big["members"]]
    assert dists[0] == 0 and dists == sorted(dists) and max(dists) <= 0.15
    first = big["members"][0]
    assert {"name", "width", "height", "size", "content_type"} <= set(first)

    # a user keeps one of each group: the groups go, and the answer is not stale
    for m in big["members"][1:]:
        assert requests.delete(f"{server.url}/image/{m['id']}").status_code == 200
    body = groups_of(server)
    assert body["total"] == 1 and {m["id"] for m in body["result"][0]["members"]} == {ids["cat"], ids["cat q40"]}

    # two byte-identical files form an exact group
    add(server, "cat-copy.png", png(cat))
    body = groups_of(server)
    assert body["result"][0]["size"] == 3 and not body["result"][0]["exact"]
    # a tighter threshold keeps only what is (almost) the same file
    tight = groups_of(server, max_dist=0.001)
    assert tight["total"] == 1 and tight["result"][0]["exact"] and tight["result"][0]["size"] == 2
    # pages, and refused arguments
    page = groups_of(server, limit=1, offset=1)
    assert page["result"] == [] and page["next_offset"] is None
    for bad in ({"max_dist": "1.5"}, {"max_dist": "-0.1"}, {"limit": "0"}, {"limit": "101"}, {"offset": "-1"}):
        r = requests.get(server.url + "/duplicates", params=bad)
        assert r.status_code == 400, bad
    assert requests.get(server.url + "/index/health").json()["result"] is True


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_a_picture_stored_many_times_is_one_group(make_server, index):
    server = make_server(index, ["--hnsw-threshold", "0"] if index == "hnsw" else []).start()
    eagle = open(f"{DARKNET}/eagle.jpg", "rb").read()
    many = [add(server, f"eagle-{i}.jpg", eagle) for i in range(40)]  # more than one look's 32 neighbours
    few = [add(server, f"giraffe-{i}.jpg", open(f"{DARKNET}/giraffe.jpg", "rb").read()) for i in range(3)]
    body = groups_of(server)
    assert body["total"] == 2
    assert [g["size"] for g in body["result"]] == [40, 3]
    assert sorted(m["id"] for m in body["result"][0]["members"]) == many and body["result"][0]["exact"]
    assert sorted(m["id"] for m in body["result"][1]["members"]) == few and body["result"][1]["exact"]
    assert requests.get(server.url + "/index/status").json()["result"]["kind"] == index
