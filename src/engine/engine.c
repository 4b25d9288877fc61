#include "engine/engine.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine_data.h"
#include "engine/engine_internal.h"
#include "util/status.h"
#include "util/text.h"

#define ENGINE_MAX_K 1000

/* The model's concept table (concepts.h) beside its config: without one, label searches are
 * refused with the reason and everything else works. */
static void load_concepts(engine *e, const char *model_config) {
    char path[PATH_MAX], why[512];
    size_t n = strlen(model_config);
    if (n > 5 && !strcmp(model_config + n - 5, ".json")) n -= 5;
    snprintf(path, sizeof path, "%.*s.concepts.json", (int)n, model_config);
    if (concepts_load(path, embed_num_classes(e->model), &e->concepts, why, sizeof why))
        fprintf(stderr, "imgsearch: searching by label is off: %s\n", why);
}

/* A data directory made before the model had its head holds plain pooled vectors: they are served
 * as they are (queries embedded the same way) until `imgsearch reembed` recomputes them; any other
 * mismatch is refused with the reason. */
static int choose_embedding(engine *e, const char *data_dir, char *err, size_t errlen) {
    char recorded[160];
    int dims = 0;
    if (store_embedding(e->db, recorded, sizeof recorded, &dims) == IS_OK &&
        strcmp(recorded, embed_model_name(e->model)) && !strcmp(recorded, embed_plain_name(e->model))) {
        snprintf(e->upgrade_to, sizeof e->upgrade_to, "%s", embed_model_name(e->model));
        embed_engine_drop_head(e->model);
        fprintf(stderr,
                "imgsearch: %s holds vectors of %s, served as they are; `imgsearch reembed %s` recomputes them "
                "with %s (it may run while this server serves)\n",
                data_dir, recorded, data_dir, e->upgrade_to);
    }
    return store_bind_embedding(e->db, embed_model_name(e->model), embed_dims(e->model), err, errlen);
}

/* A node of a shared store keeps its index snapshot in its own data directory: one made from
 * another database (the directory reused, the URL changed) must not be loaded, however its
 * sequence compares. <data_dir>/store.id names the store the snapshot came from. */
static int bind_cache_to_store(engine *e, const char *data_dir, char *err, size_t errlen) {
    char id[128] = "", kept[128] = "", path[PATH_MAX];
    int rc = store_identity(e->db, id, sizeof id);
    if (rc || !*id) return rc ? is_fail(err, errlen, rc, "cannot read the store's identity") : IS_OK;
    snprintf(path, sizeof path, "%s/store.id", data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(kept, sizeof kept, f)) kept[0] = 0;
        fclose(f);
        kept[strcspn(kept, "\n")] = 0;
    }
    if (!strcmp(kept, id)) return IS_OK;
    if (unlink(e->snapshot_path) && errno != ENOENT)
        return is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", e->snapshot_path, strerror(errno));
    f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", id) < 0 || fclose(f)) {
        if (f) fclose(f);
        return is_fail(err, errlen, IS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return IS_OK;
}

