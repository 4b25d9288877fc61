/* hnsw.c — the HNSW graph: insert, search, delete and repair (see hnsw.h for the contract).
 *
 * The algorithm is Malkov & Yashunin's (layers, greedy descent, beam search with ef, the
 * neighbour-selection heuristic). What is ours: the single-writer publish protocol (compute
 * without locks, publish under the write lock), marked deletes repaired in batches, filters
 * evaluated inside the beam search, and int8 storage with exact re-ranking. */
#include "index/hnsw_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/distance.h"
#include "util/status.h"

/* ---- layout -------------------------------------------------------------------------------- */

void hnsw_params_default(hnsw_params *p, int dims) {
    *p = (hnsw_params){.dims = dims, .m = 16, .ef_construction = 200, .ef_search = 64,
                       .storage = HNSW_FLOAT32, .seed = 0x5eed};
}

/* How far the beam search's prefetch runs ahead of the distances: about this many cache lines of
 * the vectors it reads in flight, and never more than this many neighbours. Measured on 100k × 256
 * float32 (16 lines a vector), ef 16, one thread: 1 vector ahead 28k QPS, 2: 33k, 4: 37k, 7: 39k,
 * 12: 34k; at 960 floats (60 lines) one vector ahead was already the best. With 8-line bfloat16
 * walk copies (session 23), 64, 112 and 224 lines gave the same within noise; not measured again
 * with the int8 copies (4 lines at 256-d, 8 at 512-d). */
#define PREFETCH_LINES 112
#define PREFETCH_MAX_AHEAD 8

/* Neighbours to prefetch ahead for vectors of `bytes`. */
static uint32_t prefetch_ahead(size_t bytes) {
    size_t lines = (bytes + 63) / 64;
    size_t ahead = lines >= PREFETCH_LINES ? 1 : PREFETCH_LINES / lines;
    return (uint32_t)(ahead > PREFETCH_MAX_AHEAD ? PREFETCH_MAX_AHEAD : ahead);
}

bool hnsw_layout(hnsw_index *h, const hnsw_params *p) {
    if (p->dims < 1 || p->dims > (1 << 16) || p->m < 2 || p->m > 64 || p->ef_construction < 1 ||
        p->ef_construction > 4096 || p->ef_search < 1 || p->ef_search > 4096 ||
        (p->storage != HNSW_FLOAT32 && p->storage != HNSW_INT8))
        return false;
    h->p = *p;
    h->m0 = 2 * p->m;
    bool f32 = p->storage == HNSW_FLOAT32;
    h->vec_bytes = (size_t)p->dims * (f32 ? sizeof(float) : 1);
    h->walk_bytes = (size_t)p->dims; /* int8: the stored vector, or float32's walk copy */
    h->node_offset = (h->walk_bytes + 7) & ~(size_t)7;
    h->l0_offset = h->node_offset + sizeof(hnsw_node);
    size_t links_end = (h->l0_offset + sizeof(uint32_t) * (size_t)(1 + h->m0) + 63) & ~(size_t)63;
    h->vec_offset = f32 ? links_end : 0;
    h->rec_size = f32 ? links_end + ((h->vec_bytes + 63) & ~(size_t)63) : links_end;
    for (h->chunk_bits = HNSW_CHUNK_BITS; h->chunk_bits && ((size_t)1 << h->chunk_bits) * h->rec_size > HNSW_CHUNK_MAX_BYTES;)
        h->chunk_bits--;
    h->ahead = prefetch_ahead(h->walk_bytes);
    h->ahead_exact = prefetch_ahead(h->vec_bytes);
    h->dot = dot_f32_best();
    h->dot8 = dot_i8_best();
    h->level_mult = 1.0 / log((double)p->m);
    return true;
}

int hnsw_reserve(hnsw_index *h, uint32_t s) {
    size_t need = ((size_t)s >> h->chunk_bits) + 1;
    if (need <= h->nchunks) return IS_OK;
    if (need > h->chunks_cap) {
        size_t cap = h->chunks_cap ? h->chunks_cap * 2 : 16;
        while (cap < need) cap *= 2;
        uint8_t **t = realloc(h->chunks, cap * sizeof *t);
        if (!t) return IS_ERR_NOMEM;
        h->chunks = t;
        h->chunks_cap = cap;
    }
    while (h->nchunks < need) {
        size_t bytes = ((size_t)1 << h->chunk_bits) * h->rec_size; /* a multiple of 64 */
        uint8_t *c = aligned_alloc(64, bytes);
        if (!c) return IS_ERR_NOMEM;
        memset(c, 0, bytes);
        h->chunks[h->nchunks++] = c;
    }
    return IS_OK;
}

hnsw_index *hnsw_new(const hnsw_params *p) {
    hnsw_index *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (!hnsw_layout(h, p)) {
        free(h);
        return NULL;
    }
    h->entry = HNSW_NONE;
    h->max_level = -1;
    h->rng = p->seed ? p->seed : 1;
    idmap_init(&h->where);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a steady stream of searches must not starve the writer's short publish steps */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&h->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&h->pool_lock, NULL);
    return h;
}

/* ---- scratch buffers: one per concurrent search, pooled ------------------------------------ */

typedef struct {
    float d;
    uint32_t s;
} cand;

struct search_buf {
    uint32_t *tags; /* visited marks: tags[s] == gen */
    size_t ntags;
    uint32_t gen;
    cand *near;     /* candidates to expand: min-heap */
    size_t nnear, cap_near;
    cand *best;     /* results: max-heap of at most ef */
    size_t nbest, cap_best;
    int8_t *q8;     /* the query encoded in int8, for the walk */
    search_buf *next;
};

static void buf_free(search_buf *b) {
    if (!b) return;
    free(b->tags);
    free(b->near);
    free(b->best);
    free(b->q8);
    free(b);
}

static search_buf *buf_acquire(hnsw_index *h) {
    pthread_mutex_lock(&h->pool_lock);
    search_buf *b = h->pool;
    if (b) h->pool = b->next;
    pthread_mutex_unlock(&h->pool_lock);
    if (!b && !(b = calloc(1, sizeof *b))) return NULL;
    size_t want = h->nchunks << h->chunk_bits;
    if (b->ntags < want) {
        /* Doubling, not growing to `want`: the writer's buffer follows the index chunk by chunk,
         * and a heap block regrown 4096 slots at a time left the heap riddled with freed blocks
         * too small for anything else (186 MB of resident free heap at 1,000,000 × 128-d). */
        size_t cap = b->ntags ? b->ntags : want;
        while (cap < want) cap *= 2;
        free(b->tags);
        b->tags = calloc(cap, sizeof *b->tags);
        if (!b->tags) {
            buf_free(b);
            return NULL;
        }
        b->ntags = cap;
        b->gen = 0;
    }
    if (!b->q8 && !(b->q8 = malloc((size_t)h->p.dims))) {
        buf_free(b);
        return NULL;
    }
    return b;
}

