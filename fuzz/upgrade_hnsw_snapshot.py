#!/usr/bin/python3
"""upgrade_hnsw_snapshot.py — rewrites HNSW snapshots of an older layout in the current one
(src/index/hnsw_file.c VERSION, hnsw_internal.h), in place.

Why: fuzz/regressions/hnsw/ keeps crafted snapshots that once crashed the loader or made it
allocate gigabytes. When the file layout changes, the loader refuses them all at the version
check ("written by another version") and they stop reaching the code they were kept to test.
Run this on them with every version bump:

    /usr/bin/python3 fuzz/upgrade_hnsw_snapshot.py fuzz/regressions/hnsw/*

Each whole record is re-laid out (its float32 or int8 vector, node header and layer-0 links
kept byte for byte; the int8 walk copy of a float32 record is left zero: the loader derives it);
the header's version is set; whatever follows the records (upper-layer links, the checksum, or
the short tail of a deliberately truncated file) is kept as it is. The checksum is not
recomputed: fuzz/fuzz_hnsw.c loads every input a second time with it made right. Files already
in the current layout are left alone.

Layouts (storage 0 float32, 1 int8; node: 24 bytes; links: 4 × (1 + 2m) bytes; "| 64": padded to
a multiple of 64 bytes):
  3: vector (float32 or int8), padded to 8 | node | links | 64
  4: float32: bfloat16 copy, padded to 8 | node | links | 64, then the float32 vector | 64;
     int8: as 3
  5: float32: int8 copy, padded to 8 | node | links | 64, then the float32 vector | 64;
     int8: as 3
"""
import struct
import sys

CURRENT = 5
HEADER = struct.Struct("<8s6IQqIIiIQQ")  # hnsw_file.c file_header
NODE = 24


def up(n, to):
    return (n + to - 1) // to * to


def layout(version, dims, m, storage):
    """(record size, node offset, links bytes, float32 vector offset or None) of a version."""
    links = 4 * (1 + 2 * m)
    if storage == 1 or version == 3:
        walk = dims * (4 if storage == 0 else 1)
        node = up(walk, 8)
        return up(node + NODE + links, 64), node, links, (0 if storage == 0 else None)
    walk = dims * (2 if version == 4 else 1)
    node = up(walk, 8)
    vec = up(node + NODE + links, 64)
    return vec + up(dims * 4, 64), node, links, vec


def upgrade(path):
    data = open(path, "rb").read()
    if len(data) < HEADER.size or data[:8] != b"IMGHNSW1":
        return "not a snapshot: left alone"
    head = list(HEADER.unpack_from(data))
    version, dims, m, storage, nslots = head[1], head[2], head[3], head[6], head[9]
    if version == CURRENT:
        return "current already"
    if version not in (3, 4) or storage not in (0, 1) or not 1 <= dims <= 65536 or not 2 <= m <= 64:
        return f"version {version}, dims {dims}, m {m}, storage {storage}: not one this script knows, left alone"
    old = layout(version, dims, m, storage)
    new = layout(CURRENT, dims, m, storage)
    body = data[HEADER.size:]
    whole = min(nslots, len(body) // old[0])
    out = bytearray()
    for s in range(whole):
        r = body[s * old[0]:(s + 1) * old[0]]
        rec = bytearray(new[0])
        rec[new[1]:new[1] + NODE + new[2]] = r[old[1]:old[1] + NODE + old[2]]
        if storage == 0:
            rec[new[3]:new[3] + dims * 4] = r[old[3]:old[3] + dims * 4]
        else:
            rec[0:dims] = r[0:dims]
        out += rec
    head[1] = CURRENT
    with open(path, "wb") as f:
        f.write(HEADER.pack(*head) + bytes(out) + body[whole * old[0]:])
    return f"version {version} -> {CURRENT}: {whole} of {nslots} records re-laid out"


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {upgrade(p)}")
