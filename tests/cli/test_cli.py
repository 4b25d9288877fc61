"""`imgsearch embed` and `imgsearch classify` as users run them: outputs, errors, exit codes."""
import math
import os
import time

from paths import DARKNET, SKIMAGE


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def test_embed_prints_unit_vectors(run, model, images, dims):
    code, out, _ = run("embed", "--model", model, images / "cat.png", f"{DARKNET}/dog.jpg")
    assert code == 0
    assert [o["file"] for o in out] == [str(images / "cat.png"), f"{DARKNET}/dog.jpg"]
    for o in out:
        assert o["dims"] == dims and len(o["vector"]) == dims
        assert abs(norm(o["vector"]) - 1) < 1e-4
    assert cosine(out[0]["vector"], out[1]["vector"]) < 0.5
    # the pooled features under it: ReLU6 outputs, never negative
    code, feats, _ = run("embed", "--model", model, "--features", images / "cat.png")
    assert code == 0 and feats[0]["dims"] == 1280 and min(feats[0]["vector"]) >= 0


def test_classify_names_the_class(run, model):
    code, out, _ = run("classify", "--model", model, "--top", "3", f"{SKIMAGE}/coffee.png")
    assert code == 0
    top = out[0]["top"]
    assert len(top) == 3
    assert top[0]["label"] == "espresso" and top[0]["class"] == 967
    assert top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"] > 0
    assert sum(t["prob"] for t in top) <= 1.0 + 1e-6


def test_batching_and_threads_do_not_change_results(run, model, images):
    files = [images / n for n in ("cat.png", "cat_q90.jpg", "cat.webp", "rgba.png", "animated.gif")]
    _, one, _ = run("embed", "--model", model, *files)
    code, many, _ = run("embed", "--model", model, "--batch", "4", "--threads", "2", *files)
    assert code == 0 and len(many) == len(one) == 5
    for a, b in zip(one, many):
        assert a["file"] == b["file"]
        assert cosine(a["vector"], b["vector"]) > 0.99999


BAD = {
    "empty.jpg": ("empty_image", "empty"),
    "truncated.jpg": ("corrupt_image", "the JPEG data is truncated or damaged"),
    "text.jpg": ("unsupported_image", "not a supported image format"),
    "garbage.png": ("corrupt_image", "damaged"),
    "bomb.png": ("image_too_large", "30000 x 30000"),
}


def test_bad_files_are_reported_and_the_rest_still_run(run, model, images):
    files = [images / "cat.png"] + [images / n for n in BAD] + [images / "cat_q90.jpg"]
    t0 = time.monotonic()
    code, out, err = run("embed", "--model", model, "--batch", "3", *files)
    assert time.monotonic() - t0 < 30  # the bomb costs a header read, not 900 MP of decoding
    assert code == 1
    assert [o["file"] for o in out] == [str(f) for f in files]
    assert "vector" in out[0] and "vector" in out[-1]
    for o, name in zip(out[1:-1], BAD):
        code_name, text = BAD[name]
        assert o["error"] == code_name, o
        assert text in o["message"], o
        assert name in err


def test_pixel_limit_is_configurable(run, model, images):
    code, out, _ = run("embed", "--model", model, "--max-pixels", "10000", images / "cat.png")
    assert code == 1 and out[0]["error"] == "image_too_large"


def test_missing_file_and_usage_errors(run, model, images):
    code, out, _ = run("embed", "--model", model, images / "does-not-exist.jpg")
    assert code == 1 and out[0]["error"] == "not_found"
    code, _, err = run("embed", "--model", model)
    assert code == 2 and "usage" in err
    code, _, err = run("embed", "--model", model, "--batch", "zero", images / "cat.png")
    assert code == 2 and "not a positive integer" in err
    code, _, err = run("frobnicate")
    assert code == 2 and "unknown command" in err


def test_missing_model_says_how_to_get_it(run, tmp_path, images):
    code, _, err = run("embed", "--model", tmp_path / "none.json", images / "cat.png")
    assert code == 2 and "fetch-model" in err


def test_default_model_is_found(run, binary, images):
    # From another working directory the binary finds ../models beside itself.
    import subprocess
    p = subprocess.run([binary, "classify", "--top", "1", str(images / "cat.png")], capture_output=True,
                       text=True, cwd="/", env={k: v for k, v in os.environ.items() if k != "IMGSEARCH_MODEL"})
    assert p.returncode == 0, p.stderr
    assert '"tiger cat"' in p.stdout or '"tabby"' in p.stdout or '"Egyptian cat"' in p.stdout