static void buf_release(hnsw_index *h, search_buf *b) {
    pthread_mutex_lock(&h->pool_lock);
    b->next = h->pool;
    h->pool = b;
    pthread_mutex_unlock(&h->pool_lock);
}

static void buf_new_visit(search_buf *b) {
    if (++b->gen == 0) { /* wrapped: forget every old mark */
        memset(b->tags, 0, b->ntags * sizeof *b->tags);
        b->gen = 1;
    }
    b->nnear = b->nbest = 0;
}

static bool visit(search_buf *b, uint32_t s) {
    if (b->tags[s] == b->gen) return false;
    b->tags[s] = b->gen;
    return true;
}

/* Binary heaps of candidates: near is a min-heap, best a max-heap on distance. */
static bool heap_push(cand **a, size_t *n, size_t *cap, cand c, bool max) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        cand *g = realloc(*a, nc * sizeof *g);
        if (!g) return false;
        *a = g;
        *cap = nc;
    }
    cand *h = *a;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (max ? h[p].d >= c.d : h[p].d <= c.d) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
    return true;
}

static cand heap_pop(cand *h, size_t *n, bool max) {
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = l;
        if (l >= *n) break;
        if (r < *n && (max ? h[r].d > h[l].d : h[r].d < h[l].d)) w = r;
        if (max ? last.d >= h[w].d : last.d <= h[w].d) break;
        h[i] = h[w];
        i = w;
    }
    if (*n) h[i] = last;
    return top;
}

/* ---- distances ----------------------------------------------------------------------------- */

/* A query in the index's storage encoding. */
typedef struct {
    const float *f;
    const int8_t *q8;
    float scale;
    bool exact; /* float32: distances on the float32 vectors, not the walk copies (building) */
} enc_query;

static float encode_i8(const float *v, int dims, int8_t *out) {
    float amax = 0;
    for (int i = 0; i < dims; i++) amax = fmaxf(amax, fabsf(v[i]));
    float scale = amax > 0 ? amax / 127.0f : 0.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < dims; i++) {
        long q = lrintf(v[i] * inv);
        out[i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
    return scale;
}

void hnsw_fill_walk(hnsw_index *h, uint32_t s) {
    hnsw_node_at(h, s)->scale = encode_i8(hnsw_vec(h, s), h->p.dims, (int8_t *)hnsw_rec(h, s));
}

/* The walk's distance: int8 query × the int8 walk vector (float32 storage's copy, or int8
 * storage's vector itself: both at the record's start, scaled by the node's scale); float32 ×
 * float32 when building a float32 graph (q->exact; exact_dist gives the same). */
static inline float dist_q(const hnsw_index *h, const enc_query *q, uint32_t s) {
    if (q->exact && h->p.storage == HNSW_FLOAT32) return 1.0f - h->dot(q->f, hnsw_vec(h, s), (size_t)h->p.dims);
    return 1.0f - q->scale * hnsw_node_at(h, s)->scale *
                      (float)h->dot8(q->q8, (const int8_t *)hnsw_rec(h, s), (size_t)h->p.dims);
}

/* float32 storage: the exact distance from a float32 query. */
static inline float exact_dist(const hnsw_index *h, const float *q, uint32_t s) {
    return 1.0f - h->dot(q, hnsw_vec(h, s), (size_t)h->p.dims);
}

/* Asks for a node's first vector lines and its header before its distance is needed: the beam
 * search is bound by memory latency, not arithmetic. */
static inline void prefetch_node(const hnsw_index *h, uint32_t s, size_t off) {
    const char *r = (const char *)hnsw_rec(h, s);
    __builtin_prefetch(r + off);
    __builtin_prefetch(r + off + 64);
    __builtin_prefetch(r + h->node_offset);
}

/* The rest of a node's vector: issued h->ahead neighbours before its distance is computed, so that
 * several vectors are in flight at once and wide ones (960, 1280 floats: 60–80 lines) arrive in
 * time. */
static inline void prefetch_rest(const hnsw_index *h, uint32_t s, size_t off, size_t bytes) {
    const char *p = (const char *)hnsw_rec(h, s) + off;
    for (size_t o = 128; o < bytes; o += 64) __builtin_prefetch(p + o);
}

static enc_query stored_query(const hnsw_index *h, uint32_t s) {
    enc_query q = {.exact = true};
    if (h->p.storage == HNSW_FLOAT32) q.f = hnsw_vec(h, s);
    else {
        q.q8 = hnsw_vec(h, s);
        q.scale = hnsw_node_at(h, s)->scale;
    }
    return q;
}

/* The distance between two slots, where `virt` (the node being inserted, not yet written)
 * is represented by its encoded query. */
static float dist_pair(const hnsw_index *h, uint32_t a, uint32_t b, uint32_t virt, const enc_query *vq) {
    if (a == virt) return dist_q(h, vq, b);
    if (b == virt) return dist_q(h, vq, a);
    enc_query q = stored_query(h, a);
    return dist_q(h, &q, b);
}

/* ---- search -------------------------------------------------------------------------------- */

typedef struct {
    index_accept_fn accept;
    void *ctx;
    uint32_t exclude; /* a slot never admitted (the node being repaired) */
} admit_rule;

static bool admitted(const hnsw_index *h, uint32_t s, const admit_rule *r) {
    const hnsw_node *n = hnsw_node_at(h, s);
    if (n->state != SLOT_LIVE || s == r->exclude) return false;
    return !r->accept || r->accept(n->id, r->ctx);
}

/* Greedy walk on one upper layer: moves *cur to a local minimum of the distance. */
static void greedy(const hnsw_index *h, const enc_query *q, int level, uint32_t *cur, float *d) {
    for (bool moved = true; moved;) {
        moved = false;
        const uint32_t *l = hnsw_links(h, *cur, level);
        for (uint32_t i = 1; i <= l[0]; i++) {
            float dn = dist_q(h, q, l[i]);
            if (dn < *d) {
                *d = dn;
                *cur = l[i];
                moved = true;
            }
        }
    }
}

/* Beam search on one layer from ep; leaves at most ef admitted nodes in b->best (a max-heap).
 * Every node is traversed, admitted or not, so filters and marked deletes cost recall nothing
 * as long as the graph stays connected. false when memory runs out. */
static bool search_layer(const hnsw_index *h, const enc_query *q, uint32_t ep, float ep_d, size_t ef, int level,
                         const admit_rule *rule, search_buf *b) {
    /* the vector this walk's distances read: the walk vector, or the float32 one (building). Worked
     * out once here and handed to the prefetch helpers as numbers: with the choice made inside
     * them (a select on q->exact), GCC 12 emitted no prefetch at all and the walk ran at half
     * speed (objdump of hnsw.c.o showed it). */
    uint32_t ahead = q->exact ? h->ahead_exact : h->ahead;
    size_t off = q->exact ? h->vec_offset : 0, bytes = q->exact ? h->vec_bytes : h->walk_bytes;
    buf_new_visit(b);
    visit(b, ep);
    if (!heap_push(&b->near, &b->nnear, &b->cap_near, (cand){ep_d, ep}, false)) return false;
    if (admitted(h, ep, rule) && !heap_push(&b->best, &b->nbest, &b->cap_best, (cand){ep_d, ep}, true)) return false;
    while (b->nnear) {
        cand c = heap_pop(b->near, &b->nnear, false);
        if (b->nbest >= ef && c.d > b->best[0].d) break;
        const uint32_t *l = hnsw_links(h, c.s, level);
        uint32_t fresh[129], nf = 0;
        for (uint32_t i = 1; i <= l[0]; i++)
            if (visit(b, l[i])) {
                fresh[nf++] = l[i];
                prefetch_node(h, l[i], off);
                if (nf <= ahead) prefetch_rest(h, l[i], off, bytes);
            }
        for (uint32_t i = 0; i < nf; i++) {
            uint32_t n = fresh[i];
            if (i + ahead < nf) prefetch_rest(h, fresh[i + ahead], off, bytes);
            float d = dist_q(h, q, n);
            if (b->nbest >= ef && d >= b->best[0].d) continue;
            if (!heap_push(&b->near, &b->nnear, &b->cap_near, (cand){d, n}, false)) return false;
            if (admitted(h, n, rule)) {
                if (!heap_push(&b->best, &b->nbest, &b->cap_best, (cand){d, n}, true)) return false;
                if (b->nbest > ef) heap_pop(b->best, &b->nbest, true);
            }
        }
    }
    return true;
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->d > y->d) - (x->d < y->d);
}

