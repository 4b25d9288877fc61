#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (fuzz/README.md) into fuzz/corpus/<target>/.

Run with Debian's Python (Pillow for the images): /usr/bin/python3 fuzz/make_corpus.py
The HNSW snapshots come from real hnsw_save calls instead: build-fuzz/fuzz/fuzz_make_hnsw_seeds
(scripts/fuzz --seeds runs both). Every seed is small: the fuzzer mutates them, and libFuzzer's
speed falls with input size. Output is deterministic, so re-running changes nothing.
"""
import io
import json
import os
import struct
import sys

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- images (decode; two of them also feed the HTTP target's uploads) ----

def picture(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 37) % 256, (y * 53) % 256, ((x + y) * 29) % 256)
    if mode == "RGBA":
        im = im.convert("RGBA")
        a = im.load()
        for y in range(h):
            for x in range(w):
                r, g, b, _ = a[x, y]
                a[x, y] = (r, g, b, (x * 255) // max(1, w - 1))
    elif mode != "RGB":
        im = im.convert(mode)
    return im


def encoded(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def png_chunk(kind, data):
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w, h):
    """A PNG whose header claims w x h pixels, with one tiny IDAT: a decompression bomb's header."""
    import zlib
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def icc(kind):
    from PIL import ImageCms
    return ImageCms.ImageCmsProfile(ImageCms.createProfile(kind)).tobytes()


def images():
    rgb = picture(16, 12)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned 90 degrees
    seeds = {
        "jpeg_baseline.jpg": encoded(rgb, "JPEG", quality=70),
        "jpeg_progressive.jpg": encoded(rgb, "JPEG", quality=60, progressive=True),
        "jpeg_grey.jpg": encoded(picture(12, 16, "L"), "JPEG", quality=60),
        "jpeg_cmyk.jpg": encoded(picture(8, 8, "CMYK"), "JPEG", quality=60),
        "jpeg_exif_rotated.jpg": encoded(picture(20, 10), "JPEG", quality=60, exif=exif.tobytes()),
        "jpeg_large_32x24.jpg": encoded(picture(64, 48), "JPEG", quality=40),
        # short side >= 2 x the target's box (73 for fuzz_decode's 64): decode_jpeg.c's libjpeg path
        "jpeg_fast_path.jpg": encoded(picture(25, 19).resize((200, 152)), "JPEG", quality=15),
        "jpeg_fast_path_progressive.jpg": encoded(picture(25, 19).resize((200, 152)), "JPEG", quality=15, progressive=True),
        "jpeg_fast_path_rotated.jpg": encoded(picture(19, 25).resize((152, 200)), "JPEG", quality=15, exif=exif.tobytes()),
        # embedded profiles: sRGB (embed/icc.c lets it stay on the JPEG path), Lab (not sRGB: libvips'
        # colour management, which cannot use it for RGB pixels)
        "jpeg_srgb_profile.jpg": encoded(picture(25, 19).resize((200, 152)), "JPEG", quality=15, icc_profile=icc("sRGB")),
        "jpeg_lab_profile.jpg": encoded(rgb, "JPEG", quality=60, icc_profile=icc("LAB")),
        "png_rgb.png": encoded(rgb, "PNG"),
        "png_rgba.png": encoded(picture(10, 10, "RGBA"), "PNG"),
        "png_palette.png": encoded(picture(12, 12, "P"), "PNG"),
        "png_grey16.png": encoded(picture(8, 6, "L").convert("I"), "PNG"),
        "png_interlaced.png": encoded(rgb, "PNG", interlace=1),
        "png_thin_strip.png": encoded(picture(300, 1), "PNG"),
        "png_bomb_header.png": png_header_only(5000, 5000),
        "gif_two_frames.gif": encoded(picture(10, 8, "P"), "GIF", save_all=True,
                                      append_images=[picture(10, 8, "P").rotate(90)], duration=50, loop=0),
        "webp_lossy.webp": encoded(rgb, "WEBP", quality=50),
        "webp_lossless_alpha.webp": encoded(picture(8, 8, "RGBA"), "WEBP", lossless=True),
        "tiff_plain.tif": encoded(picture(8, 6), "TIFF"),
        "tiff_two_pages.tif": encoded(picture(6, 6), "TIFF", save_all=True, append_images=[picture(4, 4)]),
        "tiff_lzw_grey.tif": encoded(picture(8, 8, "L"), "TIFF", compression="tiff_lzw"),
        "bmp_refused.bmp": encoded(picture(6, 6), "BMP"),
        "pnm_refused.ppm": encoded(picture(6, 6), "PPM"),
        "svg_refused.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    }
    for name, data in seeds.items():
        assert len(data) < 4096, (name, len(data))
        put("decode", name, data)
    return seeds


# ---- safetensors (weights) ----

def safetensors(tensors, metadata=None, align=8):
    header, blobs, off = {}, b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data
        off += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % align)  # the format pads so that data starts aligned
    return struct.pack("<Q", len(text)) + text + blobs


