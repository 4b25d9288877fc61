"""Search by what images show (issue 17): each image's most probable ImageNet classes are stored at
add time, and `label=` finds images by a class or any broader WordNet concept ("dog" every breed,
"animal" dogs, cats and birds, "vehicle" a moped), ranked by probability; with search and similar
it restricts the neighbours. Photos from Debian's darknet and python3-skimage packages."""
import sqlite3

import pytest
import requests

from paths import DARKNET, JSON_TYPE, SKIMAGE
from server import embedded_only

PHOTOS = {
    "dog.jpg": (f"{DARKNET}/dog.jpg", {"kind": "pet"}),             # malamute / German shepherd
    "chelsea.png": (f"{SKIMAGE}/chelsea.png", {"kind": "pet"}),     # tabby, tiger cat, Egyptian cat
    "eagle.jpg": (f"{DARKNET}/eagle.jpg", {"kind": "wild"}),        # kite (the bird), bald eagle
    "motorcycle.png": (f"{SKIMAGE}/motorcycle_left.png", {}),      # moped, motor scooter
    "coffee.png": (f"{SKIMAGE}/coffee.png", {}),                    # espresso
}


@pytest.fixture
def photos(server):
    import json
    ids = {}
    for name, (path, data) in PHOTOS.items():
        with open(path, "rb") as f:
            r = requests.post(server.url + "/image/add", files={"image": (name, f), "data": (None, json.dumps(data))},
                              timeout=120)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["result"]
    return ids


def names(rows):
    return [r["name"] for r in rows]