/* Exact copies (the same picture added again and again) need care. To Malkov's heuristic, a copy
 * of the base is never nearer to a kept neighbour than to the base, so a large group of copies
 * fills each other's lists: no links lead out of the group (a walk that enters it is trapped) and,
 * as every outside node keeps at most one copy, soon none lead in either. So a list keeps at most
 * HNSW_MAX_COPIES copies of its own node, the ones ranked first by a hash of the pair: each copy
 * links to a few others picked at random, which keeps the group connected, and the rest of its
 * list links out. Copies are bit-identical stored vectors; only candidates nearer than
 * COPY_NEAR are compared. */
#define HNSW_MAX_COPIES 3
#define COPY_NEAR 0.05f

/* The stored form of a slot's vector, or of `virt` (the node being inserted). */
static const void *stored_form(const hnsw_index *h, uint32_t s, uint32_t virt, const enc_query *vq, float *scale) {
    bool i8 = h->p.storage == HNSW_INT8;
    if (s == virt) {
        *scale = i8 ? vq->scale : 1.0f;
        return i8 ? (const void *)vq->q8 : (const void *)vq->f;
    }
    *scale = i8 ? hnsw_node_at(h, s)->scale : 1.0f;
    return hnsw_vec(h, s);
}

static bool is_copy(const hnsw_index *h, uint32_t a, uint32_t b, uint32_t virt, const enc_query *vq) {
    float sa, sb;
    const void *va = stored_form(h, a, virt, vq, &sa), *vb = stored_form(h, b, virt, vq, &sb);
    size_t len = (size_t)h->p.dims * (h->p.storage == HNSW_INT8 ? 1 : sizeof(float));
    return sa == sb && !memcmp(va, vb, len);
}

