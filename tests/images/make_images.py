#!/usr/bin/python3
"""Generates the test images the unit and API tests use, from photos that Debian packages ship
(python3-skimage, darknet) and from drawing. Nothing comes from the network.

usage: make_images.py OUTDIR      (idempotent; cheap enough to rerun)
"""
import io
import os
import struct
import sys
import zlib

from PIL import Image, ImageDraw

SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
DARKNET = "/usr/share/darknet/data"
CHELSEA = os.path.join(SKIMAGE, "chelsea.png")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_raw(path, width, height, bit_depth, colour_type, rows):
    """A minimal PNG writer for what Pillow cannot write: 16-bit RGB and a real 900 MP bomb.
    rows: an iterable of raw scanlines without the filter byte."""
    comp = zlib.compressobj(9)
    body = bytearray()
    for row in rows:
        body += comp.compress(b"\x00" + row)
    body += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", bytes(body))
                + png_chunk(b"IEND", b""))


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    cat = Image.open(CHELSEA).convert("RGB")

    # The same photo in other encodings and sizes (invariance tests).
    cat.save(p("cat.png"))
    cat.save(p("cat_q90.jpg"), quality=90)
    half = cat.resize((cat.width // 2, cat.height // 2), Image.LANCZOS)
    half.save(p("cat_half.png"))  # scaling alone
    half.save(p("cat_half.jpg"), quality=90)  # scaling and re-encoding together
    cat.save(p("cat.webp"), quality=90)
    cat.save(p("cat.tiff"))
    cat.convert("L").save(p("cat_grey.png"))
    cat.convert("L").save(p("cat_grey.jpg"), quality=90)
    cat.convert("CMYK").save(p("cat_cmyk.jpg"), quality=90)
    # 16-bit RGB PNG: each 8-bit value v becomes v * 257 (the same picture at 16 bits).
    rows = []
    px = cat.tobytes()
    for y in range(cat.height):
        line = px[y * cat.width * 3:(y + 1) * cat.width * 3]
        rows.append(b"".join(struct.pack(">H", v * 257) for v in line))
    write_png_raw(p("cat_rgb16.png"), cat.width, cat.height, 16, 2, rows)

    # Bad input.
    open(p("empty.jpg"), "wb").close()
    dog = open(os.path.join(DARKNET, "dog.jpg"), "rb").read()
    open(p("truncated.jpg"), "wb").write(dog[: len(dog) // 2])
    open(p("text.jpg"), "w").write("This is a text file, not a JPEG.\n" * 20)
    open(p("garbage.png"), "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    cat_png = open(p("cat.png"), "rb").read()
    open(p("truncated.png"), "wb").write(cat_png[: len(cat_png) // 2])
    open(p("drawing.svg"), "w").write('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
                                      '<rect width="8" height="8" fill="red"/></svg>')
    # Thin images: few pixels, extreme shapes (their cost must follow the pixel count).
    Image.new("RGB", (65535, 1), (200, 30, 30)).save(p("thin_wide.png"))
    Image.new("RGB", (1, 65535), (30, 200, 30)).save(p("thin_tall.png"))
    Image.new("RGB", (65500, 1), (30, 30, 200)).save(p("thin_wide.jpg"), quality=95)
    # A real decompression bomb: a valid 30000 x 30000 1-bit PNG of about 100 KB.
    if not os.path.exists(p("bomb.png")):
        write_png_raw(p("bomb.png"), 30000, 30000, 1, 0, (bytes(3750) for _ in range(30000)))

    # Palette with transparency: a red disc on a transparent background (flattened on white).
    pal = Image.new("P", (200, 200), 0)
    pal.putpalette([0, 255, 0] + [255, 0, 0] + [0, 0, 0] * 254)
    ImageDraw.Draw(pal).ellipse((50, 50, 150, 150), fill=1)
    pal.save(p("palette_alpha.png"), transparency=0)
    # RGBA: fully transparent green (must come out white), opaque blue square in the middle.
    rgba = Image.new("RGBA", (300, 300), (0, 255, 0, 0))
    ImageDraw.Draw(rgba).rectangle((100, 100, 199, 199), fill=(0, 0, 255, 255))
    rgba.save(p("rgba.png"))
    # Animated GIF: red, green, blue frames; only the first (red) counts.
    frames = [Image.new("RGB", (120, 120), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(p("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    # EXIF orientation 6 (display = stored turned 90 degrees clockwise). Stored: 400 x 200, left
    # half red, right half blue; shown: 200 x 400, top half red, bottom half blue.
    rot = Image.new("RGB", (400, 200), (255, 0, 0))
    ImageDraw.Draw(rot).rectangle((200, 0, 399, 199), fill=(0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    rot.save(p("exif_rotate90.jpg"), quality=95, exif=exif)
    # The same, large enough for JPEG DCT shrink-on-load (1/8): 4000 x 2000 stored, shown 2000 x 4000.
    big = Image.new("RGB", (4000, 2000), (255, 0, 0))
    ImageDraw.Draw(big).rectangle((2000, 0, 3999, 1999), fill=(0, 0, 255))
    big.save(p("exif_rotate90_large.jpg"), quality=90, exif=exif)
    # Tiny and flat images.
    Image.new("RGB", (1, 1), (200, 100, 50)).save(p("one_pixel.png"))
    Image.new("RGB", (640, 480), (127, 127, 127)).save(p("grey127.png"))
    # Waves for test_decode's geometry check (test_small_image_geometry): red across, period 40
    # pixels, green down, period 50; one to enlarge (short side 200) and one to reduce (300), as
    # PNG and as a JPEG without chroma subsampling. Made here, not with libvips in the test: a
    # libvips save under valgrind was seen to wait forever in vips_threadpool_run (libvips 8.14).
    import math
    for w, h in ((300, 200), (420, 300)):
        waves = Image.new("RGB", (w, h))
        waves.putdata([(round(128 + 100 * math.sin(2 * math.pi * x / 40)), round(128 + 100 * math.sin(2 * math.pi * y / 50)),
                        128) for y in range(h) for x in range(w)])
        waves.save(p(f"waves_{w}x{h}.png"))
        waves.save(p(f"waves_{w}x{h}.jpg"), quality=98, subsampling=0)
    # Large photo (12 MP) for shrink-on-load.
    if not os.path.exists(p("cat_12mp.jpg")):
        cat.resize((4000, 3000), Image.BICUBIC).save(p("cat_12mp.jpg"), quality=90)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