int engine_open(const engine_config *cfg, engine **out, char *err, size_t errlen) {
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    e->lock_fd = -1;
    e->infer_threads = cfg->infer_threads > 0 ? cfg->infer_threads : 1;
    e->max_pixels = cfg->max_pixels;
    e->data_limits.max_bytes = cfg->data_limits.max_bytes ? cfg->data_limits.max_bytes : ENGINE_DATA_MAX_BYTES;
    e->data_limits.max_keys = cfg->data_limits.max_keys ? cfg->data_limits.max_keys : ENGINE_DATA_MAX_KEYS;
    e->data_limits.max_depth = cfg->data_limits.max_depth ? cfg->data_limits.max_depth : ENGINE_DATA_MAX_DEPTH;
    e->hnsw_threshold = cfg->hnsw_threshold < 0 ? 0 : cfg->hnsw_threshold ? (size_t)cfg->hnsw_threshold : 10000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    e->max_sessions = cfg->sessions > 0 ? cfg->sessions : cpus > 0 ? (int)cpus : 1;
    e->max_waiting = cfg->max_queue > 0 ? cfg->max_queue : ENGINE_DEFAULT_QUEUE;
    e->idle_sessions = calloc((size_t)e->max_sessions, sizeof *e->idle_sessions);
    if (!e->idle_sessions) {
        free(e);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&e->session_lock, NULL);
    pthread_cond_init(&e->session_free, NULL);
    pthread_mutex_init(&e->write_lock, NULL);
    pthread_rwlock_init(&e->index_lock, NULL);
    pthread_mutex_init(&e->rebuild_lock, NULL);
    pthread_mutex_init(&e->maint_mu, NULL);
    pthread_mutex_init(&e->dup_lock, NULL);
    pthread_mutex_init(&e->keys_lock, NULL);
    pthread_cond_init(&e->maint_cv, NULL);
    engine_metrics_init(e, cfg->data_dir);
    int rc = embed_engine_new(cfg->model_config, &e->model, err, errlen);
    if (!rc) rc = embed_apply_precision(e->model, cfg->precision, err, errlen);
    if (!rc) load_concepts(e, cfg->model_config);
    if (!rc && mkdir(cfg->data_dir, 0755) && errno != EEXIST)
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", cfg->data_dir, strerror(errno));
    if (!rc) rc = engine_lock_dir(cfg->data_dir, &e->lock_fd, err, errlen);
    if (!rc) rc = store_open(cfg->data_dir, cfg->store_url, NULL, 0, &e->db, err, errlen);
    if (!rc) rc = choose_embedding(e, cfg->store_url && *cfg->store_url ? "the database" : cfg->data_dir, err, errlen);
    if (!rc) {
        hnsw_params_default(&e->hnsw, embed_dims(e->model));
        if (cfg->hnsw_m) e->hnsw.m = cfg->hnsw_m;
        if (cfg->hnsw_ef_construction) e->hnsw.ef_construction = cfg->hnsw_ef_construction;
        if (cfg->hnsw_ef_search) e->hnsw.ef_search = cfg->hnsw_ef_search;
        e->hnsw.storage = cfg->hnsw_int8 ? HNSW_INT8 : HNSW_FLOAT32;
        hnsw_index *probe = hnsw_new(&e->hnsw);
        if (!probe)
            rc = is_fail(err, errlen, IS_ERR_INVALID, "HNSW settings out of range (m 2..64, ef 1..4096)");
        hnsw_free(probe);
        snprintf(e->snapshot_path, sizeof e->snapshot_path, "%s/index.hnsw", cfg->data_dir);
    }
    if (!rc) rc = bind_cache_to_store(e, cfg->data_dir, err, errlen);
    if (!rc) rc = index_open(e, err, errlen);
    if (!rc && store_shared(e->db)) {
        pthread_mutex_lock(&e->write_lock);
        index_catch_up(e, NULL, 0); /* changes committed while the index was read */
        pthread_mutex_unlock(&e->write_lock);
        engine_follow_start(e);
    }
    if (!rc) {
        /* a crash between writing a blob and committing its row leaves the blob unnamed */
        int removed = 0;
        store_sweep(e->db, &removed, NULL, 0);
        if (removed) fprintf(stderr, "imgsearch: removed %d unreferenced blob(s)\n", removed);
    }
    if (rc) {
        engine_close(e);
        return rc;
    }
    *out = e;
    return IS_OK;
}

engine_data_limits engine_data_limits_of(const engine *e) { return e->data_limits; }