static uint64_t pair_rank(uint32_t base, uint32_t s) { /* splitmix64 of the pair */
    uint64_t z = ((uint64_t)base << 32 | s) + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Malkov's heuristic: keep a candidate only if it is nearer to the base than to every neighbour
 * kept so far, which spreads links over directions; copies of the base as above. c is sorted
 * nearest first; base is the node whose list this is (it may be virt). */
static int select_neighbours(const hnsw_index *h, const cand *c, int nc, int max, uint32_t *out, uint32_t base,
                             uint32_t virt, const enc_query *vq) {
    uint64_t cut = 0; /* copies ranked below this are kept */
    uint64_t ranks[HNSW_MAX_COPIES];
    int ncopies = 0;
    for (int i = 0; i < nc && c[i].d <= COPY_NEAR; i++) {
        if (!is_copy(h, base, c[i].s, virt, vq)) continue;
        uint64_t r = pair_rank(base, c[i].s);
        if (ncopies < HNSW_MAX_COPIES) ranks[ncopies++] = r;
        else {
            int worst = 0;
            for (int j = 1; j < HNSW_MAX_COPIES; j++)
                if (ranks[j] > ranks[worst]) worst = j;
            if (r < ranks[worst]) ranks[worst] = r;
        }
    }
    for (int j = 0; j < ncopies; j++)
        if (ranks[j] >= cut) cut = ranks[j] + 1;
    int n = 0;
    for (int i = 0; i < nc && n < max; i++) {
        if (ncopies && c[i].d <= COPY_NEAR && is_copy(h, base, c[i].s, virt, vq)) {
            if (pair_rank(base, c[i].s) < cut) out[n++] = c[i].s;
            continue;
        }
        bool keep = true;
        for (int j = 0; j < n && keep; j++)
            if (dist_pair(h, c[i].s, out[j], virt, vq) < c[i].d) keep = false;
        if (keep) out[n++] = c[i].s;
    }
    return n;
}

/* From the entry point down to `level`, greedily; returns the slot to start the beam from. */
static uint32_t descend(const hnsw_index *h, const enc_query *q, int level, float *d) {
    uint32_t cur = h->entry;
    *d = dist_q(h, q, cur);
    for (int l = h->max_level; l > level; l--) greedy(h, q, l, &cur, d);
    return cur;
}

static void encode_query(const hnsw_index *h, const float *v, search_buf *b, enc_query *q) {
    q->f = v;
    q->scale = encode_i8(v, h->p.dims, b->q8);
    q->q8 = b->q8;
}

/* int8: re-orders candidates by exact distance into out, the vectors read from the caller in one
 * batch. Without them (no callback, or the store cannot be read) the int8 order stands. */
static int rerank(const hnsw_index *h, const float *query, const index_hit *cands, int nc, int k,
                  hnsw_vector_fn exact, void *ctx, index_hit *out, int *nout) {
    size_t dims = (size_t)h->p.dims;
    float *v = NULL;
    bool *found = NULL, have = false;
    if (exact && nc > 0) {
        v = malloc(sizeof(float) * dims * (size_t)nc);
        found = calloc((size_t)nc, sizeof(bool));
        int64_t *ids = calloc((size_t)nc, sizeof *ids);
        if (!v || !found || !ids) {
            free(v);
            free(found);
            free(ids);
            return IS_ERR_NOMEM;
        }
        for (int i = 0; i < nc; i++) ids[i] = cands[i].id;
        have = exact(ids, nc, v, found, ctx) == 0;
        free(ids);
    }
    topk t;
    topk_init(&t, out, k);
    for (int i = 0; i < nc; i++) {
        float d = cands[i].dist;
        if (have) {
            if (!found[i]) continue; /* gone from the store since */
            d = 1.0f - dot_f32(query, v + dims * (size_t)i, dims);
        }
        topk_push(&t, (index_hit){cands[i].id, d});
    }
    free(v);
    free(found);
    *nout = topk_finish(&t);
    return IS_OK;
}

int hnsw_search(hnsw_index *h, const float *query, const hnsw_query *q, index_hit *out, int *nout) {
    *nout = 0;
    if (q->k < 1) return IS_ERR_INVALID;
    bool i8 = h->p.storage == HNSW_INT8;
    size_t ef = (size_t)(q->ef > 0 ? q->ef : h->p.ef_search);
    if (ef < (size_t)q->k) ef = (size_t)q->k;
    /* int8: the re-rank depth follows ef (at most max(2k, k + 16)), so that a small ef stays a
     * cheap search instead of being raised to the re-rank depth */
    int keep = q->k;
    if (i8 && q->rerank > 0) keep = q->rerank;
    else if (i8) {
        int deep = 2 * q->k > q->k + 16 ? 2 * q->k : q->k + 16;
        keep = ef < (size_t)deep ? (int)ef : deep;
    }
    if (keep < q->k) keep = q->k;
    if (ef < (size_t)keep) ef = (size_t)keep;
    index_hit *cands = i8 ? malloc(sizeof *cands * (size_t)keep) : out;
    if (!cands) return IS_ERR_NOMEM;
    int rc = IS_OK, n = 0;
    pthread_rwlock_rdlock(&h->lock);
    search_buf *b = h->entry == HNSW_NONE ? NULL : buf_acquire(h);
    if (h->entry != HNSW_NONE && !b) rc = IS_ERR_NOMEM;
    if (b) {
        enc_query eq = {0};
        encode_query(h, query, b, &eq);
        float d;
        uint32_t ep = descend(h, &eq, 0, &d);
        admit_rule rule = {q->accept, q->accept_ctx, HNSW_NONE};
        if (!search_layer(h, &eq, ep, d, ef, 0, &rule, b)) rc = IS_ERR_NOMEM;
        topk t;
        topk_init(&t, cands, keep);
        /* float32: the walk ranked by its int8 copies; the ef candidates it ends with are
         * ranked by their exact distances (ef float32 reads, against hundreds in the walk), all
         * asked for before the first is needed */
        for (size_t i = 0; !rc && !i8 && i < b->nbest; i++) {
            const char *v = hnsw_vec(h, b->best[i].s);
            for (size_t o = 0; o < h->vec_bytes; o += 64) __builtin_prefetch(v + o);
        }
        for (size_t i = 0; !rc && i < b->nbest; i++)
            topk_push(&t, (index_hit){hnsw_node_at(h, b->best[i].s)->id,
                                      i8 ? b->best[i].d : exact_dist(h, query, b->best[i].s)});
        n = topk_finish(&t);
        buf_release(h, b);
    }
    pthread_rwlock_unlock(&h->lock);
    if (i8) { /* outside the lock: the exact vectors may come from a slow store */
        if (!rc) rc = rerank(h, query, cands, n, q->k, q->exact, q->exact_ctx, out, nout);
        free(cands);
    } else {
        *nout = n;
    }
    return rc;
}

int hnsw_search_ids(hnsw_index *h, const float *query, const int64_t *ids, size_t nids, int k,
                    hnsw_vector_fn exact, void *exact_ctx, index_hit *out, int *nout) {
    *nout = 0;
    if (k < 1) return IS_ERR_INVALID;
    bool i8 = h->p.storage == HNSW_INT8;
    int keep = i8 ? (2 * k > k + 16 ? 2 * k : k + 16) : k;
    index_hit *cands = i8 ? malloc(sizeof *cands * (size_t)keep) : out;
    int8_t *q8 = i8 ? malloc((size_t)h->p.dims) : NULL;
    if (!cands || (i8 && !q8)) {
        if (i8) free(cands);
        free(q8);
        return IS_ERR_NOMEM;
    }
    enc_query eq = {.f = query, .q8 = q8};
    if (i8) eq.scale = encode_i8(query, h->p.dims, q8);
    topk t;
    topk_init(&t, cands, keep);
    pthread_rwlock_rdlock(&h->lock);
    for (size_t i = 0; i < nids; i++) {
        uint32_t s;
        if (idmap_get(&h->where, ids[i], &s))
            topk_push(&t, (index_hit){ids[i], i8 ? dist_q(h, &eq, s) : exact_dist(h, query, s)});
    }
    pthread_rwlock_unlock(&h->lock);
    int n = topk_finish(&t), rc = IS_OK;
    if (i8) {
        rc = rerank(h, query, cands, n, k, exact, exact_ctx, out, nout);
        free(cands);
    } else {
        *nout = n;
    }
    free(q8);
    return rc;
}

/* ---- insert -------------------------------------------------------------------------------- */

/* A link list computed by the writer, applied at publish. For a back link, virt and d say what
 * was added (so that it can be planned again when the list changed meanwhile, batch inserts). */
typedef struct {
    uint32_t slot;
    int level;
    int n;
    uint32_t virt;
    float d;
    uint32_t links[128]; /* 2m <= 128 */
} planned_list;

typedef struct {
    planned_list *v;
    size_t n, cap;
} plan;

static planned_list *plan_next(plan *p) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        planned_list *g = realloc(p->v, cap * sizeof *g);
        if (!g) return NULL;
        p->v = g;
        p->cap = cap;
    }
    return &p->v[p->n++];
}

