/* hnsw_file.c — HNSW snapshots: one file holding the whole graph and the change sequence it
 * reflects, so start-up loads it and replays only the store's later changes.
 *
 * Format (native byte order; the file is a cache, refused and rebuilt when anything is off):
 *   header: magic "IMGHNSW1", version, params, seq, slot and node counts, entry, max level
 *   nslots records exactly as in memory (hnsw_internal.h), pointer field zeroed
 *   upper-layer lists of every node above layer 0, in slot order
 *   a 64-bit checksum of everything before it
 * Every field read back is validated (counts, levels, link targets), so a hostile or damaged
 * file cannot make the graph point outside itself. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/hnsw_internal.h"
#include "util/file.h"
#include "util/status.h"

#define MAGIC "IMGHNSW1"
#define VERSION 5u /* 2: vector before the layer-0 links; 3: vector first, records 64-byte aligned; 4: float32
                    * records carry a bfloat16 walk copy first; 5: an int8 one (hnsw_internal.h) */

typedef struct {
    char magic[8];
    uint32_t version, dims, m, ef_construction, ef_search, storage;
    uint64_t rng;
    int64_t seq;
    uint32_t nslots, entry;
    int32_t max_level;
    uint32_t unused;
    uint64_t count, ndead;
} file_header;

/* A streaming 64-bit hash (multiply-xorshift over 8-byte words): catches torn or flipped data,
 * not an attacker — the validation below is what keeps a crafted file harmless. */
typedef struct {
    uint64_t h;
    uint8_t tail[8];
    size_t ntail;
} checksum;

static uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w * 0x9E3779B97F4A7C15ULL;
    h = (h << 27) | (h >> 37);
    return h * 0xBF58476D1CE4E5B9ULL + 0x94D049BB133111EBULL;
}

static void sum_add(checksum *c, const void *data, size_t len) {
    const uint8_t *p = data;
    while (len && c->ntail) {
        c->tail[c->ntail++] = *p++;
        len--;
        if (c->ntail == 8) {
            uint64_t w;
            memcpy(&w, c->tail, 8);
            c->h = mix(c->h, w);
            c->ntail = 0;
        }
    }
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c->h = mix(c->h, w);
    }
    while (len--) c->tail[c->ntail++] = *p++;
}

static uint64_t sum_end(checksum *c) {
    uint64_t w = 0;
    memcpy(&w, c->tail, c->ntail);
    return mix(c->h, w ^ ((uint64_t)c->ntail << 56));
}

static bool put(FILE *f, checksum *c, const void *data, size_t len) {
    sum_add(c, data, len);
    return fwrite(data, 1, len, f) == len;
}

static bool get(FILE *f, checksum *c, void *data, size_t len) {
    if (fread(data, 1, len, f) != len) return false;
    sum_add(c, data, len);
    return true;
}