void engine_close(engine *e) {
    if (!e) return;
    engine_follow_stop(e);
    index_maintenance_stop(e);
    for (int i = 0; i < e->nidle; i++) embed_session_free(e->idle_sessions[i]);
    free(e->idle_sessions);
    pthread_mutex_destroy(&e->session_lock);
    pthread_cond_destroy(&e->session_free);
    index_state_free(&e->idx);
    store_close(e->db);
    embed_engine_free(e->model);
    concepts_free(e->concepts);
    engine_metrics_free(e);
    pthread_mutex_destroy(&e->write_lock);
    pthread_rwlock_destroy(&e->index_lock);
    pthread_mutex_destroy(&e->rebuild_lock);
    pthread_mutex_destroy(&e->maint_mu);
    pthread_cond_destroy(&e->maint_cv);
    engine_dup_groups_free(e->dup_cache.groups, e->dup_cache.n);
    pthread_mutex_destroy(&e->dup_lock);
    free(e->keys);
    pthread_mutex_destroy(&e->keys_lock);
    if (e->lock_fd >= 0) close(e->lock_fd);
    free(e);
}

int engine_lock_file(const char *dir, const char *name, int *fd, char *err, size_t errlen) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return is_fail(err, errlen, IS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB)) {
        int busy = errno == EWOULDBLOCK;
        close(*fd);
        *fd = -1;
        return is_fail(err, errlen, IS_ERR_IO,
                       !busy ? "cannot lock %s"
                       : strcmp(name, "lock") ? "%s is being re-embedded by another imgsearch reembed"
                                              : "%s is in use by another imgsearch process (a server or a reembed)",
                       dir);
    }
    return IS_OK;
}

int engine_lock_dir(const char *dir, int *fd, char *err, size_t errlen) {
    return engine_lock_file(dir, "lock", fd, err, errlen);
}

int engine_dims(const engine *e) { return embed_dims(e->model); }

