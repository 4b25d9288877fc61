/* engine_index.c — the engine's searchable index: the exact scan for small collections, the HNSW
 * above a threshold; building it in the background, catching up with the store's change log,
 * snapshots, the filtered-search planner, health and status. Locking: engine_internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "index/planner.h"
#include "util/status.h"

void engine_id_key(int64_t id, char key[24]) { snprintf(key, 24, "%lld", (long long)id); }

/* Is a collection of this size served by the HNSW? (threshold 0: always) */
bool index_wants_hnsw(const engine *e, size_t count) { return !e->hnsw_threshold || count > e->hnsw_threshold; }

/* ---- the state ----------------------------------------------------------------------------- */

int index_state_empty(engine *e, bool hnsw, index_state *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (hnsw) st->hnsw = hnsw_new(&e->hnsw);
    else st->flat = flat_new(embed_dims(e->model));
    st->meta = json_object();
    st->names = json_object();
    labelmap_init(&st->labels);
    if ((!st->hnsw && !st->flat) || !st->meta || !st->names) {
        index_state_free(st);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory creating the index");
    }
    return IS_OK;
}

void index_state_free(index_state *st) {
    flat_free(st->flat);
    hnsw_free(st->hnsw);
    json_decref(st->meta);
    json_decref(st->names);
    labelmap_destroy(&st->labels);
    memset(st, 0, sizeof *st);
}

size_t index_state_count(const index_state *st) {
    return st->hnsw ? hnsw_count(st->hnsw) : st->flat ? flat_count(st->flat) : 0;
}

int index_put_meta(index_state *st, int64_t id, const char *name, const char *data, const char *labels) {
    image_labels l;
    /* classes are checked against the model where they are used (labels_score) */
    if (labels && labels_parse(labels, UINT16_MAX + 1, &l) && labelmap_put(&st->labels, id, &l)) return IS_ERR_NOMEM;
    json_t *doc = json_loads(data ? data : "{}", 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    char key[24];
    engine_id_key(id, key);
    if (name && json_object_set_new(st->names, key, json_string(name))) {
        json_decref(doc);
        return IS_ERR_NOMEM;
    }
    return doc && !json_object_set_new(st->meta, key, doc) ? IS_OK : IS_ERR_NOMEM;
}

int index_put_labels(index_state *st, int64_t id, const char *labels) {
    image_labels l;
    if (!labels_parse(labels, UINT16_MAX + 1, &l)) return IS_ERR_INVALID;
    return labelmap_put(&st->labels, id, &l) ? IS_ERR_NOMEM : IS_OK;
}

void index_drop_meta(index_state *st, int64_t id) {
    char key[24];
    engine_id_key(id, key);
    json_object_del(st->meta, key);
    json_object_del(st->names, key);
    labelmap_remove(&st->labels, id);
}

int index_record(const index_state *st, int64_t id, char **name, char **data) {
    char key[24];
    engine_id_key(id, key);
    const json_t *doc = json_object_get(st->meta, key);
    const char *n = json_string_value(json_object_get(st->names, key));
    if (!doc) return IS_ERR_NOT_FOUND;
    *name = strdup(n ? n : "");
    *data = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (*name && *data) return IS_OK;
    free(*name);
    free(*data);
    *name = *data = NULL;
    return IS_ERR_NOMEM;
}

/* The live index is shared with searches; a state under construction is private to its builder. */
int index_add_vector(engine *e, index_state *st, int64_t id, const float *vec) {
    if (st->hnsw) return hnsw_add(st->hnsw, id, vec); /* publishes under its own lock */
    bool shared = st == &e->idx;
    if (shared) pthread_rwlock_wrlock(&e->index_lock);
    int rc = flat_add(st->flat, id, vec);
    if (shared) pthread_rwlock_unlock(&e->index_lock);
    return rc;
}

void index_remove_vector(engine *e, index_state *st, int64_t id) {
    if (st->hnsw) {
        hnsw_remove(st->hnsw, id);
        return;
    }
    bool shared = st == &e->idx;
    if (shared) pthread_rwlock_wrlock(&e->index_lock);
    flat_remove(st->flat, id);
    if (shared) pthread_rwlock_unlock(&e->index_lock);
}

static bool index_has(const index_state *st, int64_t id) {
    return st->hnsw ? hnsw_contains(st->hnsw, id) : flat_get(st->flat, id) != NULL;
}

/* ---- catching up with the store ------------------------------------------------------------ */

typedef index_change change;

static int collect_change(int64_t seq, change_op op, int64_t id, void *ctx) {
    index_change_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        change *g = realloc(l->v, cap * sizeof *g);
        if (!g) return IS_ERR_NOMEM;
        l->v = g;
        l->cap = cap;
    }
    l->v[l->n++] = (change){seq, id, (char)op};
    return 0;
}