def by_label(s, label, **params):
    r = requests.get(s.url + "/images", params={"label": label, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_each_image_is_stored_with_its_most_probable_classes(server, photos):
    row = requests.get(f"{server.url}/data/{photos['dog.jpg']}", timeout=30).json()["result"]
    labels = row["labels"]
    assert 1 <= len(labels) <= 5
    assert labels[0]["name"] in ("malamute", "German shepherd")
    assert all(set(l) == {"class", "name", "prob"} and 0.01 <= l["prob"] <= 1 for l in labels)
    assert [l["prob"] for l in labels] == sorted((l["prob"] for l in labels), reverse=True)
    cat = requests.get(f"{server.url}/data/{photos['chelsea.png']}", timeout=30).json()["result"]["labels"]
    assert {l["name"] for l in cat[:2]} <= {"tabby", "tiger cat", "Egyptian cat"}
    # the listing carries them too
    listed = requests.get(server.url + "/images", timeout=30).json()["result"]
    assert all(isinstance(r["labels"], list) and r["labels"] for r in listed)


def test_a_word_finds_its_class_and_every_class_under_it(server, photos):
    dogs = by_label(server, "dog")
    assert names(dogs["result"]) == ["dog.jpg"] and dogs["total"] == 1
    assert dogs["result"][0]["label_score"] >= 0.5
    assert names(by_label(server, "Dogs")["result"]) == ["dog.jpg"]  # case and plural do not matter
    assert names(by_label(server, "malamute", label_min=0.2)["result"]) == ["dog.jpg"]
    assert names(by_label(server, "cat")["result"]) == ["chelsea.png"]
    assert names(by_label(server, "bird")["result"]) == ["eagle.jpg"]
    animals = by_label(server, "animal")["result"]
    assert set(names(animals)) == {"dog.jpg", "chelsea.png", "eagle.jpg"}
    scores = [r["label_score"] for r in animals]
    assert scores == sorted(scores, reverse=True)  # most probable first
    assert names(by_label(server, "vehicle")["result"]) == ["motorcycle.png"]
    assert names(by_label(server, "beverage")["result"]) == ["coffee.png"]
    # a higher bar leaves out the less certain
    assert by_label(server, "dog", label_min=0.99)["result"] == []
    # with a metadata filter, both must hold; pages work as in any listing
    r = requests.get(server.url + "/images", params={"label": "animal", "query": '{"kind": "pet"}'}, timeout=30).json()
    assert set(names(r["result"])) == {"dog.jpg", "chelsea.png"}
    page = by_label(server, "animal", limit=2)
    assert names(page["result"]) == names(animals)[:2] and page["next_offset"] == 2
    r = requests.post(server.url + "/data/query", params={"label": "animal"}, data='{"kind": "wild"}', headers=JSON_TYPE,
                      timeout=30)
    assert names(r.json()["result"]) == ["eagle.jpg"]


def test_search_and_similar_restricted_to_what_images_show(server, photos):
    with open(PHOTOS["motorcycle.png"][0], "rb") as f:
        r = requests.post(server.url + "/image/search", params={"k": 10, "label": "animal"},
                          files={"image": ("q.png", f)}, timeout=120)
    assert r.status_code == 200, r.text
    assert set(names(r.json()["result"])) == {"dog.jpg", "chelsea.png", "eagle.jpg"}
    # the label may come as a form field too
    with open(PHOTOS["motorcycle.png"][0], "rb") as f:
        r = requests.post(server.url + "/image/search", params={"k": 10},
                          files={"image": ("q.png", f), "label": (None, "cat")}, timeout=120)
    assert names(r.json()["result"]) == ["chelsea.png"]
    r = requests.get(f"{server.url}/image/{photos['dog.jpg']}/similar", params={"label": "vehicle"}, timeout=30)
    assert names(r.json()["result"]) == ["motorcycle.png"]


def test_words_that_name_nothing_and_bad_bounds_are_400(server, photos):
    for params, says in (({"label": "qwertyzzz"}, 'label "qwertyzzz" names no ImageNet class'),
                         ({"label": "dog", "label_min": "2"}, "label_min"),
                         ({"label": "dog", "label_min": "0"}, "label_min"),
                         ({"label": "dog", "label_min": "x"}, "label_min")):
        r = requests.get(server.url + "/images", params=params, timeout=30)
        assert r.status_code == 400, (params, r.text)
        assert says in r.json()["detail"], r.text
    with open(PHOTOS["dog.jpg"][0], "rb") as f:
        r = requests.post(server.url + "/image/search", params={"label": "qwertyzzz"}, files={"image": ("q.jpg", f)},
                          timeout=120)
    assert r.status_code == 400 and "names no ImageNet class" in r.json()["detail"]
    r = requests.get(f"{server.url}/image/{photos['dog.jpg']}/similar", params={"label": "\x01"}, timeout=30)
    assert r.status_code == 400
    assert requests.get(server.url + "/index/health", timeout=30).json()["result"] is True


def test_labels_outlive_a_restart_and_deletes_take_them(server, photos):
    assert server.stop() == 0
    server.start()
    assert names(by_label(server, "dog")["result"]) == ["dog.jpg"]
    assert requests.delete(f"{server.url}/image/{photos['dog.jpg']}", timeout=30).status_code == 200
    assert by_label(server, "dog")["result"] == []
    assert set(names(by_label(server, "animal")["result"])) == {"chelsea.png", "eagle.jpg"}


@embedded_only
def test_reindex_labels_images_stored_before_labels_existed(server, photos):
    assert server.stop() == 0
    db = sqlite3.connect(f"{server.data_dir}/imgsearch.db")
    db.execute("UPDATE images SET labels = NULL")  # as a data directory from before labels
    db.commit()
    db.close()
    server.start()
    assert requests.get(f"{server.url}/data/{photos['dog.jpg']}", timeout=30).json()["result"]["labels"] is None
    assert by_label(server, "dog")["result"] == []
    r = requests.get(server.url + "/index/reindex", timeout=300)
    assert r.status_code == 200
    assert "labelled 5 image(s)" in r.json()["message"]
    assert names(by_label(server, "dog")["result"]) == ["dog.jpg"]
    assert requests.get(f"{server.url}/data/{photos['dog.jpg']}", timeout=30).json()["result"]["labels"]
    # a second reindex has nothing left to label
    assert requests.get(server.url + "/index/reindex", timeout=300).json()["message"] == "reindex finished"