static void apply_list(hnsw_index *h, const planned_list *pl) {
    uint32_t *l = hnsw_links(h, pl->slot, pl->level);
    memcpy(l + 1, pl->links, sizeof(uint32_t) * (size_t)pl->n);
    l[0] = (uint32_t)pl->n;
}

static void plan_apply(hnsw_index *h, const plan *p) {
    for (size_t i = 0; i < p->n; i++) apply_list(h, &p->v[i]);
}

static int random_level(hnsw_index *h) {
    /* xorshift64*: the writer's own generator, so builds are reproducible */
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    uint64_t r = h->rng * 0x2545F4914F6CDD1DULL;
    double u = ((double)(r >> 11) + 0.5) / 9007199254740992.0;
    int level = (int)(-log(u) * h->level_mult);
    return level < HNSW_MAX_LEVEL ? level : HNSW_MAX_LEVEL;
}

/* Plans adding `virt` to the list of s on level into pl (shrinking it with the heuristic when
 * full), from the list as it is now. */
static void plan_backlink_into(const hnsw_index *h, planned_list *pl, uint32_t s, int level, uint32_t virt, float d,
                               const enc_query *vq) {
    const uint32_t *l = hnsw_links(h, s, level);
    int max = hnsw_max_links(h, level);
    pl->slot = s;
    pl->level = level;
    pl->virt = virt;
    pl->d = d;
    if ((int)l[0] < max) {
        memcpy(pl->links, l + 1, sizeof(uint32_t) * l[0]);
        pl->links[l[0]] = virt;
        pl->n = (int)l[0] + 1;
        return;
    }
    cand c[129];
    enc_query sq = stored_query(h, s);
    int nc = 0;
    for (uint32_t i = 1; i <= l[0]; i++) c[nc++] = (cand){dist_q(h, &sq, l[i]), l[i]};
    c[nc++] = (cand){d, virt};
    qsort(c, (size_t)nc, sizeof *c, cmp_cand);
    pl->n = select_neighbours(h, c, nc, max, pl->links, s, virt, vq);
}

static bool plan_backlink(const hnsw_index *h, plan *p, uint32_t s, int level, uint32_t virt, float d,
                          const enc_query *vq) {
    planned_list *pl = plan_next(p);
    if (!pl) return false;
    plan_backlink_into(h, pl, s, level, virt, d, vq);
    return true;
}

static int grow_free_list(hnsw_index *h) {
    if (h->nfree < h->free_cap) return IS_OK;
    size_t cap = h->free_cap ? h->free_cap * 2 : 64;
    uint32_t *f = realloc(h->free_slots, cap * sizeof *f);
    if (!f) return IS_ERR_NOMEM;
    h->free_slots = f;
    h->free_cap = cap;
    return IS_OK;
}

/* One insert: prepared by the writer (slot, level, buffers), planned without locks (step 1:
 * search, own lists, back links; several jobs may plan at once, the graph only being read), then
 * published by the writer under the write lock (step 2). */
typedef struct {
    int64_t id;
    const float *vec;
    uint32_t slot;
    int level;
    uint32_t *upper;
    int8_t *q8;
    enc_query vq;
    plan own, back;
    int rc;
} insert_job;

static void job_free(insert_job *j) {
    free(j->upper);
    free(j->q8);
    free(j->own.v);
    free(j->back.v);
    memset(j, 0, sizeof *j);
}

static int job_prepare(hnsw_index *h, insert_job *j, int64_t id, const float *vec, uint32_t slot) {
    memset(j, 0, sizeof *j);
    j->id = id;
    j->vec = vec;
    j->slot = slot;
    j->level = random_level(h);
    if (j->level && !(j->upper = calloc((size_t)j->level * (size_t)(1 + h->p.m), sizeof(uint32_t))))
        return IS_ERR_NOMEM;
    if (h->p.storage == HNSW_INT8 && !(j->q8 = malloc((size_t)h->p.dims))) return IS_ERR_NOMEM;
    j->vq = (enc_query){.f = vec, .q8 = j->q8, .exact = true};
    if (j->q8) j->vq.scale = encode_i8(vec, h->p.dims, j->q8);
    return IS_OK;
}

static void job_plan(hnsw_index *h, insert_job *j) {
    if (h->entry == HNSW_NONE) return;
    search_buf *b = buf_acquire(h);
    if (!b) {
        j->rc = IS_ERR_NOMEM;
        return;
    }
    float d;
    int top = j->level < h->max_level ? j->level : h->max_level;
    uint32_t ep = descend(h, &j->vq, top, &d);
    admit_rule live = {NULL, NULL, HNSW_NONE};
    for (int l = top; !j->rc && l >= 0; l--) {
        if (!search_layer(h, &j->vq, ep, d, (size_t)h->p.ef_construction, l, &live, b)) {
            j->rc = IS_ERR_NOMEM;
            break;
        }
        int nc = (int)b->nbest;
        cand *c = b->best;
        qsort(c, (size_t)nc, sizeof *c, cmp_cand);
        planned_list *mine = plan_next(&j->own);
        if (!mine) {
            j->rc = IS_ERR_NOMEM;
            break;
        }
        mine->slot = j->slot;
        mine->level = l;
        mine->n = select_neighbours(h, c, nc, hnsw_max_links(h, l), mine->links, j->slot, j->slot, &j->vq);
        for (int i = 0; i < mine->n && !j->rc; i++) {
            float dn = 0;
            for (int k = 0; k < nc; k++)
                if (c[k].s == mine->links[i]) dn = c[k].d;
            if (!plan_backlink(h, &j->back, mine->links[i], l, j->slot, dn, &j->vq)) j->rc = IS_ERR_NOMEM;
        }
        if (nc) {
            ep = c[0].s;
            d = c[0].d;
        }
    }
    buf_release(h, b);
}

