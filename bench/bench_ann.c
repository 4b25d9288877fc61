/* bench_ann — the C side of bench/ann.py: builds our HNSW over a dataset file, then measures
 * recall@k and queries per second over an ef sweep with 1 and 2 threads, the exact scan, snapshot
 * save/load, and filtered search at several selectivities (graph walk vs exact over the ids).
 *
 *   bench_ann --base F --queries F --truth F [--m 16] [--efc 200] [--storage float32|int8]
 *             [--efs 10,20,...] [--threads 1,2] [--build-threads N] [--snapshot PATH] [--filters] [--flat-queries N]
 *             [--save PATH | --load PATH]   (keep the built graph / search a kept one instead of building:
 *                                            for profiling the search alone)
 *   bench_ann --cpu      (the vector kernels in use: distance.h, IMGSEARCH_SIMD)
 *
 * Files: uint32 n, uint32 dims, then n×dims float32 (base, queries); uint32 nq, uint32 k, then
 * nq×k int32 row numbers of the true nearest (truth). Ids in the index are row + 1.
 * Prints one JSON object per line. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/distance.h"
#include "index/flat.h"
#include "index/hnsw.h"
#include "index/planner.h"
#include "util/status.h"

typedef struct {
    uint32_t n, d;
    float *v;
} matrix;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

static void *read_file(const char *path, uint32_t *a, uint32_t *b, size_t elem) {
    FILE *f = fopen(path, "rb");
    if (!f || fread(a, 4, 1, f) != 1 || fread(b, 4, 1, f) != 1) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    size_t count = (size_t)*a * *b;
    void *v = malloc(count * elem);
    if (!v || fread(v, elem, count, f) != count) {
        fprintf(stderr, "%s is truncated\n", path);
        exit(2);
    }
    fclose(f);
    return v;
}

static matrix base, queries;
static int32_t *truth;
static uint32_t truth_k;
static hnsw_index *idx;
static flat_index *flat;

static int exact_rows(const int64_t *ids, int n, float *out, bool *found, void *ctx) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        memcpy(out + (size_t)i * base.d, base.v + (size_t)(ids[i] - 1) * base.d, sizeof(float) * base.d);
        found[i] = true;
    }
    return 0;
}

static int64_t filter_mod;
static bool accept_mod(int64_t id, void *ctx) {
    (void)ctx;
    return id % filter_mod == 0;
}

/* One measurement: nq queries split over threads, repeated until at least `min_s` seconds. */
typedef enum { RUN_HNSW, RUN_FLAT, RUN_FILTERED, RUN_IDS } run_kind;
typedef struct {
    run_kind kind;
    int ef, k;
    uint32_t first, step, count; /* query subset: first, first+step, ... */
    int64_t *ids;                /* RUN_IDS: the matching ids */
    size_t nids;
    index_hit *results;          /* count × k, for recall */
    int *nres;
} job;

static void run_one(const job *j, uint32_t qi, index_hit *out, int *n) {
    const float *q = queries.v + (size_t)qi * queries.d;
    if (j->kind == RUN_FLAT) {
        flat_search(flat, q, j->k, NULL, NULL, out, n);
    } else if (j->kind == RUN_IDS) {
        /* the planner's exact path pays for finding the matching ids too */
        size_t m = 0;
        for (uint32_t r = 0; r < base.n; r++)
            if (accept_mod((int64_t)r + 1, NULL)) j->ids[m++] = (int64_t)r + 1;
        hnsw_search_ids(idx, q, j->ids, m, j->k, exact_rows, NULL, out, n);
    } else {
        hnsw_query hq = {.k = j->k, .ef = j->ef, .exact = exact_rows,
                         .accept = j->kind == RUN_FILTERED ? accept_mod : NULL};
        hnsw_search(idx, q, &hq, out, n);
    }
}

typedef struct {
    const job *j;
    uint32_t from, to; /* positions in the subset */
    double t0, min_s;
    long done;         /* queries answered */
} slice;

/* One thread's share, answered over and over until min_s has passed since t0: the threads live
 * for the whole measurement, as the peers' thread pools do. Starting two threads per pass of the
 * queries (a pass is ~2 ms at 200k QPS) cost a fifth of the figure: openclipart int8 at ef 11 on
 * 2 threads read 181k QPS that way and 233k this way. */
