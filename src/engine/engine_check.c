/* engine_check.c — `imgsearch check`: an embedded data directory's own integrity check, and the
 * repair of what can be derived from the rest (engine.h, "checking and repairing").
 *
 * Order: the database (SQLite's integrity check; when it cannot even be opened, only the blob files
 * are checked against their names), the index snapshot (loaded, and the change log after it
 * replayed into it as a server would), then one walk over the rows (vector, file, and the
 * snapshot's copy of each), then every blob file (does a row name it?). Problems are reported as
 * they are found; repairs come after, each said as it is done or not. The directory's lock is held
 * throughout, so no server changes anything meanwhile. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embed/embed.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "index/hnsw.h"
#include "store/blobs.h"
#include "store/store.h"
#include "util/status.h"

#define NORM_TOLERANCE 1e-3 /* |norm - 1| beyond this is no unit vector (float32 rounding is ~1e-6) */
#define BUILD_BATCH 512

/* A row found wrong in the walk: what a repair needs to know of it. */
typedef struct {
    int64_t id;
    char sha256[BLOB_HEX_LEN + 1];
    int problems;       /* lines reported for it */
    bool vector_bad;    /* wrong size, not finite, or not of unit norm */
    bool file_bad;      /* missing, damaged, unreadable or misnamed */
    const char *file_state; /* "missing", "damaged", "unreadable", "misnamed" */
} row_fault;

typedef struct {
    const engine_config *cfg;
    const engine_check_opts *opts;
    engine_check_fn report;
    void *ctx;
    engine_check_summary *sum;
    store *db;
    int dims;             /* the store's vector size; 0 when it records none */
    char model[160];      /* the store's embedding */
    char dbpath[PATH_MAX], blobdir[PATH_MAX], snapshot[PATH_MAX];
    bool db_damaged;      /* no repair touches a database that fails its own check */
    float *vec;           /* dims floats: the row in hand, aligned */
    row_fault *faults;
    size_t nfaults, capfaults;
    char (*orphans)[BLOB_HEX_LEN + 1];
    size_t norphans, caporphans;
    /* the snapshot, loaded and brought up to date (NULL when absent, unusable, or of other dims) */
    bool has_snapshot, snapshot_bad;
    hnsw_index *h;
    hnsw_params params;   /* the snapshot's, for a rebuild; dims 0 when it could not be read */
    int64_t snap_seq, last_seq;
    int64_t *ids;         /* the store's ids, ascending (the walk's order), when comparing */
    size_t nids, capids;
    int64_t missing, differ, extra, first_missing, first_differ, first_extra;
    /* the model, loaded on a repair's first need */
    embed_engine *model_engine;
    embed_session *session;
    bool model_tried;
    char model_why[1024];
} check_run;