/* The lists (slot, level) already rewritten by earlier publishes of a batch: a back link planned
 * from the old list is planned again from the new one, so no link is lost. Open addressing. */
typedef struct {
    uint64_t *keys; /* key + 1; 0 = empty */
    size_t cap, n;
} touched_set;

static uint64_t touched_key(uint32_t slot, int level) { return ((uint64_t)slot << 5 | (uint64_t)level) + 1; }

static bool touched_has(const touched_set *t, uint64_t key) {
    for (size_t i = (size_t)(key * 0x9E3779B97F4A7C15ULL) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (t->keys[i] == key) return true;
        if (!t->keys[i]) return false;
    }
}

static int touched_add(touched_set *t, uint64_t key) {
    if ((t->n + 1) * 2 > t->cap) {
        touched_set g = {calloc(t->cap * 2, sizeof *g.keys), t->cap * 2, 0};
        if (!g.keys) return IS_ERR_NOMEM;
        for (size_t i = 0; i < t->cap; i++)
            if (t->keys[i]) touched_add(&g, t->keys[i]);
        free(t->keys);
        *t = g;
    }
    size_t i = (size_t)(key * 0x9E3779B97F4A7C15ULL) & (t->cap - 1);
    while (t->keys[i] && t->keys[i] != key) i = (i + 1) & (t->cap - 1);
    if (!t->keys[i]) {
        t->keys[i] = key;
        t->n++;
    }
    return IS_OK;
}

/* Step 2. With t (a batch), back links into lists an earlier job of the batch rewrote are planned
 * again first; without locks, as only the writer changes lists. */
static int job_publish(hnsw_index *h, insert_job *j, touched_set *t) {
    int rc = IS_OK;
    for (size_t i = 0; t && !rc && i < j->back.n; i++) {
        planned_list *pl = &j->back.v[i];
        uint64_t key = touched_key(pl->slot, pl->level);
        if (touched_has(t, key)) plan_backlink_into(h, pl, pl->slot, pl->level, pl->virt, pl->d, &j->vq);
        rc = touched_add(t, key);
    }
    if (rc) return rc;
    pthread_rwlock_wrlock(&h->lock);
    if (idmap_put(&h->where, j->id, j->slot)) rc = IS_ERR_NOMEM;
    else {
        hnsw_node *n = hnsw_node_at(h, j->slot);
        n->id = j->id;
        n->upper = j->upper;
        n->level = (uint8_t)j->level;
        n->state = SLOT_LIVE;
        if (h->p.storage == HNSW_INT8) {
            n->scale = j->vq.scale;
            memcpy(hnsw_vec(h, j->slot), j->q8, (size_t)h->p.dims);
        } else {
            memcpy(hnsw_vec(h, j->slot), j->vec, sizeof(float) * (size_t)h->p.dims);
            hnsw_fill_walk(h, j->slot);
        }
        hnsw_links(h, j->slot, 0)[0] = 0;
        plan_apply(h, &j->own);
        plan_apply(h, &j->back);
        if (h->nfree && h->free_slots[h->nfree - 1] == j->slot) h->nfree--;
        else h->nslots++;
        h->count++;
        h->upper_bytes += j->level ? (size_t)j->level * (size_t)(1 + h->p.m) * sizeof(uint32_t) : 0;
        if (j->level > h->max_level) {
            h->max_level = j->level;
            h->entry = j->slot;
        }
        j->upper = NULL; /* owned by the node now */
    }
    pthread_rwlock_unlock(&h->lock);
    return rc;
}

int hnsw_add(hnsw_index *h, int64_t id, const float *vec) {
    uint32_t slot;
    if (idmap_get(&h->where, id, &slot)) return IS_ERR_INVALID;
    if (!h->nfree && h->nslots == HNSW_NONE - 1) return IS_ERR_NOMEM;
    slot = h->nfree ? h->free_slots[h->nfree - 1] : h->nslots;
    pthread_rwlock_wrlock(&h->lock); /* the chunk table may move */
    int rc = hnsw_reserve(h, slot);
    pthread_rwlock_unlock(&h->lock);
    insert_job j;
    if (!rc) rc = job_prepare(h, &j, id, vec, slot);
    if (!rc) {
        job_plan(h, &j);
        rc = j.rc;
    }
    if (!rc) rc = job_publish(h, &j, NULL);
    job_free(&j);
    return rc;
}

/* ---- batch insert: plans in parallel, publishes in order ----------------------------------- */

/* Jobs planned at once per thread. The jobs of one batch do not see each other while planning
 * (each links only to nodes published before the batch), so batches stay small next to the
 * graph, and the first HNSW_SERIAL_BELOW nodes go one by one. */
#define HNSW_BATCH_PER_THREAD 16
#define HNSW_SERIAL_BELOW 2048

typedef struct {
    hnsw_index *h;
    insert_job *jobs;
    size_t n;
    size_t next; /* atomic: the next job to plan */
} plan_work;

static void *plan_worker(void *arg) {
    plan_work *w = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
        if (i >= w->n) return NULL;
        job_plan(w->h, &w->jobs[i]);
    }
}