static void *worker(void *arg) {
    slice *s = arg;
    do {
        for (uint32_t p = s->from; p < s->to; p++)
            run_one(s->j, s->j->first + p * s->j->step, s->j->results + (size_t)p * s->j->k, &s->j->nres[p]);
        s->done += s->to - s->from;
    } while (now() - s->t0 < s->min_s);
    return NULL;
}

static double measure(job *j, int threads, double min_s) {
    pthread_t th[8];
    slice sl[8];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        sl[i] = (slice){j, j->count * (uint32_t)i / (uint32_t)threads, j->count * (uint32_t)(i + 1) / (uint32_t)threads,
                        t0, min_s, 0};
        if (j->kind == RUN_IDS && i > 0) { /* each thread its own id buffer */
            job *copy = malloc(sizeof *copy);
            *copy = *j;
            copy->ids = malloc(sizeof(int64_t) * base.n);
            sl[i].j = copy;
        }
        pthread_create(&th[i], NULL, worker, &sl[i]);
    }
    long done = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        done += sl[i].done;
        if (sl[i].j != j) {
            free(sl[i].j->ids);
            free((job *)sl[i].j);
        }
    }
    return (double)done / (now() - t0);
}

/* recall@k by distance, as ann-benchmarks counts it: a result is right when it is at least as
 * near as the k-th true neighbour (so exact duplicates in the data, which openclipart has, do not
 * count as misses); queries with fewer than k true neighbours (selective filters) are scored
 * against how many there are. */
static double recall_vs_truth(const job *j) {
    double hits = 0, total = 0;
    for (uint32_t p = 0; p < j->count; p++) {
        uint32_t qi = j->first + p * j->step;
        const float *q = queries.v + (size_t)qi * queries.d;
        int valid = 0;
        double kth = 2;
        for (int b = 0; b < j->k; b++) {
            int32_t row = truth[(size_t)qi * truth_k + b];
            if (row < 0) break;
            valid++;
            const float *v = base.v + (size_t)row * base.d;
            double dot = 0;
            for (uint32_t x = 0; x < base.d; x++) dot += (double)q[x] * v[x];
            kth = 1 - dot;
        }
        for (int a = 0; a < j->nres[p] && a < valid; a++)
            if (j->results[(size_t)p * j->k + a].dist <= kth + 1e-5) hits++;
        total += valid;
    }
    return total ? hits / total : 1.0;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) out[n++] = (int)strtol(s, &end, 10);
    return n;
}