static const char *mime_of(const char *format) {
    static const struct {
        const char *format, *mime;
    } map[] = {{"jpeg", "image/jpeg"}, {"png", "image/png"},   {"webp", "image/webp"},
               {"gif", "image/gif"},   {"tiff", "image/tiff"}, {"heif", "image/heif"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(map[i].format, format)) return map[i].mime;
    return "application/octet-stream";
}

/* Checks that text is a JSON object within the metadata limits and returns it compacted (caller
 * frees): engine_data.h. */
static int normalise_data(const engine *e, const char *text, char **out, char *err, size_t errlen) {
    return engine_data_normalise(&e->data_limits, text, out, err, errlen);
}

/* After a write to a shared store committed (write_lock held): the index applies the log up to and
 * including it, other nodes' earlier changes first, so the writer reads its own write. The write
 * is committed whatever happens here: if the store cannot be read just now, the follower thread
 * applies it as soon as it can. */
static void follow_own_write(engine *e, int64_t seq) {
    char why[512];
    if (index_catch_up(e, why, sizeof why))
        fprintf(stderr, "imgsearch: change %lld is committed but not yet in this node's index: %s\n", (long long)seq,
                why);
}

/* Writing an upload to the blob store (hash, write, three or four fsyncs) is mostly waiting on
 * the disk; it runs on its own thread while the image is decoded and embedded, so it leaves the
 * add's critical path. */
typedef struct {
    store *db;
    const void *bytes;
    size_t len;
    char hex[BLOB_HEX_LEN + 1];
    int rc;
    char err[256];
} blob_job;

static void *blob_write(void *arg) {
    blob_job *j = arg;
    j->rc = store_bytes_prepare(j->db, j->bytes, j->len, j->hex, j->err, sizeof j->err);
    return NULL;
}

static int add_image(engine *e, const void *bytes, size_t len, const char *name, const char *data_json,
                     int64_t *id, char *err, size_t errlen) {
    char *data = NULL;
    int rc = normalise_data(e, data_json && *data_json ? data_json : "{}", &data, err, errlen);
    if (rc) return rc;
    blob_job job = {.db = e->db, .bytes = bytes, .len = len};
    pthread_t writer;
    bool threaded = pthread_create(&writer, NULL, blob_write, &job) == 0;
    float *vec = malloc(sizeof(float) * (size_t)embed_dims(e->model));
    float *logits = malloc(sizeof(float) * (size_t)embed_num_classes(e->model));
    decode_info info;
    if (!vec || !logits) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    else rc = engine_embed_image(e, bytes, len, vec, logits, &info, err, errlen); /* no lock held */
    /* the classifier ran with the embedding: its most probable classes are the image's labels */
    char labels[LABELS_TEXT_MAX];
    if (!rc) {
        image_labels l;
        labels_from_logits(logits, embed_num_classes(e->model), &l);
        labels_format(&l, labels, sizeof labels);
    }
    free(logits);
    if (threaded) pthread_join(writer, NULL);
    else if (!rc) blob_write(&job);
    if (!rc && job.rc) rc = is_fail(err, errlen, job.rc, "%s", job.err);
    /* not an image after all: its blob goes unless a row already names the same bytes */
    else if (rc && threaded && !job.rc) store_bytes_discard(e->db, job.hex);
    if (rc) {
        free(vec);
        free(data);
        return rc;
    }
    /* whatever bytes the client sent as a file name, the stored name is clean UTF-8 (text.h) */
    char *clean_name = text_file_name_dup(name, "image");
    if (!clean_name) {
        free(vec);
        free(data);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    store_image row = {.name = clean_name, .content_type = (char *)mime_of(info.format),
                       .data = data, .width = info.width, .height = info.height, .size = (int64_t)len,
                       .vector = vec, .dims = embed_dims(e->model), .labels = labels};
    memcpy(row.sha256, job.hex, sizeof row.sha256);
    int64_t seq;
    pthread_mutex_lock(&e->write_lock);
    rc = store_add(e->db, &row, bytes, len, &seq, err, errlen);
    if (!rc && store_shared(e->db)) {
        follow_own_write(e, seq);
    } else if (!rc) {
        /* metadata first: a search that meets the new vector can already filter on it */
        pthread_rwlock_wrlock(&e->index_lock);
        rc = index_put_meta(&e->idx, row.id, row.name, data, labels);
        pthread_rwlock_unlock(&e->index_lock);
        if (!rc) rc = index_add_vector(e, &e->idx, row.id, vec);
        pthread_rwlock_wrlock(&e->index_lock);
        e->idx.applied_seq = seq;
        pthread_rwlock_unlock(&e->index_lock);
        if (rc) rc = is_fail(err, errlen, rc, "stored image %lld but could not index it; reindex", (long long)row.id);
        index_after_write(e);
    }
    pthread_mutex_unlock(&e->write_lock);
    if (!rc) *id = row.id;
    free(clean_name);
    free(vec);
    free(data);
    return rc;
}

int engine_add(engine *e, const void *bytes, size_t len, const char *name, const char *data_json,
               int64_t *id, char *err, size_t errlen) {
    int rc = add_image(e, bytes, len, name, data_json, id, err, errlen);
    engine_metrics_add_done(e, rc); /* added, or refused and why */
    return rc;
}

int engine_get(engine *e, int64_t id, bool with_vector, store_image *row, char *err, size_t errlen) {
    return store_get(e->db, id, with_vector, row, err, errlen);
}

int engine_image(engine *e, int64_t id, unsigned char **bytes, size_t *len, store_image *row,
                 char *err, size_t errlen) {
    int rc = store_get(e->db, id, false, row, err, errlen);
    if (rc) return rc;
    rc = store_bytes_read(e->db, row->sha256, bytes, len, err, errlen);
    if (rc == IS_ERR_NOT_FOUND) /* a deleted image whose row we read just before: gone */
        rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    else if (rc && rc != IS_ERR_NOMEM && rc != IS_ERR_CORRUPT) /* a store that failed to read, whatever the */
        rc = IS_ERR_IO;                                          /* file layer called it; damage says so */
    if (rc) store_image_clear(row);
    return rc;
}

int engine_thumbnail(engine *e, int64_t id, int size, const char *format, unsigned char **bytes, size_t *len,
                     char *err, size_t errlen) {
    unsigned char *orig;
    size_t olen;
    store_image row;
    int rc = engine_image(e, id, &orig, &olen, &row, err, errlen);
    if (rc) return rc;
    store_image_clear(&row);
    rc = decode_thumbnail(orig, olen, size, format, e->max_pixels, bytes, len, err, errlen);
    free(orig);
    return rc;
}

int engine_delete(engine *e, int64_t id, char *err, size_t errlen) {
    int64_t seq;
    pthread_mutex_lock(&e->write_lock);
    int rc = store_delete(e->db, id, &seq, err, errlen);
    if (!rc && store_shared(e->db)) {
        follow_own_write(e, seq);
    } else if (!rc) {
        index_remove_vector(e, &e->idx, id); /* the vector first: no search returns it from here on */
        pthread_rwlock_wrlock(&e->index_lock);
        index_drop_meta(&e->idx, id);
        e->idx.applied_seq = seq;
        pthread_rwlock_unlock(&e->index_lock);
        index_after_write(e);
    }
    pthread_mutex_unlock(&e->write_lock);
    if (!rc) metrics_counter_add(&e->deleted, 1);
    return rc;
}

int engine_delete_all(engine *e, int64_t *count, char *err, size_t errlen) {
    int64_t seq;
    pthread_mutex_lock(&e->write_lock);
    int rc = store_delete_all(e->db, count, &seq, err, errlen);
    if (!rc && store_shared(e->db)) {
        follow_own_write(e, seq); /* the clear change resets the index and its snapshot (replay) */
    } else if (!rc) {
        index_state fresh;
        if (index_state_empty(e, index_wants_hnsw(e, 0), &fresh, NULL, 0)) {
            rc = is_fail(err, errlen, IS_ERR_NOMEM, "deleted every image but could not reset the index; reindex");
        } else {
            fresh.applied_seq = seq;
            index_forget_snapshot(e);
            pthread_rwlock_wrlock(&e->index_lock);
            index_state old = e->idx;
            e->idx = fresh;
            pthread_rwlock_unlock(&e->index_lock);
            index_state_free(&old);
        }
    }
    pthread_mutex_unlock(&e->write_lock);
    if (!rc) metrics_counter_add(&e->deleted, (uint64_t)*count);
    return rc;
}

int engine_set_data(engine *e, int64_t id, const char *data_json, char *err, size_t errlen) {
    char *data = NULL;
    int rc = normalise_data(e, data_json, &data, err, errlen);
    if (rc) return rc;
    int64_t seq;
    pthread_mutex_lock(&e->write_lock);
    rc = store_set_data(e->db, id, data, &seq, err, errlen);
    if (!rc && store_shared(e->db)) {
        follow_own_write(e, seq);
    } else if (!rc) {
        pthread_rwlock_wrlock(&e->index_lock);
        rc = index_put_meta(&e->idx, id, NULL, data, NULL);
        e->idx.applied_seq = seq;
        pthread_rwlock_unlock(&e->index_lock);
        if (rc) rc = is_fail(err, errlen, IS_ERR_NOMEM, "saved, but the index kept the old metadata; reindex");
        index_after_write(e);
    }
    pthread_mutex_unlock(&e->write_lock);
    free(data);
    return rc;
}

/* ---- search ------------------------------------------------------------------------------- */

static int compile_filter(const char *filter_json, filter **f, char *err, size_t errlen) {
    *f = NULL;
    if (!filter_json || !*filter_json) return IS_OK;
    int rc = filter_compile_text(filter_json, strlen(filter_json), f, err, errlen);
    if (!rc && filter_is_all(*f)) { /* {} matches everything: no filter at all */
        filter_free(*f);
        *f = NULL;
    }
    return rc;
}

static int check_opts(const engine_search_opts *o, char *err, size_t errlen) {
    if (o->k < 1 || o->k > ENGINE_MAX_K)
        return is_fail(err, errlen, IS_ERR_INVALID, "k must be between 1 and %d, not %d", ENGINE_MAX_K, o->k);
    if (o->ef && (o->ef < o->k || o->ef > 4096))
        return is_fail(err, errlen, IS_ERR_INVALID, "ef must be between k (%d) and 4096, not %d", o->k, o->ef);
    if (o->max_dist > 2 || o->max_dist != o->max_dist)
        return is_fail(err, errlen, IS_ERR_INVALID, "max_dist must be a cosine distance between 0 and 2");
    return IS_OK;
}

/* Nearest neighbours of vec, with their names and metadata. */
static int search_vector(engine *e, const float *vec, const engine_search_opts *o, int64_t exclude,
                         engine_hit **hits, int *n, char *err, size_t errlen) {
    *hits = NULL;
    *n = 0;
    int rc = check_opts(o, err, errlen);
    filter *f = NULL;
    label_query lq;
    unsigned char *classes = NULL;
    if (!rc) rc = compile_filter(o->filter_json, &f, err, errlen);
    if (!rc) rc = engine_label_query(e, o->label, o->label_min, &lq, &classes, err, errlen);
    if (rc) {
        filter_free(f);
        return rc;
    }
    int k = o->k;
    index_hit *raw = malloc(sizeof *raw * (size_t)k);
    engine_hit *out = calloc((size_t)k, sizeof *out);
    int found = 0;
    if (!raw || !out) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    int m = 0;
    if (!rc) {
        /* names and metadata come from the index's own copy, under the same read lock: a search
         * costs no store access (and goes on while a shared store is unreachable) */
        pthread_rwlock_rdlock(&e->index_lock);
        rc = index_search(e, vec, k, o->ef, f, classes ? &lq : NULL, exclude, raw, &found, err, errlen);
        for (int i = 0; !rc && i < found; i++) {
            /* nearest first: the first one too far ends the list */
            if (o->max_dist >= 0 && raw[i].dist > o->max_dist) break;
            engine_hit *h = &out[m];
            int got = index_record(&e->idx, raw[i].id, &h->name, &h->data);
            if (got == IS_ERR_NOMEM) rc = is_fail(err, errlen, got, "out of memory");
            if (got) continue;
            h->id = raw[i].id;
            h->dist = raw[i].dist < 0 ? 0 : raw[i].dist;
            m++;
        }
        pthread_rwlock_unlock(&e->index_lock);
    }
    filter_free(f);
    free(classes);
    free(raw);
    if (rc) {
        engine_hits_free(out, m);
        return rc;
    }
    *hits = out;
    *n = m;
    return IS_OK;
}

int engine_search(engine *e, const void *bytes, size_t len, const engine_search_opts *opts, engine_hit **hits,
                  int *n, char *err, size_t errlen) {
    *hits = NULL;
    *n = 0;
    filter *check = NULL; /* refuse bad arguments before spending inference on the image */
    label_query lq;
    unsigned char *classes = NULL;
    int rc = check_opts(opts, err, errlen);
    if (!rc) rc = compile_filter(opts->filter_json, &check, err, errlen);
    if (!rc) rc = engine_label_query(e, opts->label, opts->label_min, &lq, &classes, err, errlen);
    filter_free(check);
    free(classes);
    if (rc) return rc;
    float *vec = malloc(sizeof(float) * (size_t)embed_dims(e->model));
    if (!vec) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    rc = engine_embed_image(e, bytes, len, vec, NULL, NULL, err, errlen);
    if (!rc) rc = search_vector(e, vec, opts, INT64_MIN, hits, n, err, errlen);
    free(vec);
    return rc;
}

int engine_similar(engine *e, int64_t id, const engine_search_opts *opts, engine_hit **hits, int *n, char *err,
                   size_t errlen) {
    *hits = NULL;
    *n = 0;
    store_image row;
    int rc = store_get(e->db, id, true, &row, err, errlen);
    if (rc) return rc;
    rc = search_vector(e, row.vector, opts, id, hits, n, err, errlen);
    store_image_clear(&row);
    return rc;
}

void engine_hits_free(engine_hit *hits, int n) {
    for (int i = 0; hits && i < n; i++) {
        free(hits[i].name);
        free(hits[i].data);
    }
    free(hits);
}

/* ---- query --------------------------------------------------------------------------------- */

typedef struct {
    int64_t id;
    float score;
} scored_id;

static int by_id(const void *a, const void *b) {
    int64_t x = ((const scored_id *)a)->id, y = ((const scored_id *)b)->id;
    return (x > y) - (x < y);
}

/* most probable first; ties in id order */
static int by_score(const void *a, const void *b) {
    const scored_id *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return by_id(a, b);
}

int engine_query(engine *e, const char *filter_json, const char *label, double label_min, int64_t offset, int limit,
                 store_image **rows, float **scores, int *n, int64_t *total, char *err, size_t errlen) {
    *rows = NULL;
    if (scores) *scores = NULL;
    *n = 0;
    *total = 0;
    if (offset < 0) return is_fail(err, errlen, IS_ERR_INVALID, "offset must be 0 or more");
    if (limit < 1 || limit > ENGINE_MAX_K)
        return is_fail(err, errlen, IS_ERR_INVALID, "limit must be between 1 and %d, not %d", ENGINE_MAX_K, limit);
    filter *f;
    int rc = compile_filter(filter_json, &f, err, errlen);
    if (rc) return rc;
    label_query lq;
    unsigned char *classes = NULL;
    rc = engine_label_query(e, label, label_min, &lq, &classes, err, errlen);
    if (rc) {
        filter_free(f);
        return rc;
    }
    pthread_rwlock_rdlock(&e->index_lock);
    size_t count = json_object_size(e->idx.meta), m = 0;
    scored_id *ids = malloc(sizeof *ids * (count ? count : 1));
    const char *key;
    json_t *doc;
    if (ids)
        json_object_foreach(e->idx.meta, key, doc) {
            if (f && !filter_match(f, doc)) continue;
            int64_t id = strtoll(key, NULL, 10);
            float score = 0;
            if (classes) {
                const image_labels *l = labelmap_get(&e->idx.labels, id);
                if (!l || (score = labels_score(l, &lq)) < lq.min_score) continue;
            }
            ids[m++] = (scored_id){id, score};
        }
    pthread_rwlock_unlock(&e->index_lock);
    filter_free(f);
    free(classes);
    if (!ids) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    qsort(ids, m, sizeof *ids, label ? by_score : by_id);
    size_t from = (size_t)offset < m ? (size_t)offset : m, want = m - from < (size_t)limit ? m - from : (size_t)limit;
    store_image *got_rows = calloc((size_t)limit, sizeof *got_rows), *out = calloc((size_t)limit, sizeof *out);
    float *out_scores = label && scores ? calloc((size_t)limit, sizeof *out_scores) : NULL;
    int64_t *page = malloc(sizeof *page * (want ? want : 1));
    int got = 0, kept = 0;
    if (!got_rows || !out || !page || (label && scores && !out_scores)) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < want; i++) page[i] = ids[from + i].id;
    /* one read for the page, whose rows come in id order (rows deleted since the index was read
     * are left out); then back into the page's order */
    if (!rc) rc = store_get_many(e->db, page, (int)want, false, got_rows, &got, err, errlen);
    for (size_t i = 0; !rc && i < want; i++) {
        scored_id key_id = {page[i], 0};
        for (int j = 0; j < got; j++) /* got ≤ limit ≤ 1000: a scan is cheap beside the store read */
            if (got_rows[j].id == key_id.id) {
                out[kept] = got_rows[j];
                memset(&got_rows[j], 0, sizeof got_rows[j]);
                if (out_scores) out_scores[kept] = ids[from + i].score;
                kept++;
                break;
            }
    }
    for (int j = 0; got_rows && j < got; j++) store_image_clear(&got_rows[j]);
    free(got_rows);
    free(page);
    free(ids);
    if (rc) {
        engine_rows_free(out, kept);
        free(out_scores);
        return rc;
    }
    *rows = out;
    if (scores) *scores = out_scores;
    *n = kept;
    *total = (int64_t)m;
    return IS_OK;
}

void engine_rows_free(store_image *rows, int n) {
    for (int i = 0; rows && i < n; i++) store_image_clear(&rows[i]);
    free(rows);
}