int hnsw_add_batch(hnsw_index *h, const int64_t *ids, const float *vecs, size_t n, int threads) {
    size_t dims = (size_t)h->p.dims, done = 0;
    if (threads > HNSW_MAX_THREADS) threads = HNSW_MAX_THREADS;
    /* the serial path: one thread, a young graph, or freed slots to reuse */
    while (done < n && (threads <= 1 || h->count < HNSW_SERIAL_BELOW || h->nfree)) {
        int rc = hnsw_add(h, ids[done], vecs + done * dims);
        if (rc) return rc;
        done++;
    }
    if (done == n) return IS_OK;
    size_t batch = (size_t)threads * HNSW_BATCH_PER_THREAD;
    insert_job *jobs = calloc(batch, sizeof *jobs);
    touched_set t = {calloc(4096, sizeof *t.keys), 4096, 0};
    int rc = jobs && t.keys ? IS_OK : IS_ERR_NOMEM;
    while (!rc && done < n) {
        size_t m = n - done < batch ? n - done : batch;
        if ((size_t)h->nslots + m >= HNSW_NONE - 1) rc = IS_ERR_NOMEM;
        for (size_t i = 0; !rc && i < m; i++) {
            uint32_t slot;
            if (idmap_get(&h->where, ids[done + i], &slot)) rc = IS_ERR_INVALID;
            for (size_t k = 0; !rc && k < i; k++)
                if (jobs[k].id == ids[done + i]) rc = IS_ERR_INVALID;
            if (!rc) rc = job_prepare(h, &jobs[i], ids[done + i], vecs + (done + i) * dims, h->nslots + (uint32_t)i);
        }
        if (!rc) {
            pthread_rwlock_wrlock(&h->lock); /* the chunk table may move */
            rc = hnsw_reserve(h, h->nslots + (uint32_t)m - 1);
            pthread_rwlock_unlock(&h->lock);
        }
        if (!rc) {
            plan_work w = {h, jobs, m, 0};
            pthread_t tid[HNSW_MAX_THREADS];
            int started = 0;
            for (int i = 1; i < threads && (size_t)i < m; i++)
                if (!pthread_create(&tid[started], NULL, plan_worker, &w)) started++;
            plan_worker(&w); /* this thread plans too; fewer helpers only means slower */
            for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
        }
        /* publish in order: slot nslots + i is the next fresh slot when job i publishes */
        memset(t.keys, 0, t.cap * sizeof *t.keys);
        t.n = 0;
        for (size_t i = 0; !rc && i < m; i++) {
            rc = jobs[i].rc;
            if (!rc) rc = job_publish(h, &jobs[i], &t);
        }
        for (size_t i = 0; i < m; i++) job_free(&jobs[i]);
        done += m;
    }
    free(jobs);
    free(t.keys);
    return rc;
}

/* ---- delete and repair --------------------------------------------------------------------- */

int hnsw_remove(hnsw_index *h, int64_t id) {
    uint32_t s;
    if (!idmap_get(&h->where, id, &s)) return IS_ERR_NOT_FOUND;
    pthread_rwlock_wrlock(&h->lock);
    hnsw_node_at(h, s)->state = SLOT_DEAD;
    idmap_remove(&h->where, id);
    h->count--;
    h->ndead++;
    pthread_rwlock_unlock(&h->lock);
    /* batches keep the cost per delete small: one pass over the graph per 2% deleted */
    size_t total = h->count + h->ndead;
    if (h->ndead >= (total / 50 > 0 ? total / 50 : 1))
        hnsw_repair(h); /* the delete stands either way; a failed repair is retried next time */
    return IS_OK;
}

/* Collects live nodes reachable on `level` through marked ones (two hops at most). */
static int gather_through_dead(const hnsw_index *h, uint32_t dead, int level, int hops, uint32_t self,
                               search_buf *b, cand *c, int nc, int cap) {
    if (hnsw_node_at(h, dead)->level < level) return nc;
    const uint32_t *l = hnsw_links(h, dead, level);
    for (uint32_t i = 1; i <= l[0] && nc < cap; i++) {
        uint32_t n = l[i];
        if (n == self || !visit(b, n)) continue;
        uint8_t st = hnsw_node_at(h, n)->state;
        if (st == SLOT_LIVE) c[nc++] = (cand){0, n};
        else if (st == SLOT_DEAD && hops > 1) nc = gather_through_dead(h, n, level, hops - 1, self, b, c, nc, cap);
    }
    return nc;
}

/* New links for slot x on level, replacing the marked ones; false when memory runs out. */
static bool plan_repair(hnsw_index *h, uint32_t x, int level, search_buf *b, cand *c, int cap, plan *p) {
    const uint32_t *l = hnsw_links(h, x, level);
    buf_new_visit(b);
    visit(b, x);
    int nc = 0;
    for (uint32_t i = 1; i <= l[0]; i++)
        if (hnsw_node_at(h, l[i])->state == SLOT_LIVE && visit(b, l[i])) c[nc++] = (cand){0, l[i]};
    for (uint32_t i = 1; i <= l[0]; i++)
        if (hnsw_node_at(h, l[i])->state != SLOT_LIVE) nc = gather_through_dead(h, l[i], level, 2, x, b, c, nc, cap);
    enc_query xq = stored_query(h, x);
    if (nc == 0 && h->entry != HNSW_NONE && h->entry != x) {
        /* every neighbour was deleted: find new ones by searching from the entry point */
        float d;
        uint32_t ep = descend(h, &xq, level, &d);
        admit_rule live = {NULL, NULL, x};
        if (!search_layer(h, &xq, ep, d, (size_t)h->p.ef_construction, level, &live, b)) return false;
        for (size_t i = 0; i < b->nbest && nc < cap; i++) c[nc++] = b->best[i];
    }
    for (int i = 0; i < nc; i++) c[i].d = dist_q(h, &xq, c[i].s);
    qsort(c, (size_t)nc, sizeof *c, cmp_cand);
    planned_list *pl = plan_next(p);
    if (!pl) return false;
    pl->slot = x;
    pl->level = level;
    pl->n = select_neighbours(h, c, nc, hnsw_max_links(h, level), pl->links, x, HNSW_NONE, NULL);
    return true;
}

static bool has_dead_link(const hnsw_index *h, uint32_t x, int level) {
    const uint32_t *l = hnsw_links(h, x, level);
    for (uint32_t i = 1; i <= l[0]; i++)
        if (hnsw_node_at(h, l[i])->state != SLOT_LIVE) return true;
    return false;
}

