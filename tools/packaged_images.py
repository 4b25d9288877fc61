"""The images Debian packages ship, as one deterministic list, split into a reference part (what
tools/fetch-model fits the embedding head on) and the rest (what bench/quality.py measures on).

Used by tools/fetch-model and bench/quality.py; needs python3-pil and python3-numpy, and whichever
of these packages are installed: darknet, python3-skimage (photos), gnome-backgrounds,
mate-backgrounds, plasma-workspace-wallpapers, ukui-wallpapers (wallpapers: photos and art),
openclipart-png (clip art in category folders)."""
import glob
import hashlib
import io
import os
import random

import numpy as np
from PIL import Image, ImageOps

PHOTO_DIRS = ["/usr/share/darknet/data", "/usr/lib/python3/dist-packages/skimage/data", "/usr/share/backgrounds",
              "/usr/share/wallpapers", "/usr/share/mate-backgrounds"]
CLIPART = "/usr/share/openclipart/png"
EXTS = (".jpg", ".jpeg", ".png", ".webp")
MAX_PIXELS = 40_000_000  # a few wallpapers are 168 MP, over the server's default limit: left out
Image.MAX_IMAGE_PIXELS = None  # checked from the header, before decoding


# ---- the images --------------------------------------------------------------------------------

def packaged_images():
    """(path, label or None, is_photo) for every distinct image the packages ship."""
    found = photo_files()
    for p in sorted(glob.glob(os.path.join(CLIPART, "**", "*.png"), recursive=True)):
        found.append((p, os.path.relpath(os.path.dirname(p), CLIPART), False))
    return distinct(found)


def packaged_photos():
    """The same as packaged_images() for the photos and wallpapers alone (no clip art)."""
    return distinct(photo_files())


def photo_files():
    found = []
    for d in PHOTO_DIRS:
        # darknet's data/labels/ holds rendered glyphs for drawing box captions, not pictures
        pattern = os.path.join(d, "*") if d.endswith("darknet/data") else os.path.join(d, "**", "*")
        for p in sorted(glob.glob(pattern, recursive=True)):
            if p.lower().endswith(EXTS) and os.path.isfile(p):
                found.append((os.path.realpath(p), None, True))
    return found


def distinct(found):
    """The entries of `found` (path, label, is_photo) that are distinct pictures, as dicts."""
    seen_bytes, thumbs, out = set(), [], []
    for path, label, photo in found:
        data = open(path, "rb").read()
        h = hashlib.sha256(data).hexdigest()
        if h in seen_bytes:
            continue
        seen_bytes.add(h)
        try:
            im = Image.open(io.BytesIO(data))
            if min(im.size) < 32 or im.size[0] * im.size[1] > MAX_PIXELS:
                continue
            im.draft("RGB", (64, 64))  # JPEGs decode at 1/8 scale: enough for a 16 x 16 key
            thumb = np.asarray(flat(im).convert("L").resize((16, 16), Image.BILINEAR), np.float32).ravel()
        except Exception:
            continue
        out.append({"path": path, "label": label, "photo": photo, "hash": h})
        thumbs.append(thumb)
    # The same picture at other sizes or in other bytes (wallpapers ship each at several
    # resolutions; clip art repeats) is not distinct: keep the first of each near-identical group.
    t = np.stack(thumbs)
    keep = np.ones(len(out), bool)
    for i in range(len(out)):
        if keep[i]:
            close = np.abs(t[i + 1:] - t[i]).mean(1) < 4.0
            keep[i + 1:] &= ~close
    return [im for im, k in zip(out, keep) if k]


def flat(im):
    """RGB, transparency flattened on white (as our decoder does)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def split(images, n_collection, n_reference, seed=7):
    """Reference (for fitting) and collection (for the benchmark) are disjoint, chosen by a hash of
    the content, so a rerun picks the same sets. Photos are scarce: every photo the reference does
    not take goes into the collection."""
    ref = [im for im in images if int(im["hash"][:8], 16) % 4 == 0]
    rest = [im for im in images if int(im["hash"][:8], 16) % 4 != 0]
    rng = random.Random(seed)
    rng.shuffle(ref)
    photos = [im for im in rest if im["photo"]]
    clip = [im for im in rest if not im["photo"]]
    rng.shuffle(clip)
    return photos + clip[: max(0, n_collection - len(photos))], ref[:n_reference]