def weights():
    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    put("weights", "two_f32.safetensors", safetensors({
        "conv.weight": ("F32", [2, 1, 1, 2], f32(1, 2, 3, 4)),
        "conv.bias": ("F32", [2], f32(0.5, -0.5))}))
    put("weights", "mixed_dtypes.safetensors", safetensors({
        "a": ("I64", [2], struct.pack("<2q", 1, -1)),
        "b": ("BF16", [3], b"\x80\x3f\x00\x40\x40\x40"),
        "c": ("U8", [4], b"\x01\x02\x03\x04"),
        "d": ("F16", [1], b"\x00\x3c")}, metadata={"format": "pt"}))
    put("weights", "scalar_and_empty.safetensors", safetensors({
        "scalar": ("F32", [], f32(7)),
        "empty": ("F32", [0, 3], b"")}))
    put("weights", "head_like.safetensors", safetensors({
        "mean": ("F32", [4], f32(0, 1, 2, 3)),
        "projection": ("F32", [2, 4], f32(*range(8)))}))
    put("weights", "no_tensors.safetensors", safetensors({}, metadata={}))


# ---- JSON inputs: filters, metadata, model and head configs ----

def filters():
    seeds = {
        "equality": ('{"breed": "labrador"}', '{"breed": "labrador", "age": 3}'),
        "range": ('{"age": {"$gte": 2, "$lt": 10}}', '{"age": 2.0}'),
        "in_nested": ('{"owner.city": {"$in": ["Oslo", "Bergen"]}}', '{"owner": {"city": "Oslo"}}'),
        "or_not": ('{"$or": [{"breed": "pug"}, {"$not": {"age": {"$gt": 12}}}]}', '{"breed": "pug", "age": 13}'),
        "field_not": ('{"age": {"$not": {"$gt": 5}}, "tags": "dog"}', '{"tags": ["dog", "cat"], "age": 4}'),
        "exists_nin": ('{"a": {"$exists": true}, "b": {"$nin": [1, "x", null]}, "c": {"$ne": [1, 2]}}',
                       '{"a": null, "b": [2, 3], "c": [1, 2]}'),
        "and_strings": ('{"$and": [{"name": {"$gte": "a"}}, {"name": {"$lte": "\\u00e9"}}]}', '{"name": "b\\u00e8"}'),
        "deep_equal": ('{"x": {"y": [1, {"z": true}]}}', '{"x": {"y": [1.0, {"z": true}]}}'),
        "empty": ("{}", "{}"),
        "bad_operator": ('{"a": {"$regex": "x"}}', None),
    }
    for name, (f, doc) in seeds.items():
        put("filter", name, f if doc is None else f + "\0" + doc)