int hnsw_repair(hnsw_index *h) {
    if (!h->ndead) return IS_OK;
    /* a live entry point first: the fallback searches below start there */
    uint32_t entry = HNSW_NONE;
    int max_level = -1;
    for (uint32_t s = 0; s < h->nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state == SLOT_LIVE && (int)n->level > max_level) {
            max_level = n->level;
            entry = s;
        }
    }
    if (h->entry == HNSW_NONE || hnsw_node_at(h, h->entry)->state != SLOT_LIVE) {
        pthread_rwlock_wrlock(&h->lock);
        h->entry = entry;
        h->max_level = max_level;
        pthread_rwlock_unlock(&h->lock);
    }
    int cap = h->m0 * (1 + h->m0) * 2 + h->p.ef_construction;
    cand *c = malloc(sizeof *c * (size_t)cap);
    search_buf *b = buf_acquire(h);
    plan p = {0};
    int rc = c && b ? IS_OK : IS_ERR_NOMEM;
    for (uint32_t s = 0; !rc && s < h->nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state != SLOT_LIVE) continue;
        for (int l = 0; l <= n->level && !rc; l++)
            if (has_dead_link(h, s, l) && !plan_repair(h, s, l, b, c, cap, &p)) rc = IS_ERR_NOMEM;
        if (p.n >= 1024 || (s + 1 == h->nslots && p.n)) { /* publish in batches: each is a valid graph */
            pthread_rwlock_wrlock(&h->lock);
            plan_apply(h, &p);
            pthread_rwlock_unlock(&h->lock);
            p.n = 0;
        }
    }
    if (!rc && p.n) {
        pthread_rwlock_wrlock(&h->lock);
        plan_apply(h, &p);
        pthread_rwlock_unlock(&h->lock);
    }
    /* no live node links to a marked one now: free them */
    pthread_rwlock_wrlock(&h->lock);
    for (uint32_t s = 0; !rc && s < h->nslots; s++) {
        hnsw_node *n = hnsw_node_at(h, s);
        if (n->state != SLOT_DEAD) continue;
        if (grow_free_list(h)) {
            rc = IS_ERR_NOMEM;
            break;
        }
        h->upper_bytes -= (size_t)n->level * (size_t)(1 + h->p.m) * sizeof(uint32_t);
        free(n->upper);
        memset(hnsw_rec(h, s), 0, h->rec_size);
        n->state = SLOT_FREE;
        h->free_slots[h->nfree++] = s;
        h->ndead--;
    }
    pthread_rwlock_unlock(&h->lock);
    if (b) buf_release(h, b);
    free(c);
    free(p.v);
    return rc;
}

/* ---- readers ------------------------------------------------------------------------------- */

const hnsw_params *hnsw_get_params(const hnsw_index *h) { return &h->p; }

void hnsw_set_ef_search(hnsw_index *h, int ef) {
    if (ef < 1 || ef > 4096) return;
    pthread_rwlock_wrlock(&h->lock);
    h->p.ef_search = ef;
    pthread_rwlock_unlock(&h->lock);
}

size_t hnsw_count(hnsw_index *h) {
    pthread_rwlock_rdlock(&h->lock);
    size_t n = h->count;
    pthread_rwlock_unlock(&h->lock);
    return n;
}

size_t hnsw_memory_bytes(hnsw_index *h) {
    pthread_rwlock_rdlock(&h->lock);
    size_t bytes = sizeof *h + (h->nchunks << h->chunk_bits) * h->rec_size + h->chunks_cap * sizeof(void *) +
                   h->upper_bytes + h->free_cap * sizeof(uint32_t) +
                   h->where.cap * (sizeof(int64_t) + sizeof(uint32_t) + sizeof(bool));
    pthread_mutex_lock(&h->pool_lock);
    for (search_buf *b = h->pool; b; b = b->next)
        bytes += sizeof *b + b->ntags * sizeof(uint32_t) + (b->cap_near + b->cap_best) * sizeof(cand);
    pthread_mutex_unlock(&h->pool_lock);
    pthread_rwlock_unlock(&h->lock);
    return bytes;
}

bool hnsw_contains(hnsw_index *h, int64_t id) {
    uint32_t s;
    pthread_rwlock_rdlock(&h->lock);
    bool found = idmap_get(&h->where, id, &s);
    pthread_rwlock_unlock(&h->lock);
    return found;
}

bool hnsw_get(hnsw_index *h, int64_t id, float *out) {
    uint32_t s;
    pthread_rwlock_rdlock(&h->lock);
    bool found = idmap_get(&h->where, id, &s);
    if (found && h->p.storage == HNSW_FLOAT32) memcpy(out, hnsw_vec(h, s), sizeof(float) * (size_t)h->p.dims);
    else if (found) {
        const int8_t *q = hnsw_vec(h, s);
        float scale = hnsw_node_at(h, s)->scale;
        for (int i = 0; i < h->p.dims; i++) out[i] = (float)q[i] * scale;
    }
    pthread_rwlock_unlock(&h->lock);
    return found;
}

bool hnsw_matches(hnsw_index *h, int64_t id, const float *vec) {
    int8_t *q8 = h->p.storage == HNSW_INT8 ? malloc((size_t)h->p.dims) : NULL;
    if (h->p.storage == HNSW_INT8 && !q8) return false;
    float scale = q8 ? encode_i8(vec, h->p.dims, q8) : 1.0f;
    uint32_t s;
    pthread_rwlock_rdlock(&h->lock);
    bool same = idmap_get(&h->where, id, &s);
    if (same && q8) same = hnsw_node_at(h, s)->scale == scale && !memcmp(hnsw_vec(h, s), q8, (size_t)h->p.dims);
    else if (same) same = !memcmp(hnsw_vec(h, s), vec, sizeof(float) * (size_t)h->p.dims);
    pthread_rwlock_unlock(&h->lock);
    free(q8);
    return same;
}

int hnsw_ids(hnsw_index *h, int64_t **ids, size_t *n) {
    pthread_rwlock_rdlock(&h->lock);
    int64_t *v = malloc(sizeof *v * (h->count ? h->count : 1));
    size_t m = 0;
    for (uint32_t s = 0; v && s < h->nslots; s++) {
        const hnsw_node *node = hnsw_node_at(h, s);
        if (node->state == SLOT_LIVE) v[m++] = node->id;
    }
    pthread_rwlock_unlock(&h->lock);
    *ids = v;
    *n = m;
    return v ? IS_OK : IS_ERR_NOMEM;
}

size_t hnsw_sample_ids(hnsw_index *h, uint64_t seed, size_t n, int64_t *out) {
    size_t got = 0;
    uint64_t x = seed | 1;
    pthread_rwlock_rdlock(&h->lock);
    /* random probes; a full collection answers in about n probes, a sparse one gives up */
    for (size_t tries = 0; h->nslots && got < n && tries < 4 * n; tries++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const hnsw_node *node = hnsw_node_at(h, (uint32_t)(x % h->nslots));
        if (node->state == SLOT_LIVE) out[got++] = node->id;
    }
    pthread_rwlock_unlock(&h->lock);
    return got;
}

void hnsw_free(hnsw_index *h) {
    if (!h) return;
    for (uint32_t s = 0; s < h->nslots; s++) free(hnsw_node_at(h, s)->upper);
    for (size_t i = 0; i < h->nchunks; i++) free(h->chunks[i]);
    free(h->chunks);
    free(h->free_slots);
    idmap_destroy(&h->where);
    while (h->pool) {
        search_buf *b = h->pool;
        h->pool = b->next;
        buf_free(b);
    }
    pthread_rwlock_destroy(&h->lock);
    pthread_mutex_destroy(&h->pool_lock);
    free(h);
}
