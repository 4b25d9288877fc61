/* hnsw.h — Hierarchical Navigable Small World graph over L2-normalised vectors (cosine).
 *
 * The approximate index for large collections (the exact scan in flat.h stays the reference and
 * the planner's choice for selective filters). Vectors are stored as float32 or as int8 (one
 * scale per vector); int8 results are re-ranked with exact vectors the caller supplies. A float32
 * index also keeps an int8 copy of each vector (a quarter of a float32 vector more memory) on
 * which a search's graph walk computes its distances, as an int8 index does; the candidates the
 * walk ends with are ranked by their exact float32 distances, which are the distances returned.
 * Inserts use the float32 vectors throughout.
 *
 * Deletes are true deletes, done in two steps: hnsw_remove marks the node (it stops appearing in
 * results at once but still routes searches); when marked nodes reach 2% of the collection, or
 * on hnsw_repair, every node that links to one gets its list rebuilt from its live neighbours and
 * theirs (the HNSW neighbour heuristic), the marked nodes leave the graph and their slots are
 * reused by later adds.
 *
 * Threads: any number of concurrent readers (search, get, ids, save) and at most one writer at a
 * time (add, remove, repair) — the caller serialises writers. The writer does its expensive part
 * (searching for neighbours) without blocking readers and takes the internal write lock only to
 * publish the links it computed, so readers never see a half-written node.
 * Memory: the index owns copies of the vectors; results go to caller buffers. */
#ifndef IMGSEARCH_HNSW_H
#define IMGSEARCH_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/index.h"

typedef struct hnsw_index hnsw_index;

typedef enum { HNSW_FLOAT32 = 0, HNSW_INT8 = 1 } hnsw_storage;

typedef struct {
    int dims;
    int m;               /* links per node on upper layers, 2m on layer 0 (2..64, default 16) */
    int ef_construction; /* candidate list while inserting (default 200) */
    int ef_search;       /* default candidate list while searching (default 64) */
    hnsw_storage storage;
    uint64_t seed;       /* for the level draws: equal inputs build equal graphs */
} hnsw_params;

/* Supplies the exact vectors of n ids at once (from the store: one read for a whole re-ranking,
 * not one per candidate), for int8 re-ranking: vector i goes to out + i × dims and found[i] says
 * whether id i still exists. Returns 0, or non-zero when the vectors cannot be read at all (the
 * approximate order is kept then). */
typedef int (*hnsw_vector_fn)(const int64_t *ids, int n, float *out, bool *found, void *ctx);

typedef struct {
    int k;                   /* results wanted (>= 1) */
    int ef;                  /* candidate list; 0 = the index's ef_search; raised to k if lower */
    index_accept_fn accept;  /* filter evaluated during traversal; NULL = all */
    void *accept_ctx;
    hnsw_vector_fn exact;    /* int8 only: exact vectors for re-ranking (NULL = approximate order) */
    void *exact_ctx;
    int rerank;              /* int8 only: candidates re-ranked; 0 = min(ef, max(2k, k + 16)) */
} hnsw_query;

void hnsw_params_default(hnsw_params *p, int dims);
/* NULL when a parameter is out of range or memory runs out. */
hnsw_index *hnsw_new(const hnsw_params *p);
void hnsw_free(hnsw_index *h);

const hnsw_params *hnsw_get_params(const hnsw_index *h);
/* Changes the default ef of later searches (1..4096; others are ignored). Writer call. */
void hnsw_set_ef_search(hnsw_index *h, int ef);
size_t hnsw_count(hnsw_index *h);       /* live vectors */
size_t hnsw_memory_bytes(hnsw_index *h); /* everything the index allocated */

/* Writer calls. add: IS_ERR_INVALID if id is present, IS_ERR_NOMEM. remove: IS_ERR_NOT_FOUND. */
int hnsw_add(hnsw_index *h, int64_t id, const float *vec);
/* Adds n vectors (ids[i] at vecs + i × dims) as n hnsw_add calls would, planning up to `threads`
 * inserts at once on threads of its own (at most HNSW_MAX_THREADS) and publishing them in order;
 * readers go on meanwhile. A graph built so has the recall of one built serially (test_hnsw).
 * Stops at the first error: the vectors before it are in, the rest not (IS_ERR_INVALID for an id
 * present or repeated, IS_ERR_NOMEM). */
#define HNSW_MAX_THREADS 64
int hnsw_add_batch(hnsw_index *h, const int64_t *ids, const float *vecs, size_t n, int threads);
int hnsw_remove(hnsw_index *h, int64_t id);
/* Takes every marked node out of the graph now and frees its slot. */
int hnsw_repair(hnsw_index *h);

/* Reader calls. */
bool hnsw_contains(hnsw_index *h, int64_t id);
/* Is id stored exactly as vec would be stored (bit for bit after encoding)? */
bool hnsw_matches(hnsw_index *h, int64_t id, const float *vec);
/* The stored vector decoded to float (approximate for int8); false if absent. */
bool hnsw_get(hnsw_index *h, int64_t id, float *out);
/* The k nearest accepted live vectors, nearest first, into out[q->k]. */
int hnsw_search(hnsw_index *h, const float *query, const hnsw_query *q, index_hit *out, int *nout);
/* Exact ranking of the listed ids (absent ones skipped) — the planner's path for selective
 * filters. int8 distances are re-ranked through exact when given. */
int hnsw_search_ids(hnsw_index *h, const float *query, const int64_t *ids, size_t nids, int k,
                    hnsw_vector_fn exact, void *exact_ctx, index_hit *out, int *nout);
/* Every live id (caller frees *ids). */
int hnsw_ids(hnsw_index *h, int64_t **ids, size_t *n);
/* Up to n live ids drawn at random (for estimating a filter's selectivity); returns how many. */
size_t hnsw_sample_ids(hnsw_index *h, uint64_t seed, size_t n, int64_t *out);

/* Snapshot: written to path.tmp, fsynced, renamed over path, directory fsynced; seq is stored
 * with it. Readers may go on meanwhile; the writer waits. A file that is truncated, corrupt
 * (checksum) or inconsistent is refused by load with IS_ERR_CORRUPT. */
int hnsw_save(hnsw_index *h, const char *path, int64_t seq, char *err, size_t errlen);
int hnsw_load(const char *path, hnsw_index **out, int64_t *seq, char *err, size_t errlen);
/* The same over len bytes in memory (what names them in messages); nothing is kept of buf. */
int hnsw_load_buffer(const void *buf, size_t len, const char *what, hnsw_index **out, int64_t *seq, char *err,
                     size_t errlen);

#endif