int hnsw_save(hnsw_index *h, const char *path, int64_t seq, char *err, size_t errlen) {
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return is_fail(err, errlen, IS_ERR_INVALID, "snapshot path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return is_fail(err, errlen, file_write_status(errno), "cannot create %s: %s", tmp, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint8_t *rec = malloc(h->rec_size);
    checksum c = {0};
    bool ok = rec != NULL;
    pthread_rwlock_rdlock(&h->lock); /* the writer waits; searches go on */
    file_header hd = {.version = VERSION, .dims = (uint32_t)h->p.dims, .m = (uint32_t)h->p.m,
                      .ef_construction = (uint32_t)h->p.ef_construction, .ef_search = (uint32_t)h->p.ef_search,
                      .storage = (uint32_t)h->p.storage, .rng = h->rng, .seq = seq, .nslots = h->nslots,
                      .entry = h->entry, .max_level = h->max_level, .count = h->count, .ndead = h->ndead};
    memcpy(hd.magic, MAGIC, 8);
    ok = ok && put(f, &c, &hd, sizeof hd);
    for (uint32_t s = 0; ok && s < h->nslots; s++) {
        memcpy(rec, hnsw_rec(h, s), h->rec_size);
        ((hnsw_node *)(rec + h->node_offset))->upper = NULL;
        ok = put(f, &c, rec, h->rec_size);
    }
    for (uint32_t s = 0; ok && s < h->nslots; s++) {
        const hnsw_node *n = hnsw_node_at(h, s);
        if (n->state != SLOT_FREE && n->level)
            ok = put(f, &c, n->upper, sizeof(uint32_t) * (size_t)n->level * (size_t)(1 + h->p.m));
    }
    pthread_rwlock_unlock(&h->lock);
    free(rec);
    uint64_t sum = sum_end(&c);
    ok = ok && fwrite(&sum, sizeof sum, 1, f) == 1 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved_errno = errno;
    if (fclose(f) && ok) {
        ok = false;
        saved_errno = errno;
    }
    if (!ok) {
        unlink(tmp);
        return is_fail(err, errlen, file_write_status(saved_errno), "cannot write %s: %s", tmp, strerror(saved_errno));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return is_fail(err, errlen, IS_ERR_IO, "cannot rename %s: %s", tmp, strerror(e));
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (file_sync_dir(slash ? dir : ".")) return is_fail(err, errlen, IS_ERR_IO, "cannot sync %s", dir);
    return IS_OK;
}

static bool links_valid(const uint32_t *l, int max, uint32_t nslots) {
    if (l[0] > (uint32_t)max) return false;
    for (uint32_t i = 1; i <= l[0]; i++)
        if (l[i] >= nslots) return false;
    return true;
}

/* A vector a writer could have stored: L2-normalised (hnsw.h), so no component beyond 1 (with room
 * for rounding) and, for int8, a scale of at most 1/127. Anything else (NaN, infinities, huge
 * values) makes distances NaN, and then searches return neighbours out of order. */
#define UNIT_SLACK 1.0009765625f
static bool vector_valid(const hnsw_index *h, uint32_t s) {
    if (h->p.storage == HNSW_INT8) {
        float scale = hnsw_node_at(h, s)->scale;
        return scale >= 0 && scale <= UNIT_SLACK / 127;
    }
    const float *v = hnsw_vec(h, s);
    for (int i = 0; i < h->p.dims; i++)
        if (!(fabsf(v[i]) <= UNIT_SLACK)) return false;
    return true;
}

/* Structure checks that need every node in place: links lead to nodes that exist on that layer. */
static bool graph_valid(hnsw_index *h) {
    for (uint32_t s = 0; s < h->nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state == SLOT_FREE) continue;
        for (int l = 0; l <= n->level; l++) {
            const uint32_t *ls = hnsw_links(h, s, l);
            for (uint32_t i = 1; i <= ls[0]; i++) {
                const hnsw_node *t = hnsw_node_at(h, ls[i]);
                if (t->state == SLOT_FREE || t->level < l) return false;
            }
        }
    }
    return true;
}

uint64_t hnsw_file_checksum(const void *data, size_t len) {
    checksum c = {0};
    sum_add(&c, data, len);
    return sum_end(&c);
}

/* Reads a snapshot from f (size bytes; path names it in messages) and closes f. */
static int load_stream(FILE *f, uint64_t size, const char *path, hnsw_index **out, int64_t *seq, char *err,
                       size_t errlen) {
    checksum c = {0};
    file_header hd;
    hnsw_index *h = NULL;
    const char *why = NULL;
    if (!get(f, &c, &hd, sizeof hd) || memcmp(hd.magic, MAGIC, 8)) why = "not a snapshot";
    else if (hd.version != VERSION) why = "written by another version";
    hnsw_params p = {.dims = (int)hd.dims, .m = (int)hd.m, .ef_construction = (int)hd.ef_construction,
                     .ef_search = (int)hd.ef_search, .storage = (hnsw_storage)hd.storage, .seed = hd.rng};
    if (!why && (hd.dims > (1u << 16) || hd.m > 64 || hd.ef_construction > 4096 || hd.ef_search > 4096 ||
                 hd.storage > 1 || !(h = hnsw_new(&p))))
        why = "bad parameters";
    if (!why && (hd.nslots == HNSW_NONE || hd.max_level < -1 || hd.max_level > HNSW_MAX_LEVEL ||
                 (hd.entry == HNSW_NONE) != (hd.max_level == -1) || (hd.entry != HNSW_NONE && hd.entry >= hd.nslots) ||
                 hd.count + hd.ndead > hd.nslots))
        why = "bad header";
    /* every record must be in the file before memory is reserved for it: a damaged slot count must
     * not make a file of a few bytes cost gigabytes */
    if (!why && (size < sizeof hd + sizeof(uint64_t) || (size - sizeof hd - sizeof(uint64_t)) / h->rec_size < hd.nslots))
        why = "truncated";
    if (!why && hd.nslots && hnsw_reserve(h, hd.nslots - 1)) {
        fclose(f);
        hnsw_free(h);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory loading %s", path);
    }
    size_t live = 0, dead = 0;
    /* only once its records exist: a graph refused before them is freed with none (nslots 0) */
    if (!why) h->nslots = hd.nslots; /* records are zeroed (FREE, no upper lists) until read */
    for (uint32_t s = 0; !why && s < hd.nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (!get(f, &c, hnsw_rec(h, s), h->rec_size)) why = "truncated";
        else if (n->state > SLOT_DEAD || n->level > HNSW_MAX_LEVEL || (int)n->level > hd.max_level) why = "bad node";
        else if (n->state != SLOT_FREE && !links_valid(hnsw_links(h, s, 0), h->m0, hd.nslots)) why = "bad links";
        else if (n->state != SLOT_FREE && !vector_valid(h, s)) why = "bad vector";
        else if (n->state != SLOT_FREE && h->p.storage == HNSW_FLOAT32) hnsw_fill_walk(h, s);
        n->upper = NULL;
        if (why) n->level = 0;
        else if (n->state == SLOT_LIVE) {
            live++;
            uint32_t other;
            if (idmap_get(&h->where, n->id, &other)) why = "duplicate id";
            else if (idmap_put(&h->where, n->id, s)) why = "out of memory";
        } else if (n->state == SLOT_DEAD) {
            dead++;
        }
    }
    for (uint32_t s = 0; !why && s < hd.nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state == SLOT_FREE || !n->level) continue;
        size_t words = (size_t)n->level * (size_t)(1 + h->p.m);
        if (!(n->upper = malloc(words * sizeof(uint32_t)))) {
            n->level = 0;
            why = "out of memory";
        } else if (!get(f, &c, n->upper, words * sizeof(uint32_t))) {
            why = "truncated";
        } else {
            h->upper_bytes += words * sizeof(uint32_t);
            for (int l = 1; !why && l <= n->level; l++)
                if (!links_valid(hnsw_links(h, s, l), h->p.m, hd.nslots)) why = "bad links";
        }
    }
    uint64_t want = sum_end(&c), stored;
    if (!why && (fread(&stored, sizeof stored, 1, f) != 1 || stored != want)) why = "checksum mismatch";
    if (!why && fgetc(f) != EOF) why = "trailing data";
    if (!why && (live != hd.count || dead != hd.ndead)) why = "counts disagree";
    if (!why && hd.entry != HNSW_NONE &&
        (hnsw_node_at(h, hd.entry)->state == SLOT_FREE || hnsw_node_at(h, hd.entry)->level != hd.max_level))
        why = "bad entry point";
    if (!why && !graph_valid(h)) why = "links to missing nodes";
    for (uint32_t s = 0; !why && s < hd.nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state != SLOT_FREE) continue;
        if (h->nfree == h->free_cap) {
            size_t cap = h->free_cap ? h->free_cap * 2 : 64;
            uint32_t *g = realloc(h->free_slots, cap * sizeof *g);
            if (!g) {
                why = "out of memory";
                break;
            }
            h->free_slots = g;
            h->free_cap = cap;
        }
        h->free_slots[h->nfree++] = s;
    }
    fclose(f);
    if (why) {
        hnsw_free(h);
        return is_fail(err, errlen, !strcmp(why, "out of memory") ? IS_ERR_NOMEM : IS_ERR_CORRUPT,
                       "index snapshot %s refused: %s", path, why);
    }
    h->count = live;
    h->ndead = dead;
    h->entry = hd.entry;
    h->max_level = hd.max_level;
    h->rng = hd.rng ? hd.rng : 1;
    *seq = hd.seq;
    *out = h;
    return IS_OK;
}

int hnsw_load(const char *path, hnsw_index **out, int64_t *seq, char *err, size_t errlen) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return is_fail(err, errlen, errno == ENOENT ? IS_ERR_NOT_FOUND : IS_ERR_IO, "cannot open %s: %s", path,
                           strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st)) {
        int e = errno;
        fclose(f);
        return is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", path, strerror(e));
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    return load_stream(f, (uint64_t)st.st_size, path, out, seq, err, errlen);
}

int hnsw_load_buffer(const void *buf, size_t len, const char *what, hnsw_index **out, int64_t *seq, char *err,
                     size_t errlen) {
    *out = NULL;
    if (!len) return is_fail(err, errlen, IS_ERR_CORRUPT, "index snapshot %s refused: not a snapshot", what);
    FILE *f = fmemopen((void *)buf, len, "rb"); /* read only: the bytes are never written */
    if (!f) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory reading %s", what);
    return load_stream(f, len, what, out, seq, err, errlen);
}
