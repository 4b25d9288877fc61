/* fuzz_hnsw.c — the HNSW snapshot loader (src/index/hnsw.h, hnsw_file.c): <data>/index.hnsw is a
 * file the server reads at start-up; a damaged or crafted one must be refused (the index is then
 * rebuilt from the store), never trusted.
 *
 * Input: a whole snapshot, loaded from memory (hnsw_load_buffer, which hnsw_load runs on the
 * file's stream). It is loaded as it is, and again with its trailing checksum made right
 * (hnsw_file_checksum), so that mutations reach the structural checks behind the checksum. A graph
 * the loader accepts is then used the way the engine uses it: every id read back, searched
 * (plain, with a filter, over a list of ids), sampled, written to (adds, removes, a repair), saved
 * and loaded again. Checks, beyond the sanitizers (an accepted graph that makes a search read out
 * of bounds is a loader bug): refusals are IS_ERR_CORRUPT or IS_ERR_NOMEM; results hold at most k
 * live ids that the filter accepts, at finite distances, nearest first; the count matches the ids;
 * what is saved loads again with the same count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "index/hnsw.h"
#include "index/hnsw_internal.h"
#include "util/status.h"

static char snap_path[400];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(snap_path, sizeof snap_path, "%s/index.hnsw", fuzz_scratch("hnsw"));
    return 0;
}

static bool accept_even(int64_t id, void *ctx) {
    (void)ctx;
    return id % 2 == 0;
}

static void query_vector(float *q, int dims, unsigned salt) {
    double ss = 0;
    for (int i = 0; i < dims; i++) {
        q[i] = (float)sin((double)(i + 1) * (salt + 1.37));
        ss += (double)q[i] * q[i];
    }
    for (int i = 0; i < dims; i++) q[i] = (float)(q[i] / sqrt(ss > 0 ? ss : 1));
}

static bool contains_id(const int64_t *ids, size_t n, int64_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void check_hits(hnsw_index *h, const index_hit *hits, int n, int k, bool even_only) {
    FUZZ_CHECK(n >= 0 && n <= k);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(hnsw_contains(h, hits[i].id));
        if (even_only) FUZZ_CHECK(hits[i].id % 2 == 0);
        /* finite (the loader refuses vectors that are not unit length), nearest first, ties by id */
        FUZZ_CHECK(isfinite(hits[i].dist));
        if (i && hit_worse(hits[i - 1], hits[i]))
            for (int j = 0; j < n; j++) fprintf(stderr, "fuzz_hnsw: hit %d: id %lld dist %.9g\n", j, (long long)hits[j].id, hits[j].dist);
        if (i) FUZZ_CHECK(!hit_worse(hits[i - 1], hits[i]));
    }
}

/* Exact vectors for int8 re-ranking: what the index holds, decoded (the engine reads the store). */
static int exact_vectors(const int64_t *ids, int n, float *out, bool *found, void *ctx) {
    hnsw_index *h = ctx;
    int dims = hnsw_get_params(h)->dims;
    for (int i = 0; i < n; i++) found[i] = hnsw_get(h, ids[i], out + (size_t)i * (size_t)dims);
    return 0;
}

static void use(hnsw_index *h) {
    const hnsw_params *p = hnsw_get_params(h);
    int dims = p->dims;
    int64_t *ids = NULL;
    size_t nids = 0;
    FUZZ_CHECK(hnsw_ids(h, &ids, &nids) == IS_OK);
    FUZZ_CHECK(nids == hnsw_count(h));
    float *v = malloc(sizeof(float) * (size_t)dims), *q = malloc(sizeof(float) * (size_t)dims);
    if (!v || !q) abort();
    int64_t max_id = 0;
    for (size_t i = 0; i < nids; i++) {
        FUZZ_CHECK(hnsw_contains(h, ids[i]) && hnsw_get(h, ids[i], v));
        if (ids[i] > max_id) max_id = ids[i];
    }
    query_vector(q, dims, 0);
    index_hit hits[8];
    int n = 0;
    hnsw_query hq = {.k = 5, .ef = 16};
    FUZZ_CHECK(hnsw_search(h, q, &hq, hits, &n) == IS_OK);
    check_hits(h, hits, n, 5, false);
    if (nids) FUZZ_CHECK(n == (nids < 5 ? (int)nids : 5) || p->storage == HNSW_INT8 || n > 0);
    hnsw_query filtered = {.k = 8, .ef = 8, .accept = accept_even, .exact = exact_vectors, .exact_ctx = h};
    FUZZ_CHECK(hnsw_search(h, q, &filtered, hits, &n) == IS_OK);
    check_hits(h, hits, n, 8, true);
    FUZZ_CHECK(hnsw_search_ids(h, q, ids, nids, 4, exact_vectors, h, hits, &n) == IS_OK);
    check_hits(h, hits, n, 4, false);
    int64_t sample[16];
    size_t ns = hnsw_sample_ids(h, 7, 16, sample);
    FUZZ_CHECK(ns <= 16 && ns <= nids);
    for (size_t i = 0; i < ns; i++) FUZZ_CHECK(contains_id(ids, nids, sample[i]));

    /* the writer's side on a loaded graph: adds (new ids), removes, a repair */
    if (max_id < INT64_MAX - 4)
        for (int i = 1; i <= 3; i++) {
            query_vector(v, dims, (unsigned)i);
            FUZZ_CHECK(hnsw_add(h, max_id + i, v) == IS_OK);
        }
    for (size_t i = 0; i < nids && i < 3; i++) FUZZ_CHECK(hnsw_remove(h, ids[i]) == IS_OK);
    FUZZ_CHECK(hnsw_repair(h) == IS_OK);
    FUZZ_CHECK(hnsw_search(h, q, &hq, hits, &n) == IS_OK);
    check_hits(h, hits, n, 5, false);

    char err[512];
    FUZZ_CHECK(hnsw_save(h, snap_path, 42, err, sizeof err) == IS_OK);
    free(ids);
    free(v);
    free(q);
}

static void load_and_use(const uint8_t *data, size_t size) {
    hnsw_index *h = NULL;
    int64_t seq = 0;
    char err[512];
    int rc = hnsw_load_buffer(data, size, "input", &h, &seq, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(h == NULL && (rc == IS_ERR_CORRUPT || rc == IS_ERR_NOMEM) && err[0]);
        return;
    }
    use(h);
    size_t count = hnsw_count(h);
    /* freed before the saved copy is loaded: a graph of many dimensions costs a chunk of up to
     * 32 MB (hnsw_internal.h), and two at once under ASan's bookkeeping add up */
    hnsw_free(h);
    hnsw_index *back = NULL;
    rc = hnsw_load(snap_path, &back, &seq, err, sizeof err);
    if (rc) fprintf(stderr, "fuzz_hnsw: a saved graph does not load: %s\n", err);
    FUZZ_CHECK(rc == IS_OK && seq == 42 && hnsw_count(back) == count);
    hnsw_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_and_use(data, size);
    if (size < 16) return 0;
    uint64_t sum = hnsw_file_checksum(data, size - 8);
    if (!memcmp(data + size - 8, &sum, 8)) return 0; /* already consistent: loaded above */
    uint8_t *fixed = malloc(size);
    if (!fixed) abort();
    memcpy(fixed, data, size - 8);
    memcpy(fixed + size - 8, &sum, 8);
    load_and_use(fixed, size);
    free(fixed);
    return 0;
}