def metadata():
    seeds = {
        "simple": '{"breed": "labrador", "age": 3}',
        "nested": '{"owner": {"name": "Kari", "pets": [{"name": "Rex"}, {"name": "Mia"}]}, "tags": ["a", "b"]}',
        "unicode": '{"name": "caf\\u00e9 \\ud83d\\udc36", "raw": "\xc3\xa9"}',
        "numbers": '{"i": -9223372036854775808, "f": 1.5e308, "z": -0.0, "b": true, "n": null}',
        "duplicate": '{"a": 1, "a": 2}',
        "not_object": '[1, 2, 3]',
        "deep": '{"a":' * 5 + "1" + "}" * 5,
        "many_keys": "{" + ",".join('"k%d": %d' % (i, i) for i in range(12)) + "}",
        "escapes": '{"\\u0001\\n": "\\u007f\\u2028"}',
    }
    for name, text in seeds.items():
        put("data", name, text)


def model_configs():
    path = os.path.join(ROOT, "models", "efficientnet_lite0.json")
    cfg = json.load(open(path))
    put("model", "lite0.json", json.dumps(cfg, separators=(",", ":")))
    small = dict(cfg, blocks=cfg["blocks"][:2], labels=cfg["labels"][:3], num_classes=3)
    put("model", "lite0_two_blocks.json", json.dumps(small, separators=(",", ":")))
    put("model", "bad_architecture.json", json.dumps(dict(small, architecture="resnet"), separators=(",", ":")))
    head = json.load(open(os.path.join(ROOT, "models", "efficientnet_lite0.head.json")))
    put("head", "lite0_head.json", json.dumps(head))
    put("head", "no_power.json", json.dumps(dict(head, power=False, dims=8)))
    put("head", "bad_name.json", json.dumps(dict(head, name="Bad Name!")))
    put("head", "weights_path.json", json.dumps(dict(head, weights="../efficientnet_lite0.head.safetensors")))


# ---- API keys (fuzz_apikey.c: flags byte, then Authorization NUL X-API-Key) ----

def apikeys():
    key = "isk_" + "A" * 20 + "b-_9" * 5 + "xyz"
    assert len(key) == 47
    put("apikey", "bearer", b"\x01Bearer " + key.encode())
    put("apikey", "x_api_key", b"\x02\0" + key.encode())
    put("apikey", "both_same", b"\x03bearer  " + key.encode() + b"  \0" + key.encode())
    put("apikey", "both_differ", b"\x03Bearer " + key.encode() + b"\0isk_other")
    put("apikey", "basic_scheme", b"\x01Basic dXNlcjpwYXNz")
    put("apikey", "none", b"\x00")
    put("apikey", "name_and_scope", b"\x00\0admin\0key-name_1.x")


# ---- text (names, log lines) ----

def texts():
    seeds = {
        "plain_name": b"holiday photo.jpg",
        "path": b"C:\\Users\\kari\\Pictures/../../etc/passwd",
        "utf8": "caf\u00e9 \U0001F436 \u65e5\u672c.png".encode(),
        "ill_formed": b"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 end\xff",
        "controls": b"line\r\nbreak\x1b[31m\x7f\"quoted\"\\",
        "long_multibyte": ("\u00e9" * 200).encode(),
        "dots": b"..",
    }
    for name, data in seeds.items():
        put("text", name, data)


# ---- HTTP requests (fuzz_http.c replaces @KEY@ by the server's admin key) ----