static void say(check_run *c, engine_check_kind kind, int count, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One line of the report; problems and repairs are counted (count: how many problems a repair
 * line settles). */
static void say(check_run *c, engine_check_kind kind, int count, const char *fmt, ...) {
    char line[2048];
    static const char *const prefix[] = {"", "repaired: ", "cannot repair: ", "note: "};
    int n = snprintf(line, sizeof line, "%s", prefix[kind]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (kind == CHECK_PROBLEM) c->sum->problems++;
    if (kind == CHECK_REPAIRED) c->sum->repaired += count;
    c->report(kind, line, c->ctx);
}

/* Cuts the hint to run `imgsearch check` off a store message: this is that command. */
static const char *without_hint(char *msg) {
    char *hint = strstr(msg, STORE_CHECK_HINT);
    if (hint) *hint = 0;
    return msg;
}

static int grow(void **v, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return IS_OK;
    size_t c = *cap ? *cap * 2 : 64;
    void *g = realloc(*v, c * size);
    if (!g) return IS_ERR_NOMEM;
    *v = g;
    *cap = c;
    return IS_OK;
}

static void blob_path(const check_run *c, const char *hex, char *path, size_t len) {
    blobs_file_path(c->blobdir, hex, path, len);
}

/* ---- when the database cannot be used: the blob files against their names ------------------- */

typedef struct {
    check_run *c;
    blobs *b;
} blob_walk;

static int verify_blob_file(const char *hex, void *ctx) {
    blob_walk *w = ctx;
    check_run *c = w->c;
    c->sum->blobs++;
    char actual[BLOB_HEX_LEN + 1], why[512], path[PATH_MAX];
    int rc = blobs_verify(w->b, hex, actual, why, sizeof why);
    blob_path(c, hex, path, sizeof path);
    if (rc == IS_ERR_CORRUPT) say(c, CHECK_PROBLEM, 0, "blob %s: damaged: its bytes hash to %s", path, actual);
    else if (rc == IS_ERR_NOMEM) return rc;
    else if (rc) say(c, CHECK_PROBLEM, 0, "blob %s: %s", path, why);
    return 0;
}

static int check_files_only(check_run *c, char *err, size_t errlen) {
    struct stat st;
    if (stat(c->blobdir, &st) || !S_ISDIR(st.st_mode)) return IS_OK;
    blob_walk w = {.c = c};
    int rc = blobs_open(c->blobdir, &w.b, err, errlen);
    if (!rc) rc = blobs_each(w.b, verify_blob_file, &w);
    blobs_close(w.b);
    if (rc == IS_ERR_NOMEM) return is_fail(err, errlen, rc, "out of memory");
    if (rc == IS_ERR_IO) return is_fail(err, errlen, rc, "cannot read %s", c->blobdir);
    return rc;
}

/* ---- the snapshot: loaded and replayed as a server would (engine_index.c) ----------------------- */

static bool vector_sound(const float *v, int dims) {
    double sum = 0;
    for (int i = 0; i < dims; i++) {
        if (!isfinite(v[i])) return false;
        sum += (double)v[i] * v[i];
    }
    return fabs(sqrt(sum) - 1) <= NORM_TOLERANCE;
}

/* Applies the change log after the snapshot's sequence to c->h: an add puts the row's vector in
 * unless it is there (rows deleted since, or whose vector is unsound, are left to the walk), a
 * delete takes it out, a clear empties the graph. */
static int replay(check_run *c, char *err, size_t errlen) {
    index_change_list l;
    int rc = index_read_changes(c->db, c->snap_seq, &l, err, errlen);
    for (size_t i = 0; !rc && i < l.n; i++) {
        const index_change *ch = &l.v[i];
        if (ch->op == CHANGE_ADD && !hnsw_contains(c->h, ch->id)) {
            store_image row;
            char why[512];
            int got = store_get(c->db, ch->id, true, &row, why, sizeof why);
            if (!got && vector_sound(row.vector, row.dims)) rc = hnsw_add(c->h, ch->id, row.vector);
            if (!got) store_image_clear(&row);
            else if (got == IS_ERR_NOMEM || got == IS_ERR_CORRUPT) rc = is_fail(err, errlen, got, "%s", why);
            if (rc) is_fail(err, errlen, rc, "cannot replay change %lld", (long long)ch->seq);
        } else if (ch->op == CHANGE_DELETE && hnsw_contains(c->h, ch->id)) {
            hnsw_remove(c->h, ch->id);
        } else if (ch->op == CHANGE_CLEAR) {
            hnsw_free(c->h);
            if (!(c->h = hnsw_new(&c->params))) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        }
    }
    free(l.v);
    return rc;
}

/* Loads <dir>/index.hnsw, if there is one, and brings it up to the store's last change. A snapshot
 * of another vector size is another configuration's, not damage: it is left alone (a server
 * discards it). Errors are the store's (reading the log); a bad snapshot is a reported problem. */
static int snapshot_open(check_run *c, char *err, size_t errlen) {
    if (access(c->snapshot, F_OK)) return IS_OK;
    c->has_snapshot = true;
    char why[512];
    int rc = hnsw_load(c->snapshot, &c->h, &c->snap_seq, why, sizeof why);
    if (rc == IS_ERR_NOMEM) return is_fail(err, errlen, rc, "%s", why);
    if (rc) {
        c->snapshot_bad = true;
        say(c, CHECK_PROBLEM, 0, "%s", why); /* "index snapshot <path> refused: <why>" */
        return IS_OK;
    }
    c->params = *hnsw_get_params(c->h);
    if (c->params.dims != c->dims) {
        say(c, CHECK_NOTE, 0, "%s holds vectors of %d values, the store %d: a server discards it (not damage)",
            c->snapshot, c->params.dims, c->dims);
        hnsw_free(c->h);
        c->h = NULL;
        return IS_OK;
    }
    if ((rc = store_last_seq(c->db, &c->last_seq))) return is_fail(err, errlen, rc, "cannot read the last change");
    if (c->snap_seq > c->last_seq) {
        c->snapshot_bad = true;
        say(c, CHECK_PROBLEM, 0,
            "%s: made at change %lld, after the store's last change %lld (from another database, or the database "
            "is an older copy)",
            c->snapshot, (long long)c->snap_seq, (long long)c->last_seq);
        hnsw_free(c->h);
        c->h = NULL;
        return IS_OK;
    }
    return replay(c, err, errlen);
}

static bool have_id(const check_run *c, int64_t id) {
    size_t lo = 0, hi = c->nids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->ids[mid] == id) return true;
        if (c->ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

/* After the walk: ids the snapshot holds that the store does not, then one line for it all. */
static int snapshot_verdict(check_run *c) {
    if (!c->h) return IS_OK;
    int64_t *ids;
    size_t n;
    if (hnsw_ids(c->h, &ids, &n)) return IS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (!have_id(c, ids[i]) && !c->extra++) c->first_extra = ids[i];
    free(ids);
    if (!c->missing && !c->extra && !c->differ) return IS_OK;
    c->snapshot_bad = true;
    char what[512] = "";
    size_t at = 0;
    if (c->missing)
        at += (size_t)snprintf(what + at, sizeof what - at, ", %lld image(s) missing (first: %lld)",
                               (long long)c->missing, (long long)c->first_missing);
    if (c->extra)
        at += (size_t)snprintf(what + at, sizeof what - at, ", %lld image(s) the store does not hold (first: %lld)",
                               (long long)c->extra, (long long)c->first_extra);
    if (c->differ)
        snprintf(what + at, sizeof what - at, ", %lld vector(s) differ from the store's (first: image %lld)",
                 (long long)c->differ, (long long)c->first_differ);
    say(c, CHECK_PROBLEM, 0, "%s: does not match the store (snapshot at change %lld, store at change %lld)%s",
        c->snapshot, (long long)c->snap_seq, (long long)c->last_seq, what);
    return IS_OK;
}

/* ---- the walk over the rows ------------------------------------------------------------------- */

static row_fault *fault_of(check_run *c, const store_check_row *r) {
    if (c->nfaults && c->faults[c->nfaults - 1].id == r->id) return &c->faults[c->nfaults - 1];
    if (grow((void **)&c->faults, &c->capfaults, c->nfaults, sizeof *c->faults)) return NULL;
    row_fault *f = &c->faults[c->nfaults++];
    *f = (row_fault){.id = r->id};
    memcpy(f->sha256, r->sha256, sizeof f->sha256);
    return f;
}

/* Is the row's vector what the store promises (dims finite values of unit norm)? Says why not. */
static bool check_vector(check_run *c, const store_check_row *r) {
    size_t want = sizeof(float) * (size_t)c->dims;
    if (r->vector_bytes != want) {
        if (r->vector_bytes % sizeof(float))
            say(c, CHECK_PROBLEM, 0, "image %lld: vector is %zu bytes long, not %zu", (long long)r->id,
                r->vector_bytes, want);
        else
            say(c, CHECK_PROBLEM, 0, "image %lld: vector has %zu values, not %d", (long long)r->id,
                r->vector_bytes / sizeof(float), c->dims);
        return false;
    }
    memcpy(c->vec, r->vector, want);
    double sum = 0;
    for (int i = 0; i < c->dims; i++) {
        if (!isfinite(c->vec[i])) {
            say(c, CHECK_PROBLEM, 0, "image %lld: vector value %d is %g", (long long)r->id, i, (double)c->vec[i]);
            return false;
        }
        sum += (double)c->vec[i] * c->vec[i];
    }
    double norm = sqrt(sum);
    if (fabs(norm - 1) > NORM_TOLERANCE) {
        say(c, CHECK_PROBLEM, 0, "image %lld: vector norm is %f, not 1", (long long)r->id, norm);
        return false;
    }
    return true;
}

/* Is the row's file there, and does it hash to its name? Says why not. */
static int check_file(check_run *c, const store_check_row *r, const char **state) {
    char actual[BLOB_HEX_LEN + 1], why[512], path[PATH_MAX];
    int rc = store_bytes_verify(c->db, r->sha256, actual, why, sizeof why);
    blob_path(c, r->sha256, path, sizeof path);
    *state = NULL;
    if (rc == IS_ERR_NOT_FOUND) {
        *state = "missing";
        say(c, CHECK_PROBLEM, 0, "image %lld: file %s is missing", (long long)r->id, path);
    } else if (rc == IS_ERR_CORRUPT) {
        *state = "damaged";
        say(c, CHECK_PROBLEM, 0, "image %lld: file %s is damaged: its bytes hash to %s", (long long)r->id, path,
            actual);
    } else if (rc == IS_ERR_INVALID) {
        *state = "misnamed";
        say(c, CHECK_PROBLEM, 0, "image %lld: names its file '%.80s', which is no SHA-256", (long long)r->id,
            r->sha256);
    } else if (rc && rc != IS_ERR_NOMEM) {
        *state = "unreadable";
        say(c, CHECK_PROBLEM, 0, "image %lld: %s", (long long)r->id, why);
    }
    return rc == IS_ERR_NOMEM ? rc : IS_OK;
}

static int check_row(const store_check_row *r, void *ctx) {
    check_run *c = ctx;
    c->sum->images++;
    bool vector_ok = !c->dims || check_vector(c, r);
    const char *file_state;
    int rc = check_file(c, r, &file_state);
    if (rc) return rc;
    if (!vector_ok || file_state) {
        row_fault *f = fault_of(c, r);
        if (!f) return IS_ERR_NOMEM;
        f->vector_bad = !vector_ok;
        f->file_bad = file_state != NULL;
        f->file_state = file_state;
        f->problems = !vector_ok + (file_state != NULL);
    }
    if (c->h) {
        if (grow((void **)&c->ids, &c->capids, c->nids, sizeof *c->ids)) return IS_ERR_NOMEM;
        c->ids[c->nids++] = r->id;
        /* a row whose vector is unsound is reported already; its copy is compared after a repair */
        if (vector_ok && !hnsw_contains(c->h, r->id)) {
            if (!c->missing++) c->first_missing = r->id;
        } else if (vector_ok && !hnsw_matches(c->h, r->id, c->vec)) {
            if (!c->differ++) c->first_differ = r->id;
        }
    }
    return IS_OK;
}

/* ---- the blob files: does a row name each? ----------------------------------------------------- */

static int check_blob(const char *hex, bool named, void *ctx) {
    check_run *c = ctx;
    c->sum->blobs++;
    if (named) return 0;
    char path[PATH_MAX];
    blob_path(c, hex, path, sizeof path);
    say(c, CHECK_PROBLEM, 0, "blob %s: no image names it", path);
    if (grow((void **)&c->orphans, &c->caporphans, c->norphans, sizeof *c->orphans)) return IS_ERR_NOMEM;
    memcpy(c->orphans[c->norphans++], hex, BLOB_HEX_LEN + 1);
    return 0;
}

/* ---- repairs ------------------------------------------------------------------------------------ */

/* The model that made the store's vectors, loaded once; NULL (c->model_why says why) when the one
 * given is another or cannot be loaded. */
static embed_session *model_session(check_run *c) {
    if (c->model_tried) return c->session;
    c->model_tried = true;
    const engine_config *cfg = c->cfg;
    char why[512];
    int rc = embed_engine_new(cfg->model_config, &c->model_engine, why, sizeof why);
    if (!rc) rc = embed_apply_precision(c->model_engine, cfg->precision, why, sizeof why);
    if (rc) {
        snprintf(c->model_why, sizeof c->model_why, "the model cannot be loaded (%.400s): give it with --model", why);
        return NULL;
    }
    /* a directory of the plain pooled vectors (made before heads) is repaired with those */
    if (strcmp(c->model, embed_model_name(c->model_engine)) && !strcmp(c->model, embed_plain_name(c->model_engine)))
        embed_engine_drop_head(c->model_engine);
    if (strcmp(c->model, embed_model_name(c->model_engine)) || embed_dims(c->model_engine) != c->dims) {
        snprintf(c->model_why, sizeof c->model_why,
                 "the store's vectors are of %s, and %s makes %s: give the model they were made with (--model)",
                 c->model, cfg->model_config, embed_model_name(c->model_engine));
        return NULL;
    }
    rc = embed_session_new(c->model_engine, cfg->infer_threads > 0 ? cfg->infer_threads : 1, &c->session, why,
                           sizeof why);
    if (rc) snprintf(c->model_why, sizeof c->model_why, "the model cannot run (%.400s)", why);
    return c->session;
}

/* Recomputes a row's vector from its file (checked on reading) and stores it. */
static int reembed_row(check_run *c, const row_fault *f, char *why, size_t whylen) {
    embed_session *s = model_session(c);
    if (!s) return is_fail(why, whylen, IS_ERR_MODEL, "%s", c->model_why);
    unsigned char *bytes = NULL;
    size_t len = 0;
    int rc = store_bytes_read(c->db, f->sha256, &bytes, &len, why, whylen);
    if (!rc) rc = embed_image(s, bytes, len, c->cfg->max_pixels, c->vec, NULL, NULL, why, whylen);
    free(bytes);
    if (!rc) rc = store_set_vector(c->db, f->id, c->vec, c->dims, why, whylen);
    if (rc) without_hint(why);
    return rc;
}

static void repair_rows(check_run *c, bool *vectors_changed) {
    for (size_t i = 0; i < c->nfaults; i++) {
        const row_fault *f = &c->faults[i];
        char why[512];
        if (f->file_bad && c->opts->drop_unrecoverable) {
            int64_t seq;
            if (store_delete(c->db, f->id, &seq, why, sizeof why))
                say(c, CHECK_CANNOT, 0, "image %lld: cannot delete it: %s", (long long)f->id, without_hint(why));
            else
                say(c, CHECK_REPAIRED, f->problems, "image %lld: deleted, as its file was %s (--drop-unrecoverable)",
                    (long long)f->id, f->file_state);
        } else if (f->file_bad) {
            say(c, CHECK_CANNOT, 0,
                "image %lld: its file is %s, and %s be derived from anything else: restore the data directory "
                "from a backup (imgsearch restore), or delete the image (DELETE /image/%lld on a server, or "
                "imgsearch check --repair --drop-unrecoverable %s)",
                (long long)f->id, f->file_state, f->vector_bad ? "neither it nor the vector can" : "it cannot",
                (long long)f->id, c->cfg->data_dir);
        } else if (f->vector_bad) {
            if (reembed_row(c, f, why, sizeof why))
                say(c, CHECK_CANNOT, 0, "image %lld: vector: %s", (long long)f->id, why);
            else {
                *vectors_changed = true;
                say(c, CHECK_REPAIRED, f->problems, "image %lld: vector recomputed from its file", (long long)f->id);
            }
        }
    }
}

static void repair_orphans(check_run *c) {
    for (size_t i = 0; i < c->norphans; i++) {
        char why[512], path[PATH_MAX];
        blob_path(c, c->orphans[i], path, sizeof path);
        int rc = store_bytes_remove_unnamed(c->db, c->orphans[i], why, sizeof why);
        if (rc && rc != IS_ERR_NOT_FOUND) say(c, CHECK_CANNOT, 0, "blob %s: %s", path, why);
        else say(c, CHECK_REPAIRED, 1, "blob %s: removed", path);
    }
}

typedef struct {
    hnsw_index *h;
    int dims, threads;
    int64_t ids[BUILD_BATCH];
    float *vecs;
    size_t n;
} build_ctx;

static int build_flush(build_ctx *b) {
    int rc = b->n ? hnsw_add_batch(b->h, b->ids, b->vecs, b->n, b->threads) : IS_OK;
    b->n = 0;
    return rc;
}

static int build_row(const store_image *img, void *ctx) {
    build_ctx *b = ctx;
    b->ids[b->n] = img->id;
    memcpy(b->vecs + b->n * (size_t)b->dims, img->vector, sizeof(float) * (size_t)b->dims);
    return ++b->n == BUILD_BATCH ? build_flush(b) : IS_OK;
}

/* A fresh snapshot from the store, with the old one's settings (the defaults when it could not be
 * read), saved over it: the next start loads it instead of building. */
static int rebuild_snapshot(check_run *c, int64_t *count, int64_t *seq, char *err, size_t errlen) {
    hnsw_params p = c->params;
    if (p.dims != c->dims) hnsw_params_default(&p, c->dims);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    build_ctx b = {.h = hnsw_new(&p), .dims = c->dims, .threads = cpus > 0 ? (int)cpus : 1,
                   .vecs = malloc(sizeof(float) * BUILD_BATCH * (size_t)c->dims)};
    int rc = b.h && b.vecs ? IS_OK : is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (!rc) rc = store_each_snapshot(c->db, true, build_row, &b, seq, err, errlen);
    if (!rc && (rc = build_flush(&b))) is_fail(err, errlen, rc, "cannot add to the index");
    if (!rc) *count = (int64_t)hnsw_count(b.h);
    if (!rc) rc = hnsw_save(b.h, c->snapshot, *seq, err, errlen);
    hnsw_free(b.h);
    free(b.vecs);
    return rc;
}

static void repair_snapshot(check_run *c, bool vectors_changed) {
    if (!c->has_snapshot || (!c->snapshot_bad && !vectors_changed)) return;
    char why[512];
    int64_t count = 0, seq = 0;
    if (!rebuild_snapshot(c, &count, &seq, why, sizeof why)) {
        if (c->snapshot_bad)
            say(c, CHECK_REPAIRED, 1, "%s: rebuilt from the store (%lld images, change %lld)", c->snapshot,
                (long long)count, (long long)seq);
        else
            say(c, CHECK_NOTE, 0, "%s rebuilt from the store, as vectors changed (%lld images, change %lld)",
                c->snapshot, (long long)count, (long long)seq);
        return;
    }
    without_hint(why);
    /* without the file a server builds the index from the store at its next start */
    if (unlink(c->snapshot) == 0)
        say(c, c->snapshot_bad ? CHECK_REPAIRED : CHECK_NOTE, 1,
            "%s: removed, as it could not be rebuilt now (%s); a server rebuilds the index when it starts",
            c->snapshot, why);
    else
        say(c, CHECK_CANNOT, 0, "%s: could not be rebuilt (%s) nor removed: remove it by hand", c->snapshot, why);
}

/* ---- the whole check ---------------------------------------------------------------------------- */

/* SQLite's findings may span lines ("*** in database main ***\nPage 9: ..."): one report line each. */
static void integrity_line(const char *text, void *ctx) {
    check_run *c = ctx;
    c->db_damaged = true;
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        if (n && strncmp(p, "*** in database ", 16)) say(c, CHECK_PROBLEM, 0, "%s: %.*s", c->dbpath, (int)n, p);
        p += n + (p[n] == '\n');
    }
}

/* Everything that needs the open store; errors are those that keep the check from going on. */
static int check_store(check_run *c, char *err, size_t errlen) {
    char why[512];
    if (store_integrity_check(c->db, integrity_line, c, why, sizeof why)) {
        say(c, CHECK_PROBLEM, 0, "%s: its integrity check %s: %s", c->dbpath, c->db_damaged ? "stopped" : "cannot run",
            without_hint(why));
        c->db_damaged = true;
    }
    int64_t count = 0;
    int rc = store_embedding(c->db, c->model, sizeof c->model, &c->dims);
    if (rc == IS_ERR_NOT_FOUND) {
        c->dims = 0;
        if (store_count(c->db, &count) == IS_OK && count > 0)
            say(c, CHECK_PROBLEM, 0, "%s: holds %lld images but records no embedding (model and vector size)",
                c->dbpath, (long long)count);
    } else if (rc) { /* vectors cannot be judged without their size; the rest can */
        c->db_damaged = true;
        c->dims = 0;
        say(c, CHECK_PROBLEM, 0, "%s: cannot read the embedding it records", c->dbpath);
    } else if (store_bind_embedding(c->db, c->model, c->dims, why, sizeof why)) {
        c->db_damaged = true;
        c->dims = 0;
        say(c, CHECK_PROBLEM, 0, "%s: cannot use the embedding it records: %s", c->dbpath, without_hint(why));
    }
    if (c->dims && !(c->vec = malloc(sizeof(float) * (size_t)c->dims)))
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (c->dims && !c->db_damaged) {
        rc = snapshot_open(c, why, sizeof why);
        if (rc == IS_ERR_NOMEM) return is_fail(err, errlen, rc, "%s", why);
        if (rc) { /* the log could not be read: the database's problem, reported as such */
            c->db_damaged = true;
            say(c, CHECK_PROBLEM, 0, "%s: %s", c->dbpath, without_hint(why));
            hnsw_free(c->h);
            c->h = NULL;
        }
    }
    rc = store_check_each(c->db, check_row, c, why, sizeof why);
    if (rc == IS_ERR_NOMEM) return is_fail(err, errlen, rc, "out of memory");
    if (rc) {
        c->db_damaged = true;
        say(c, CHECK_PROBLEM, 0, "%s: cannot read every image: %s", c->dbpath, without_hint(why));
        hnsw_free(c->h); /* an incomplete walk says nothing of the snapshot */
        c->h = NULL;
    }
    if (snapshot_verdict(c)) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    /* which files rows name, only a sound database tells; else each file is checked against its name */
    int64_t blobs = c->sum->blobs;
    rc = c->db_damaged ? check_files_only(c, err, errlen) : store_bytes_each(c->db, check_blob, c, why, sizeof why);
    if (rc == IS_ERR_NOMEM) return is_fail(err, errlen, rc, "out of memory");
    if (rc && c->db_damaged) return rc;
    if (rc) {
        c->db_damaged = true;
        say(c, CHECK_PROBLEM, 0, "%s: cannot tell which files its images name: %s", c->dbpath, without_hint(why));
        c->sum->blobs = blobs;
        c->norphans = 0;
        if ((rc = check_files_only(c, err, errlen))) return rc;
    }
    if (!c->opts->repair) return IS_OK;
    if (c->db_damaged) {
        say(c, CHECK_CANNOT, 0,
            "%s: a damaged database cannot be derived from the other files, and nothing else is repaired while it "
            "is damaged: restore the data directory from a backup (imgsearch restore), or copy out what SQLite "
            "can still read (sqlite3 %s .recover)",
            c->dbpath, c->dbpath);
        return IS_OK;
    }
    bool vectors_changed = false;
    repair_rows(c, &vectors_changed);
    repair_orphans(c);
    repair_snapshot(c, vectors_changed);
    return IS_OK;
}

static void run_free(check_run *c) {
    hnsw_free(c->h);
    embed_session_free(c->session);
    embed_engine_free(c->model_engine);
    store_close(c->db);
    free(c->vec);
    free(c->faults);
    free(c->orphans);
    free(c->ids);
}

int engine_check(const engine_config *cfg, const engine_check_opts *opts, engine_check_fn report, void *ctx,
                 engine_check_summary *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (cfg->store_url && *cfg->store_url)
        return is_fail(err, errlen, IS_ERR_INVALID,
                       "imgsearch check works on an embedded data directory; for PostgreSQL, `imgsearch migrate` "
                       "the database to a data directory and check that");
    check_run c = {.cfg = cfg, .opts = opts, .report = report, .ctx = ctx, .sum = out};
    const char *dir = cfg->data_dir;
    snprintf(c.dbpath, sizeof c.dbpath, "%s/imgsearch.db", dir);
    snprintf(c.blobdir, sizeof c.blobdir, "%s/blobs", dir);
    snprintf(c.snapshot, sizeof c.snapshot, "%s/index.hnsw", dir);
    struct stat st;
    bool has_db = stat(c.dbpath, &st) == 0, has_blobs = stat(c.blobdir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!has_db && !has_blobs) return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch data", dir);
    /* no server may change the directory under the check (nor start while it repairs) */
    int lock_fd = -1;
    char why[512];
    if (engine_lock_dir(dir, &lock_fd, why, sizeof why))
        return is_fail(err, errlen, IS_ERR_BUSY, "%s (imgsearch check needs the directory to itself: stop the server first)",
                       why);
    int rc = IS_OK;
    if (!has_db) {
        say(&c, CHECK_PROBLEM, 0, "%s: missing, though %s holds images", c.dbpath, c.blobdir);
        rc = check_files_only(&c, err, errlen);
        if (!rc && opts->repair)
            say(&c, CHECK_CANNOT, 0,
                "%s: the database cannot be derived from the image files: restore the data directory from a backup "
                "(imgsearch restore)",
                c.dbpath);
    } else if (store_open(dir, NULL, NULL, 0, &c.db, why, sizeof why)) {
        /* the store refuses it: damaged, cut short, or not a database; the files are checked alone */
        say(&c, CHECK_PROBLEM, 0, "%s", without_hint(why));
        rc = check_files_only(&c, err, errlen);
        if (!rc && opts->repair)
            say(&c, CHECK_CANNOT, 0,
                "%s: a damaged database cannot be derived from the image files: restore the data directory from a "
                "backup (imgsearch restore), or copy out what SQLite can still read (sqlite3 %s .recover)",
                c.dbpath, c.dbpath);
    } else {
        rc = check_store(&c, err, errlen);
    }
    run_free(&c);
    close(lock_fd);
    return rc;
}