int main(int argc, char **argv) {
    const char *base_f = NULL, *q_f = NULL, *t_f = NULL, *snap = NULL, *storage = "float32", *save_f = NULL,
               *load_f = NULL;
    int m = 16, efc = 200, efs[32], nefs = 0, threads[4] = {1, 2}, nthreads = 2, filters = 0, build_threads = 1;
    uint32_t flat_queries = 200;
    if (argc == 2 && !strcmp(argv[1], "--cpu")) { /* which vector kernels this run uses */
        printf("{\"what\":\"cpu\",\"dot_level\":\"%s\",\"cpu_level\":\"%s\"}\n", dot_level_name(dot_level_used()),
               dot_level_name(dot_cpu_level()));
        return 0;
    }
    for (int i = 1; i + 1 < argc || (i < argc && !strcmp(argv[i], "--filters")); i += 2) {
        if (!strcmp(argv[i], "--filters")) {
            filters = 1;
            i--;
            continue;
        }
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--base")) base_f = v;
        else if (!strcmp(a, "--queries")) q_f = v;
        else if (!strcmp(a, "--truth")) t_f = v;
        else if (!strcmp(a, "--m")) m = atoi(v);
        else if (!strcmp(a, "--efc")) efc = atoi(v);
        else if (!strcmp(a, "--storage")) storage = v;
        else if (!strcmp(a, "--efs")) nefs = parse_list(v, efs, 32);
        else if (!strcmp(a, "--threads")) nthreads = parse_list(v, threads, 4);
        else if (!strcmp(a, "--build-threads")) build_threads = atoi(v);
        else if (!strcmp(a, "--snapshot")) snap = v;
        else if (!strcmp(a, "--flat-queries")) flat_queries = (uint32_t)atoi(v);
        else if (!strcmp(a, "--save")) save_f = v;
        else if (!strcmp(a, "--load")) load_f = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!base_f || !q_f || !t_f) {
        fprintf(stderr, "usage: bench_ann --base F --queries F --truth F [options]\n");
        return 2;
    }
    if (!nefs) nefs = parse_list("10,16,24,32,48,64,96,128,192,256,384,512", efs, 32);
    base.v = read_file(base_f, &base.n, &base.d, 4);
    queries.v = read_file(q_f, &queries.n, &queries.d, 4);
    uint32_t tq;
    truth = read_file(t_f, &tq, &truth_k, 4);
    int k = 10;

    hnsw_params p;
    hnsw_params_default(&p, (int)base.d);
    p.m = m;
    p.ef_construction = efc;
    p.storage = strcmp(storage, "int8") ? HNSW_FLOAT32 : HNSW_INT8;
    idx = hnsw_new(&p);
    long rss0 = rss_kib();
    double t0 = now();
    if (load_f) {
        int64_t seq;
        hnsw_free(idx);
        if (hnsw_load(load_f, &idx, &seq, NULL, 0)) {
            fprintf(stderr, "cannot load %s\n", load_f);
            return 1;
        }
        storage = hnsw_get_params(idx)->storage == HNSW_INT8 ? "int8" : "float32";
    } else if (build_threads <= 1) {
        for (uint32_t i = 0; i < base.n; i++) {
            if (hnsw_add(idx, (int64_t)i + 1, base.v + (size_t)i * base.d)) {
                fprintf(stderr, "add failed\n");
                return 1;
            }
        }
    } else { /* the server's build path: batches of 512 rows, as engine_index.c gathers them */
        int64_t ids[512];
        for (uint32_t i = 0; i < base.n; i += 512) {
            uint32_t n = base.n - i < 512 ? base.n - i : 512;
            for (uint32_t j = 0; j < n; j++) ids[j] = (int64_t)(i + j) + 1;
            if (hnsw_add_batch(idx, ids, base.v + (size_t)i * base.d, n, build_threads)) {
                fprintf(stderr, "add failed\n");
                return 1;
            }
        }
    }
    double build_s = now() - t0;
    /* where the RSS went: the heap's free but resident bytes, and large blocks mapped directly */
    struct mallinfo2 mi = mallinfo2();
    printf("{\"what\":\"build\",\"build_threads\":%d,\"storage\":\"%s\",\"n\":%u,\"dims\":%u,\"m\":%d,\"efc\":%d,\"seconds\":%.3f,"
           "\"memory_bytes\":%zu,\"rss_delta_bytes\":%ld,\"heap_free_bytes\":%zu,\"mmapped_bytes\":%zu}\n",
           build_threads, storage, base.n, base.d, m, efc, build_s, hnsw_memory_bytes(idx), (rss_kib() - rss0) * 1024, mi.fordblks,
           mi.hblkhd);
    fflush(stdout);
    if (save_f && hnsw_save(idx, save_f, 1, NULL, 0)) return 1;

    job j = {.k = k, .first = 0, .step = 1, .count = queries.n};
    j.results = malloc(sizeof(index_hit) * (size_t)queries.n * k);
    j.nres = calloc(queries.n, sizeof(int));
    for (int e = 0; e < nefs; e++) {
        j.kind = RUN_HNSW;
        j.ef = efs[e] < k ? k : efs[e];
        for (int t = 0; t < nthreads; t++) {
            double qps = measure(&j, threads[t], 1.0);
            printf("{\"what\":\"search\",\"storage\":\"%s\",\"ef\":%d,\"threads\":%d,\"recall\":%.4f,\"qps\":%.1f}\n",
                   storage, j.ef, threads[t], recall_vs_truth(&j), qps);
            fflush(stdout);
        }
    }

    if (snap) {
        t0 = now();
        if (hnsw_save(idx, snap, 1, NULL, 0)) return 1;
        double save_s = now() - t0;
        hnsw_index *back;
        int64_t seq;
        t0 = now();
        if (hnsw_load(snap, &back, &seq, NULL, 0)) return 1;
        double load_s = now() - t0;
        printf("{\"what\":\"snapshot\",\"storage\":\"%s\",\"n\":%u,\"save_seconds\":%.3f,\"load_seconds\":%.3f}\n",
               storage, base.n, save_s, load_s);
        hnsw_free(back);
        remove(snap);
        fflush(stdout);
    }

    if (filters) {
        /* graph walk with the filter vs exact ranking of the matching ids, same queries; the
         * truth for each selectivity comes from the exact scan */
        int64_t mods[] = {2, 10, 50, 100, 200, 1000};
        uint32_t fq = queries.n < 100 ? queries.n : 100;
        flat = flat_new((int)base.d);
        for (uint32_t i = 0; i < base.n; i++) flat_add(flat, (int64_t)i + 1, base.v + (size_t)i * base.d);
        for (size_t mi = 0; mi < sizeof mods / sizeof *mods; mi++) {
            filter_mod = mods[mi];
            int32_t *ft = malloc(sizeof(int32_t) * fq * (size_t)k);
            for (uint32_t q = 0; q < fq; q++) {
                index_hit h[10];
                int n;
                flat_search(flat, queries.v + (size_t)q * base.d, k, accept_mod, NULL, h, &n);
                for (int a = 0; a < k; a++) ft[q * k + a] = a < n ? (int32_t)(h[a].id - 1) : -1;
            }
            int32_t *saved = truth;
            uint32_t saved_k = truth_k;
            truth = ft;
            truth_k = (uint32_t)k;
            job f = {.kind = RUN_FILTERED, .ef = 64, .k = k, .first = 0, .step = 1, .count = fq,
                     .results = j.results, .nres = j.nres};
            double q_graph = measure(&f, 1, 0.5), r_graph = recall_vs_truth(&f);
            f.kind = RUN_IDS;
            f.ids = malloc(sizeof(int64_t) * base.n);
            double q_ids = measure(&f, 1, 0.5), r_ids = recall_vs_truth(&f);
            free(f.ids);
            /* what the service's planner would choose, from the same sample size it uses */
            int64_t sample[PLANNER_SAMPLE];
            size_t ns = hnsw_sample_ids(idx, 0x9e3779b97f4a7c15ULL + mi, PLANNER_SAMPLE, sample);
            double p_est = planner_fraction(sample, ns, accept_mod, NULL);
            bool exact = planner_prefers_exact(p_est, hnsw_count(idx), f.ef);
            printf("{\"what\":\"filtered\",\"storage\":\"%s\",\"fraction\":%.4f,\"graph_qps\":%.1f,\"graph_recall\":%.4f,"
                   "\"exact_ids_qps\":%.1f,\"exact_ids_recall\":%.4f,\"ef\":%d,\"estimated_fraction\":%.4f,"
                   "\"planner\":\"%s\"}\n",
                   storage, 1.0 / (double)mods[mi], q_graph, r_graph, q_ids, r_ids, f.ef, p_est,
                   exact ? "exact" : "graph");
            fflush(stdout);
            truth = saved;
            truth_k = saved_k;
            free(ft);
        }
    } else if (flat_queries) {
        flat = flat_new((int)base.d);
        for (uint32_t i = 0; i < base.n; i++) flat_add(flat, (int64_t)i + 1, base.v + (size_t)i * base.d);
    }
    if (flat && flat_queries) {
        job f = {.kind = RUN_FLAT, .k = k, .first = 0, .step = 1,
                 .count = flat_queries < queries.n ? flat_queries : queries.n, .results = j.results, .nres = j.nres};
        for (int t = 0; t < nthreads; t++) {
            double qps = measure(&f, threads[t], 1.0);
            printf("{\"what\":\"brute_force\",\"threads\":%d,\"recall\":%.4f,\"qps\":%.1f}\n", threads[t],
                   recall_vs_truth(&f), qps);
        }
    }
    flat_free(flat);
    hnsw_free(idx);
    free(j.results);
    free(j.nres);
    free(base.v);
    free(queries.v);
    free(truth);
    return 0;
}