def http(imgs):
    key = "@KEY@"
    def req(method, target, headers=(), body=b""):
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, target)
        for h in headers:
            head += h + "\r\n"
        if body:
            head += "Content-Length: %d\r\n" % len(body)
        return head.encode() + b"\r\n" + body

    def multipart(parts, boundary="fuzzB0undary"):
        out = b""
        for name, filename, ctype, data in parts:
            out += b"--" + boundary.encode() + b"\r\n"
            disp = 'Content-Disposition: form-data; name="%s"' % name
            if filename:
                disp += '; filename="%s"' % filename
            out += disp.encode() + b"\r\n"
            if ctype:
                out += b"Content-Type: " + ctype.encode() + b"\r\n"
            out += b"\r\n" + data + b"\r\n"
        return out + b"--" + boundary.encode() + b"--\r\n", "multipart/form-data; boundary=" + boundary

    auth = "Authorization: Bearer " + key
    png, jpg = imgs["png_rgb.png"], imgs["jpeg_baseline.jpg"]
    body, ctype = multipart([("image", "cat.png", "image/png", png), ("data", None, None, b'{"breed": "tabby", "age": 3}')])
    put("http", "add_multipart", req("POST", "/image/add", [auth, "Content-Type: " + ctype], body))
    body, ctype = multipart([("image", "q.jpg", "image/jpeg", jpg), ("query", None, None, b'{"age": {"$gte": 1}}')])
    put("http", "search_multipart", req("POST", "/image/search?k=3&ef=32&max_dist=1.5", ["X-API-Key: " + key,
                                                                                      "Content-Type: " + ctype], body))
    body, ctype = multipart([("image", "a.png", None, png), ("image", "b.png", None, png)])
    put("http", "add_field_twice", req("POST", "/image/add", [auth, "Content-Type: " + ctype], body))
    put("http", "similar", req("GET", "/image/1/similar?k=2&query=%7B%22breed%22%3A%22tabby%22%7D", [auth]))
    put("http", "thumbnail_webp", req("GET", "/image/1/thumbnail?size=32&format=webp", [auth]))
    put("http", "image_get_head", req("HEAD", "/image/2", ["Cookie: imgsearch_key=" + key]))
    put("http", "images_page", req("GET", "/images?limit=2&offset=0&query=%7B%22age%22%3A%7B%22%24lt%22%3A9%7D%7D",
                                   [auth]))
    put("http", "data_set", req("POST", "/data/1", [auth, "Content-Type: application/json"],
                                b'{"image_data": {"breed": "pug", "tags": ["a", "b"]}}'))
    put("http", "data_get", req("GET", "/data/2", [auth]))
    put("http", "data_query", req("POST", "/data/query?limit=5", [auth, "Content-Type: application/vnd.x+json"],
                                  b'{"$or": [{"breed": "pug"}, {"age": 3}]}'))
    put("http", "delete_one", req("DELETE", "/image/3", [auth]))
    put("http", "index_status", req("GET", "/index/status", [auth]))
    put("http", "index_health", req("GET", "/index/health", [auth]))
    put("http", "duplicates", req("GET", "/duplicates?max_dist=0.2&limit=3", [auth]))
    put("http", "reindex", req("POST", "/index/reindex", [auth]))
    put("http", "preflight", req("OPTIONS", "/image/add", ["Origin: https://app.example",
                                                            "Access-Control-Request-Method: POST"]))
    put("http", "cross_origin_write", req("DELETE", "/image/9", [auth, "Origin: https://evil.example",
                                                                  "Sec-Fetch-Site: cross-site"]))
    put("http", "ui_asset", req("GET", "/ui/app.js", ['If-None-Match: "abc"']))
    put("http", "ui_index", req("GET", "/"))
    put("http", "no_key", req("GET", "/images"))
    put("http", "wrong_key", req("GET", "/images", ["Authorization: Basic Zm9vOmJhcg=="]))
    put("http", "chunked_json", b"POST /data/query HTTP/1.1\r\nHost: x\r\n" + auth.encode() +
        b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")
    put("http", "two_lengths", b"POST /data/query HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}")
    put("http", "encoded_nul", req("DELETE", "/image/1%00", [auth]))
    put("http", "keep_alive_two", req("GET", "/index/status", [auth]) + req("GET", "/image/abc", [auth]))


def main():
    imgs = images()
    weights()
    filters()
    metadata()
    model_configs()
    apikeys()
    texts()
    http(imgs)
    print("seeds written under", OUT)


if __name__ == "__main__":
    sys.exit(main())