int index_read_changes(store *db, int64_t seq, index_change_list *out, char *err, size_t errlen) {
    *out = (index_change_list){0};
    int rc = store_changes_after(db, seq, collect_change, out, err, errlen);
    if (rc == IS_ERR_NOMEM) is_fail(err, errlen, rc, "out of memory reading the change log");
    if (rc) {
        free(out->v);
        *out = (index_change_list){0};
    }
    return rc;
}

static const store_image *find_row(const store_image *rows, int n, int64_t id) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (rows[mid].id == id) return &rows[mid];
        if (rows[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

#define REPLAY_BATCH 256

/* Applies one change (its row, if any, already read: NULL when deleted by a later change). */
static int apply_change(engine *e, index_state *st, const change *c, const store_image *row, char *err,
                        size_t errlen) {
    bool shared = st == &e->idx;
    int rc = IS_OK;
    if (c->op == CHANGE_ADD || c->op == CHANGE_DATA) {
        if (!row) return IS_OK; /* deleted by a later change, which removes it */
        if (shared) pthread_rwlock_wrlock(&e->index_lock);
        rc = index_put_meta(st, c->id, row->name, row->data, row->labels);
        if (shared) pthread_rwlock_unlock(&e->index_lock);
        if (!rc && c->op == CHANGE_ADD && !index_has(st, c->id)) rc = index_add_vector(e, st, c->id, row->vector);
    } else if (c->op == CHANGE_DELETE) {
        if (index_has(st, c->id)) index_remove_vector(e, st, c->id);
        if (shared) pthread_rwlock_wrlock(&e->index_lock);
        index_drop_meta(st, c->id);
        if (shared) pthread_rwlock_unlock(&e->index_lock);
    } else if (c->op == CHANGE_CLEAR) {
        /* as a delete-all on this node does: the index kind an empty collection wants, and the
         * live index's snapshot gone (an empty graph has none) */
        index_state empty;
        rc = index_state_empty(e, index_wants_hnsw(e, 0), &empty, err, errlen);
        if (!rc && shared) index_forget_snapshot(e);
        if (!rc) {
            if (shared) pthread_rwlock_wrlock(&e->index_lock);
            index_state old = *st;
            *st = empty;
            if (shared) pthread_rwlock_unlock(&e->index_lock);
            index_state_free(&old);
        }
    }
    return rc;
}

/* Applies the store's changes after st->applied_seq to st, in order. The caller holds write_lock
 * (no local change can arrive meanwhile) and, if st is the live state, takes index_lock around
 * each metadata change via the helpers. Rows are read REPLAY_BATCH changes at a time (one round
 * trip each on a shared store); a row read reflects the store now, which later changes in the log
 * bring about anyway. */
static int replay(engine *e, index_state *st, char *err, size_t errlen) {
    index_change_list l;
    int rc = index_read_changes(e->db, st->applied_seq, &l, err, errlen);
    int64_t ids[REPLAY_BATCH];
    store_image *rows = rc ? NULL : calloc(REPLAY_BATCH, sizeof *rows);
    if (!rc && !rows) rc = IS_ERR_NOMEM;
    for (size_t at = 0; !rc && at < l.n; at += REPLAY_BATCH) {
        size_t end = at + REPLAY_BATCH < l.n ? at + REPLAY_BATCH : l.n;
        int nids = 0, found = 0;
        bool vectors = false;
        for (size_t i = at; i < end; i++)
            if (l.v[i].op == CHANGE_ADD || l.v[i].op == CHANGE_DATA) {
                ids[nids++] = l.v[i].id;
                vectors |= l.v[i].op == CHANGE_ADD;
            }
        rc = store_get_many(e->db, ids, nids, vectors, rows, &found, err, errlen);
        for (size_t i = at; !rc && i < end; i++) {
            rc = apply_change(e, st, &l.v[i], find_row(rows, found, l.v[i].id), err, errlen);
            if (!rc) st->applied_seq = l.v[i].seq;
        }
        for (int i = 0; i < found; i++) store_image_clear(&rows[i]);
    }
    if (rc == IS_ERR_NOMEM) rc = is_fail(err, errlen, rc, "out of memory catching up with the store");
    free(rows);
    free(l.v);
    return rc;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int index_catch_up(engine *e, char *err, size_t errlen) {
    int rc = replay(e, &e->idx, err, errlen);
    int64_t last = 0;
    if (!rc) rc = store_last_seq(e->db, &last);
    if (!rc) {
        __atomic_store_n(&e->store_seq, last, __ATOMIC_RELAXED);
        __atomic_store_n(&e->synced_at_ms, wall_ms(), __ATOMIC_RELAXED);
    }
    __atomic_store_n(&e->follow_failing, rc != IS_OK, __ATOMIC_RELAXED);
    index_after_write(e);
    return rc;
}

/* ---- building ------------------------------------------------------------------------------ */

/* Rows are gathered BUILD_BATCH at a time for the HNSW graph, which inserts a batch on every
 * CPU (hnsw_add_batch); the exact index takes them one by one. */
#define BUILD_BATCH 512

typedef struct {
    engine *e;
    index_state *st;
    int threads;
    int dims;
    int64_t ids[BUILD_BATCH];
    float *vecs; /* BUILD_BATCH × dims */
    size_t n;
} build_ctx;

static int build_flush(build_ctx *b) {
    int rc = b->n ? hnsw_add_batch(b->st->hnsw, b->ids, b->vecs, b->n, b->threads) : IS_OK;
    __atomic_add_fetch(&b->e->build_done, (int64_t)b->n, __ATOMIC_RELAXED);
    b->n = 0;
    return rc;
}

static int build_row(const store_image *img, void *ctx) {
    build_ctx *b = ctx;
    if (__atomic_load_n(&b->e->stopping, __ATOMIC_RELAXED)) return IS_ERR_INTERNAL; /* shutting down */
    int rc = index_put_meta(b->st, img->id, img->name, img->data, img->labels);
    if (rc) return rc;
    if (!b->st->hnsw) {
        rc = index_add_vector(b->e, b->st, img->id, img->vector);
        __atomic_add_fetch(&b->e->build_done, 1, __ATOMIC_RELAXED);
        return rc;
    }
    b->ids[b->n] = img->id;
    memcpy(b->vecs + b->n * (size_t)b->dims, img->vector, sizeof(float) * (size_t)b->dims);
    return ++b->n == BUILD_BATCH ? build_flush(b) : IS_OK;
}

/* Fills st (private to the caller) from a consistent read of the store; st->applied_seq gets the
 * read's sequence. The HNSW graph is built on every CPU. */
static int fill_from_store(engine *e, index_state *st, char *err, size_t errlen) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    build_ctx *b = calloc(1, sizeof *b);
    if (b) {
        *b = (build_ctx){.e = e, .st = st, .threads = cpus > 0 ? (int)cpus : 1, .dims = embed_dims(e->model)};
        if (st->hnsw) b->vecs = malloc(sizeof(float) * BUILD_BATCH * (size_t)b->dims); /* the exact index needs none */
    }
    int rc = b && (b->vecs || !st->hnsw) ? IS_OK : is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (!rc) rc = store_each_snapshot(e->db, true, build_row, b, &st->applied_seq, err, errlen);
    if (!rc && st->hnsw && (rc = build_flush(b))) is_fail(err, errlen, rc, "cannot add to the index");
    if (b) free(b->vecs);
    free(b);
    return rc;
}

static void save_snapshot(engine *e) {
    char err[512];
    pthread_mutex_lock(&e->write_lock); /* the graph and its sequence stay one moment */
    if (e->idx.hnsw && e->saved_seq != e->idx.applied_seq) {
        int rc = hnsw_save(e->idx.hnsw, e->snapshot_path, e->idx.applied_seq, err, sizeof err);
        if (rc) {
            fprintf(stderr, "imgsearch: index snapshot not saved: %s\n", err);
        } else {
            e->saved_seq = e->idx.applied_seq;
            engine_metrics_snapshot_saved(e);
        }
    }
    pthread_mutex_unlock(&e->write_lock);
}

void index_forget_snapshot(engine *e) {
    if (unlink(e->snapshot_path) && errno != ENOENT)
        fprintf(stderr, "imgsearch: cannot remove %s: %s\n", e->snapshot_path, strerror(errno));
    e->saved_seq = -1;
    engine_metrics_snapshot_gone(e);
}

/* Builds a fresh index from a consistent read of the store, without holding any lock while it
 * works (writes and searches go on against the live index), then catches up with the changes
 * made meanwhile under write_lock and swaps it in. The HNSW is chosen above the threshold. */
static int rebuild(engine *e, char *err, size_t errlen) {
    pthread_mutex_lock(&e->rebuild_lock);
    int64_t count = 0;
    int rc = store_count(e->db, &count);
    index_state fresh;
    bool hnsw = index_wants_hnsw(e, (size_t)count);
    if (!rc) rc = index_state_empty(e, hnsw, &fresh, err, errlen);
    if (!rc) {
        __atomic_store_n(&e->build_total, count, __ATOMIC_RELAXED);
        __atomic_store_n(&e->build_done, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&e->building, 1, __ATOMIC_RELAXED);
        rc = fill_from_store(e, &fresh, err, errlen);
        if (!rc) {
            pthread_mutex_lock(&e->write_lock);
            rc = replay(e, &fresh, err, errlen);
            if (!rc) {
                pthread_rwlock_wrlock(&e->index_lock);
                index_state old = e->idx;
                e->idx = fresh;
                pthread_rwlock_unlock(&e->index_lock);
                fresh = old; /* freed below, outside the locks */
                if (!hnsw) index_forget_snapshot(e);
                else e->saved_seq = -1; /* saved below */
            }
            pthread_mutex_unlock(&e->write_lock);
        }
        index_state_free(&fresh);
        __atomic_store_n(&e->building, 0, __ATOMIC_RELAXED);
    }
    if (!rc && hnsw) save_snapshot(e);
    pthread_mutex_unlock(&e->rebuild_lock);
    return rc;
}

/* ---- maintenance thread -------------------------------------------------------------------- */

static void *maintenance(void *arg) {
    engine *e = arg;
    pthread_mutex_lock(&e->maint_mu);
    while (!e->stopping) {
        if (!e->want_build && !e->want_save) {
            pthread_cond_wait(&e->maint_cv, &e->maint_mu);
            continue;
        }
        bool build = e->want_build, save = e->want_save;
        e->want_build = e->want_save = false;
        pthread_mutex_unlock(&e->maint_mu);
        char err[512];
        if (build && rebuild(e, err, sizeof err) && !__atomic_load_n(&e->stopping, __ATOMIC_RELAXED))
            fprintf(stderr, "imgsearch: background index build failed: %s\n", err);
        if (save) save_snapshot(e);
        pthread_mutex_lock(&e->maint_mu);
    }
    pthread_mutex_unlock(&e->maint_mu);
    return NULL;
}

void index_maintenance_request(engine *e, bool build, bool save) {
    pthread_mutex_lock(&e->maint_mu);
    if (!e->stopping) {
        if (!e->maint_started && !pthread_create(&e->maint, NULL, maintenance, e)) e->maint_started = true;
        e->want_build |= build;
        e->want_save |= save;
        pthread_cond_signal(&e->maint_cv);
    }
    pthread_mutex_unlock(&e->maint_mu);
}

void index_maintenance_stop(engine *e) {
    pthread_mutex_lock(&e->maint_mu);
    __atomic_store_n(&e->stopping, true, __ATOMIC_RELAXED);
    pthread_cond_signal(&e->maint_cv);
    bool started = e->maint_started;
    pthread_mutex_unlock(&e->maint_mu);
    if (started) pthread_join(e->maint, NULL);
    if (e->idx.hnsw) save_snapshot(e);
}

void index_after_write(engine *e) {
    size_t count = index_state_count(&e->idx);
    if (e->idx.flat && index_wants_hnsw(e, count) && !__atomic_load_n(&e->building, __ATOMIC_RELAXED))
        index_maintenance_request(e, true, false);
    /* a snapshot about every eighth of the collection's worth of changes (at least 1000) keeps
     * the replay at start-up short without writing the graph all the time (an empty graph needs
     * none: delete-all removed the file) */
    int64_t every = (int64_t)(count / 8 > 1000 ? count / 8 : 1000);
    if (e->idx.hnsw && count && (e->saved_seq < 0 || e->idx.applied_seq - e->saved_seq >= every))
        index_maintenance_request(e, false, true);
}

/* ---- start-up ------------------------------------------------------------------------------ */

static int meta_row(const store_image *img, void *ctx) {
    return index_put_meta(ctx, img->id, img->name, img->data, img->labels);
}

/* The snapshot plus the store's later changes, if the snapshot fits this configuration. */
static int open_from_snapshot(engine *e, index_state *st) {
    char err[512];
    hnsw_index *h;
    int64_t seq, last = 0;
    int rc = hnsw_load(e->snapshot_path, &h, &seq, err, sizeof err);
    if (rc == IS_ERR_NOT_FOUND) return rc;
    if (rc) {
        fprintf(stderr, "imgsearch: %s; rebuilding\n", err);
        return rc;
    }
    const hnsw_params *p = hnsw_get_params(h);
    store_last_seq(e->db, &last);
    if (p->dims != e->hnsw.dims || p->m != e->hnsw.m || p->storage != e->hnsw.storage ||
        p->ef_construction != e->hnsw.ef_construction || seq > last) {
        fprintf(stderr, "imgsearch: the index snapshot %s was made with other settings or another database; rebuilding\n",
                e->snapshot_path);
        hnsw_free(h);
        return IS_ERR_INVALID;
    }
    hnsw_set_ef_search(h, e->hnsw.ef_search);
    *st = (index_state){.hnsw = h, .meta = json_object(), .names = json_object(), .applied_seq = seq};
    rc = st->meta && st->names ? store_each(e->db, false, meta_row, st, err, sizeof err) : IS_ERR_NOMEM;
    e->saved_seq = seq; /* before the replay: a delete-all in the log removes the file (saved_seq -1) */
    if (!rc) rc = replay(e, st, err, sizeof err);
    int64_t count = 0;
    if (!rc) rc = store_count(e->db, &count);
    /* a damaged database is no fault of the snapshot: said once, by the read from the store that follows */
    bool damaged_db = rc == IS_ERR_CORRUPT;
    /* st, not h: a delete-all in the log replaced (and freed) the loaded graph */
    if (!rc && (int64_t)index_state_count(st) != count) rc = is_fail(err, sizeof err, IS_ERR_CORRUPT, "counts disagree");
    if (rc) {
        if (!damaged_db) fprintf(stderr, "imgsearch: index snapshot %s unusable (%s); rebuilding\n", e->snapshot_path, err);
        index_state_free(st);
        e->saved_seq = -1;
        return rc;
    }
    engine_metrics_snapshot_loaded(e, e->snapshot_path); /* its file's time (none if the log's delete-all removed it) */
    fprintf(stderr, "imgsearch: index loaded from its snapshot at change %lld, %lld later change(s) replayed\n",
            (long long)seq, (long long)(st->applied_seq - seq));
    return IS_OK;
}

int index_open(engine *e, char *err, size_t errlen) {
    e->saved_seq = -1;
    if (open_from_snapshot(e, &e->idx) == IS_OK) return IS_OK;
    /* the exact index answers at once; the HNSW follows in the background when it is due */
    int64_t count = 0;
    int rc = store_count(e->db, &count);
    if (!rc) rc = index_state_empty(e, count == 0 && index_wants_hnsw(e, 0), &e->idx, err, errlen);
    if (!rc) rc = fill_from_store(e, &e->idx, err, errlen);
    if (!rc && e->idx.flat && index_wants_hnsw(e, flat_count(e->idx.flat))) index_maintenance_request(e, true, false);
    return rc;
}

/* ---- search -------------------------------------------------------------------------------- */

typedef struct {
    const filter *f;
    const label_query *lq;
    const index_state *st;
    int64_t exclude;
} accept_ctx;

static bool accept_hit(int64_t id, void *ctx) {
    accept_ctx *a = ctx;
    if (id == a->exclude) return false;
    if (a->lq) {
        const image_labels *l = labelmap_get(&a->st->labels, id);
        if (!l || labels_score(l, a->lq) < a->lq->min_score) return false;
    }
    if (!a->f) return true;
    char key[24];
    engine_id_key(id, key);
    return filter_match(a->f, json_object_get(a->st->meta, key));
}

/* The exact vectors of an int8 re-ranking, in one store read (hnsw_vector_fn). */
static int exact_vectors(const int64_t *ids, int n, float *out, bool *found, void *ctx) {
    store *db = ctx;
    store_image *rows = calloc((size_t)n, sizeof *rows);
    int got = 0;
    if (!rows || store_get_many(db, ids, n, true, rows, &got, NULL, 0)) {
        free(rows);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const store_image *r = find_row(rows, got, ids[i]);
        found[i] = r != NULL;
        if (r) memcpy(out + (size_t)i * (size_t)r->dims, r->vector, sizeof(float) * (size_t)r->dims);
    }
    for (int i = 0; i < got; i++) store_image_clear(&rows[i]);
    free(rows);
    return 0;
}

/* The planner (planner.h): estimate the matching fraction from a random sample of the index. */
static bool plan_exact(const index_state *st, const accept_ctx *a, int ef) {
    int64_t ids[PLANNER_SAMPLE];
    static __thread uint64_t seed = 0x853c49e6748fea9bULL;
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t n = hnsw_sample_ids(st->hnsw, seed, PLANNER_SAMPLE, ids);
    return planner_prefers_exact(planner_fraction(ids, n, accept_hit, (void *)a), hnsw_count(st->hnsw), ef);
}

int index_search(engine *e, const float *vec, int k, int ef, const filter *f, const label_query *lq, int64_t exclude,
                 index_hit *out, int *n, char *err, size_t errlen) {
    const index_state *st = &e->idx;
    accept_ctx a = {f, lq, st, exclude};
    bool filtered = f || lq || exclude != INT64_MIN;
    if (st->flat) return flat_search(st->flat, vec, k, filtered ? accept_hit : NULL, &a, out, n);
    int ef_used = ef > 0 ? ef : hnsw_get_params(st->hnsw)->ef_search;
    if ((f || lq) && plan_exact(st, &a, ef_used)) {
        size_t cap = json_object_size(st->meta), m = 0;
        int64_t *ids = malloc(sizeof *ids * (cap ? cap : 1));
        if (!ids) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        const char *key;
        json_t *doc;
        json_object_foreach((json_t *)st->meta, key, doc) {
            (void)doc;
            int64_t id = strtoll(key, NULL, 10);
            if (accept_hit(id, &a)) ids[m++] = id;
        }
        int rc = hnsw_search_ids(st->hnsw, vec, ids, m, k, exact_vectors, e->db, out, n);
        free(ids);
        return rc;
    }
    hnsw_query q = {.k = k, .ef = ef, .accept = filtered ? accept_hit : NULL, .accept_ctx = &a,
                    .exact = exact_vectors, .exact_ctx = e->db};
    return hnsw_search(st->hnsw, vec, &q, out, n);
}

/* ---- health, reindex, status --------------------------------------------------------------- */

#define HEALTH_SAMPLE 64

/* Compares up to HEALTH_SAMPLE of the index's images, evenly spread, with the store's vectors, bit
 * for bit (after int8 encoding), in one store read. *checked and *mismatched count them, *first_bad
 * names the first that differs (or is missing from the store). Caller holds write_lock. */
static int sample_vectors(engine *e, int64_t *checked, int64_t *mismatched, int64_t *first_bad) {
    const index_state *st = &e->idx;
    size_t n = json_object_size(st->meta), every = n > HEALTH_SAMPLE ? n / HEALTH_SAMPLE : 1, seen = 0;
    int64_t ids[HEALTH_SAMPLE];
    int nids = 0;
    const char *key;
    json_t *doc;
    json_object_foreach(st->meta, key, doc) {
        if (nids < HEALTH_SAMPLE && seen++ % every == 0) ids[nids++] = strtoll(key, NULL, 10);
    }
    store_image *rows = calloc(HEALTH_SAMPLE, sizeof *rows);
    int got = 0;
    int rc = rows ? store_get_many(e->db, ids, nids, true, rows, &got, NULL, 0) : IS_ERR_NOMEM;
    *checked = *mismatched = 0;
    for (int i = 0; !rc && i < nids; i++) {
        const store_image *r = find_row(rows, got, ids[i]);
        bool same;
        if (!r) same = false;
        else if (st->hnsw) same = hnsw_matches(st->hnsw, r->id, r->vector);
        else {
            const float *v = flat_get(st->flat, r->id);
            same = v && !memcmp(v, r->vector, sizeof(float) * (size_t)r->dims);
        }
        ++*checked;
        if (!same && !(*mismatched)++) *first_bad = ids[i];
    }
    for (int i = 0; i < got; i++) store_image_clear(&rows[i]);
    free(rows);
    return rc;
}


int engine_health(engine *e, bool *healthy, char *msg, size_t msglen) {
    int64_t count = 0, seq = 0;
    bool shared = store_shared(e->db);
    /* the write lock keeps the index still while it is compared */
    pthread_mutex_lock(&e->write_lock);
    int rc = IS_OK;
    /* A shared store moves under us: catch up, then read count and sequence; if the sequence is
     * still the one applied, no change committed in between and the count is comparable. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (shared) rc = index_catch_up(e, NULL, 0);
        if (!rc) rc = store_count(e->db, &count);
        if (!rc) rc = store_last_seq(e->db, &seq);
        if (rc || seq == e->idx.applied_seq) break;
    }
    size_t icount = index_state_count(&e->idx), nmeta = json_object_size(e->idx.meta);
    int64_t iseq = e->idx.applied_seq;
    const char *kind = e->idx.hnsw ? "HNSW" : "exact";
    int64_t checked = 0, mismatched = 0, first_bad = 0;
    if (!rc) rc = sample_vectors(e, &checked, &mismatched, &first_bad);
    pthread_mutex_unlock(&e->write_lock);
    if (rc) {
        *healthy = false;
        return is_fail(msg, msglen, rc,
                       rc == IS_ERR_UNAVAILABLE ? "the database cannot be reached; this server answers searches from "
                                                  "its index as of change %lld"
                                                : "cannot read the store (index at change %lld)",
                       (long long)iseq);
    }
    *healthy = (int64_t)icount == count && (int64_t)nmeta == count && iseq == seq && mismatched == 0;
    if (*healthy)
        snprintf(msg, msglen, "%s index holds all %lld images at change %lld; %lld sampled vectors match", kind,
                 (long long)count, (long long)seq, (long long)checked);
    else if ((int64_t)icount != count || (int64_t)nmeta != count)
        snprintf(msg, msglen, "%s index holds %zu images (%zu with metadata), the store %lld", kind, icount, nmeta,
                 (long long)count);
    else if (iseq != seq)
        snprintf(msg, msglen, "%s index is at change %lld, the store at %lld", kind, (long long)iseq, (long long)seq);
    else
        snprintf(msg, msglen, "%lld of %lld sampled vectors differ (first: image %lld)", (long long)mismatched,
                 (long long)checked, (long long)first_bad);
    return IS_OK;
}

int engine_reindex(engine *e, char *err, size_t errlen) { return rebuild(e, err, errlen); }

int engine_status(engine *e, engine_status_info *out) {
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&e->index_lock);
    out->count = (int64_t)index_state_count(&e->idx);
    out->seq = e->idx.applied_seq;
    out->kind = e->idx.hnsw ? "hnsw" : "exact";
    out->memory_bytes = e->idx.hnsw ? hnsw_memory_bytes(e->idx.hnsw) : 0;
    pthread_rwlock_unlock(&e->index_lock);
    out->building = __atomic_load_n(&e->building, __ATOMIC_RELAXED);
    out->build_done = __atomic_load_n(&e->build_done, __ATOMIC_RELAXED);
    out->build_total = __atomic_load_n(&e->build_total, __ATOMIC_RELAXED);
    out->threshold = e->hnsw_threshold;
    out->embedding = embed_model_name(e->model);
    out->upgrade_to = e->upgrade_to[0] ? e->upgrade_to : NULL;
    out->inference = embed_precision_describe(e->model);
    out->dims = embed_dims(e->model);
    out->m = e->hnsw.m;
    out->ef_construction = e->hnsw.ef_construction;
    out->ef_search = e->hnsw.ef_search;
    out->storage = e->hnsw.storage == HNSW_INT8 ? "int8" : "float32";
    out->store = store_kind(e->db);
    out->shared = store_shared(e->db);
    if (out->shared) {
        out->store_seq = __atomic_load_n(&e->store_seq, __ATOMIC_RELAXED);
        int64_t synced = __atomic_load_n(&e->synced_at_ms, __ATOMIC_RELAXED);
        out->synced_ms_ago = synced ? wall_ms() - synced : -1;
        out->stale = __atomic_load_n(&e->follow_failing, __ATOMIC_RELAXED) || !synced ||
                     out->synced_ms_ago > ENGINE_STALE_MS;
    } else {
        out->store_seq = out->seq;
    }
    return IS_OK;
}
