/* The shared store on PostgreSQL: one implementation of store.h (store_impl.h), opened by
 * store_postgres_open, for any number of imgsearch nodes at once.
 *
 * Layout (schema `imgsearch`, versioned migrations in MIGRATIONS): images (rows, the vector as
 * float32 bytea, the metadata as the exact text the API returns plus a generated jsonb copy for SQL
 * users and indexes), blobs (the image bytes as bytea, one row per distinct SHA-256 with a count of
 * the rows naming it), changes (the change log), meta (model, dims, the database's identity).
 *
 * Why bytea and not large objects: the bytes are inserted and removed in the same transaction as
 * the row that names them (a crash or a lost connection leaves neither half), pg_dump and
 * replication carry them like any column, and nothing needs vacuumlo. Uploads are bounded
 * (--max-upload, far below bytea's 1 GB), and images are compressed already, so the column is
 * stored EXTERNAL (out of line, not recompressed).
 *
 * Sequence order = commit order. Writers on several nodes commit concurrently; if they drew change
 * numbers freely, change 11 could commit before change 10, a node could apply 11, remember 11, and
 * never look at 10 again. So every write transaction does its data changes first, then takes one
 * transaction-scoped advisory lock (WRITE_LOCK_KEY), and only then draws its sequence number and
 * logs the change; the lock is released at commit, after the commit became visible. Any change a
 * reader sees was therefore drawn after every smaller one had committed: a reader that has applied
 * N has seen everything up to N. The lock covers only the log insert and the commit (no row locks
 * are ever awaited while it is held, so it cannot deadlock); the data work runs in parallel.
 *
 * Connections: a small pool (POOL_MAX), made on first need and re-made when one breaks. When the
 * server cannot be reached, calls fail fast with IS_ERR_UNAVAILABLE for a back-off period that
 * doubles from 100 ms to 5 s, so a dead database costs no connect timeout per request.
 *
 * Test hook: IMGSEARCH_FAULT_COMMIT_DELAY_MS (read at open) sleeps that long between drawing a
 * change's number and committing it, to let the suite race two writers. */
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/blobs.h"
#include "store/store.h"
#include "store/store_impl.h"
#include "util/status.h"

#define POOL_MAX 8
#define WRITE_LOCK_KEY 0x696d6773 /* "imgs": the one advisory lock every write transaction takes */
#define CHANGE_CHANNEL "imgsearch_changes"

typedef struct {
    store base; /* first: a pg_store is a store (store_impl.h) */
    char *url;
    int dims;
    int commit_delay_ms;
    pthread_mutex_t lock; /* guards the pool and the back-off */
    pthread_cond_t freed;
    PGconn *idle[POOL_MAX];
    int nidle, nopen;
    int64_t retry_at_ms, backoff_ms; /* no connection attempt before retry_at_ms */
    int wake[2];                     /* a byte written to wake[1] ends a store_wait_changes at once */
    char last_error[256];
} pg_store;

static const store_ops postgres_ops;
static int pg_wait_changes(store *base, int timeout_ms);
static void pg_stop_waiting(store *base);
static void pg_wake(store *base);

static const char *const MIGRATIONS[] = {
    "CREATE SCHEMA IF NOT EXISTS imgsearch;"
    "CREATE TABLE imgsearch.meta(key text PRIMARY KEY, value text NOT NULL);"
    "INSERT INTO imgsearch.meta VALUES ('store_id', md5(random()::text || clock_timestamp()::text));"
    "CREATE TABLE imgsearch.blobs(sha256 text PRIMARY KEY, refs bigint NOT NULL CHECK (refs > 0), bytes bytea NOT NULL);"
    "ALTER TABLE imgsearch.blobs ALTER COLUMN bytes SET STORAGE EXTERNAL;"
    /* identity: an id, once deleted, is never handed out again (DELETE never resets it) */
    "CREATE TABLE imgsearch.images("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  name text NOT NULL, content_type text NOT NULL,"
    "  width integer NOT NULL, height integer NOT NULL, size bigint NOT NULL,"
    "  sha256 text NOT NULL REFERENCES imgsearch.blobs,"
    "  created_at bigint NOT NULL,"
    "  data text NOT NULL DEFAULT '{}',"
    "  data_jsonb jsonb GENERATED ALWAYS AS (data::jsonb) STORED,"
    "  vector bytea NOT NULL);"
    "CREATE INDEX images_sha256 ON imgsearch.images(sha256);"
    "CREATE SEQUENCE imgsearch.change_seq;"
    "CREATE TABLE imgsearch.changes("
    "  seq bigint PRIMARY KEY,"
    "  op char(1) NOT NULL CHECK (op IN ('a', 'd', 'm', 'c')),"
    "  image_id bigint);",
    /* 2: API keys, by the SHA-256 of the key (never the key), shared by every node */
    "CREATE TABLE imgsearch.api_keys("
    "  name text PRIMARY KEY,"
    "  scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),"
    "  digest text NOT NULL UNIQUE,"
    "  created_at bigint NOT NULL,"
    "  last_used bigint NOT NULL DEFAULT 0);",
    /* 3: each image's most probable classes (index/labels.h); NULL until computed */
    "ALTER TABLE imgsearch.images ADD COLUMN labels text;",
};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connections ------------------------------------------------------------------------------ */

static void first_line(const char *msg, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", msg && *msg ? msg : "no reason given");
    out[strcspn(out, "\n")] = 0;
}

static void ignore_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* Connects with our defaults for what the URL leaves unsaid: a 5 s connect timeout (an unreachable
 * host would otherwise hold a request for the TCP timeout) and TCP keepalives, so that a database
 * that vanished without closing the connection is noticed in about 30 s rather than hours. The
 * URL's own settings win (libpq: later parameters override the expanded dbname's). */
static PGconn *connect_to(const char *url) {
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
                          "application_name", "dbname", NULL};
    const char *vals[] = {"5", "10", "5", "3", "imgsearch", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c) PQsetNoticeProcessor(c, ignore_notice, NULL); /* NOTICEs (IF NOT EXISTS …) are not errors */
    return c;
}

/* A pooled connection, or NULL with IS_ERR_UNAVAILABLE in err while the server cannot be reached. */
static PGconn *conn_get(pg_store *s, char *err, size_t errlen) {
    pthread_mutex_lock(&s->lock);
    while (!s->nidle && s->nopen >= POOL_MAX) pthread_cond_wait(&s->freed, &s->lock);
    if (s->nidle) {
        PGconn *c = s->idle[--s->nidle];
        pthread_mutex_unlock(&s->lock);
        return c;
    }
    if (now_ms() < s->retry_at_ms) {
        is_fail(err, errlen, IS_ERR_UNAVAILABLE, "PostgreSQL is unreachable: %s", s->last_error);
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    s->nopen++;
    pthread_mutex_unlock(&s->lock);
    PGconn *c = connect_to(s->url);
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET synchronous_commit = on")); /* an acknowledged write is on disk */
        pthread_mutex_lock(&s->lock);
        s->backoff_ms = 0;
        s->retry_at_ms = 0;
        pthread_mutex_unlock(&s->lock);
        return c;
    }
    char why[256];
    first_line(PQerrorMessage(c), why, sizeof why);
    PQfinish(c);
    pthread_mutex_lock(&s->lock);
    s->nopen--;
    s->backoff_ms = s->backoff_ms ? (s->backoff_ms * 2 > 5000 ? 5000 : s->backoff_ms * 2) : 100;
    s->retry_at_ms = now_ms() + s->backoff_ms;
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->lock);
    is_fail(err, errlen, IS_ERR_UNAVAILABLE, "PostgreSQL is unreachable: %s", why);
    return NULL;
}

/* Returns a connection to the pool; a broken one (or one left inside a transaction) is closed. */
static void conn_put(pg_store *s, PGconn *c) {
    bool ok = PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
    if (!ok) PQfinish(c);
    pthread_mutex_lock(&s->lock);
    if (ok) s->idle[s->nidle++] = c;
    else s->nopen--;
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->lock);
}

/* Maps a failed result to a status: a lost connection is IS_ERR_UNAVAILABLE (and starts the
 * back-off), a full disk IS_ERR_NO_SPACE, anything else IS_ERR_INTERNAL, with PostgreSQL's first
 * line. */
static int pg_fail(pg_store *s, PGconn *c, const PGresult *r, char *err, size_t errlen, const char *what) {
    char why[256];
    first_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c), why, sizeof why);
    if (!*why || !strcmp(why, "no reason given")) first_line(PQerrorMessage(c), why, sizeof why);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* class 08: connection exceptions; 57P: the server is shutting down or restarting */
    bool gone = PQstatus(c) != CONNECTION_OK || (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)));
    if (gone) {
        pthread_mutex_lock(&s->lock);
        snprintf(s->last_error, sizeof s->last_error, "%s", why);
        pthread_mutex_unlock(&s->lock);
        return is_fail(err, errlen, IS_ERR_UNAVAILABLE, "PostgreSQL is unreachable (%s): %s", what, why);
    }
    /* 53100: the database server's disk is full (the write was rolled back) */
    if (state && !strcmp(state, "53100")) return is_fail(err, errlen, IS_ERR_NO_SPACE, "%s: %s", what, why);
    return is_fail(err, errlen, IS_ERR_INTERNAL, "%s: %s", what, why);
}

/* Runs sql with text parameters (lens/formats given for binary ones); NULL after filling err. */
static PGresult *run(pg_store *s, PGconn *c, const char *sql, int n, const char *const *vals, const int *lens,
                     const int *fmts, int result_format, ExecStatusType want, char *err, size_t errlen, int *rc,
                     const char *what) {
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, lens, fmts, result_format);
    if (PQresultStatus(r) == want) return r;
    *rc = pg_fail(s, c, r, err, errlen, what);
    PQclear(r);
    return NULL;
}

/* A statement whose rows, if any, do not matter. */
static int exec_simple(pg_store *s, PGconn *c, const char *sql, char *err, size_t errlen, const char *what) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? IS_OK : pg_fail(s, c, r, err, errlen, what);
    PQclear(r);
    return rc;
}

/* Ends the connection's transaction: COMMIT when rc is IS_OK, ROLLBACK otherwise. */
static int finish(pg_store *s, PGconn *c, int rc, char *err, size_t errlen) {
    if (!rc) rc = exec_simple(s, c, "COMMIT", err, errlen, "commit");
    if (rc && PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, "ROLLBACK"));
    conn_put(s, c);
    return rc;
}

/* Inside a write transaction, after its data changes: the database-wide write lock, then the
 * change's sequence number (file comment: sequence order = commit order), then the log entry and a
 * notification that is delivered at commit. */
static int log_change(pg_store *s, PGconn *c, change_op op, int64_t id, int64_t *seq, char *err, size_t errlen) {
    int rc = exec_simple(s, c, "SELECT pg_advisory_xact_lock(" /* WRITE_LOCK_KEY */ "1768777587)", err, errlen,
                         "take the write lock");
    if (rc) return rc;
    char opname[2] = {(char)op, 0}, idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    const char *vals[2] = {opname, op == CHANGE_CLEAR ? NULL : idtext};
    PGresult *r = run(s, c,
                      "WITH c AS (INSERT INTO imgsearch.changes(seq, op, image_id)"
                      " VALUES (nextval('imgsearch.change_seq'), $1, $2) RETURNING seq)"
                      " SELECT seq, pg_notify('" CHANGE_CHANNEL "', seq::text) FROM c",
                      2, vals, NULL, NULL, 0, PGRES_TUPLES_OK, err, errlen, &rc, "log the change");
    if (!r) return rc;
    *seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (s->commit_delay_ms > 0) usleep((useconds_t)s->commit_delay_ms * 1000);
    return IS_OK;
}

static PGconn *begin(pg_store *s, char *err, size_t errlen, int *rc) {
    PGconn *c = conn_get(s, err, errlen);
    if (!c) {
        *rc = IS_ERR_UNAVAILABLE;
        return NULL;
    }
    *rc = exec_simple(s, c, "BEGIN", err, errlen, "begin");
    if (*rc) {
        conn_put(s, c);
        return NULL;
    }
    return c;
}

/* ---- schema ----------------------------------------------------------------------------------- */

static int migrate(pg_store *s, PGconn *c, char *err, size_t errlen) {
    /* one node migrates at a time (others starting meanwhile wait, then find it done) */
    int rc = exec_simple(s, c, "BEGIN", err, errlen, "begin");
    if (!rc) rc = exec_simple(s, c, "SELECT pg_advisory_xact_lock(1768777588)", err, errlen, "lock the schema");
    if (!rc) rc = exec_simple(s, c, "CREATE TABLE IF NOT EXISTS public.imgsearch_schema(version integer NOT NULL)", err,
                              errlen, "create the schema version table");
    int version = 0;
    PGresult *r = rc ? NULL
                     : run(s, c, "SELECT coalesce(max(version), 0) FROM public.imgsearch_schema", 0, NULL, NULL, NULL, 0,
                           PGRES_TUPLES_OK, err, errlen, &rc, "read the schema version");
    if (r) version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!rc && version > N_MIGRATIONS)
        rc = is_fail(err, errlen, IS_ERR_INVALID, "the database has imgsearch schema version %d, newer than this imgsearch (%d)",
                     version, N_MIGRATIONS);
    for (int v = version; !rc && v < N_MIGRATIONS; v++) {
        char bump[96];
        snprintf(bump, sizeof bump, "DELETE FROM public.imgsearch_schema; INSERT INTO public.imgsearch_schema VALUES (%d)",
                 v + 1);
        PGresult *m = PQexec(c, MIGRATIONS[v]);
        if (PQresultStatus(m) != PGRES_COMMAND_OK) rc = pg_fail(s, c, m, err, errlen, "migrate the schema");
        PQclear(m);
        if (!rc) {
            m = PQexec(c, bump);
            if (PQresultStatus(m) != PGRES_COMMAND_OK) rc = pg_fail(s, c, m, err, errlen, "record the schema version");
            PQclear(m);
        }
    }
    if (!rc) rc = exec_simple(s, c, "COMMIT", err, errlen, "commit the schema");
    if (rc) PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

static int meta_get(pg_store *s, PGconn *c, const char *key, char *out, size_t outlen) {
    int rc = IS_OK;
    const char *vals[1] = {key};
    PGresult *r = run(s, c, "SELECT value FROM imgsearch.meta WHERE key = $1", 1, vals, NULL, NULL, 0, PGRES_TUPLES_OK,
                      NULL, 0, &rc, "read meta");
    if (!r) return rc;
    if (PQntuples(r) == 0) rc = IS_ERR_NOT_FOUND;
    else snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* The first open records model and dims; later opens must agree. */
static int check_meta(pg_store *s, PGconn *c, const char *model, int dims, char *err, size_t errlen) {
    char dims_text[16];
    snprintf(dims_text, sizeof dims_text, "%d", dims);
    const char *keys[2] = {"model", "dims"}, *want[2] = {model, dims_text};
    for (int i = 0; i < 2; i++) {
        char have[160];
        int got = meta_get(s, c, keys[i], have, sizeof have);
        if (got == IS_OK && strcmp(have, want[i]))
            return is_fail(err, errlen, IS_ERR_INVALID,
                           "the database holds vectors of %s %s, not %s: use that model, or another database", keys[i],
                           have, want[i]);
        if (got == IS_ERR_NOT_FOUND) {
            const char *vals[2] = {keys[i], want[i]};
            int rc = IS_OK;
            PGresult *r = run(s, c, "INSERT INTO imgsearch.meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                              2, vals, NULL, NULL, 0, PGRES_COMMAND_OK, err, errlen, &rc, "write meta");
            PQclear(r);
            if (rc) return rc;
            i--; /* read back: another node may have recorded its own first */
        } else if (got) {
            return is_fail(err, errlen, got, "cannot read the database's model");
        }
    }
    return IS_OK;
}

/* ---- rows ------------------------------------------------------------------------------------- */

#define ROW_COLUMNS "id, name, content_type, width, height, size, sha256, created_at, data, labels, vector"

/* Fills img from row i of a text-format result of ROW_COLUMNS (vector as bytea hex; without it
 * when not asked for). */
static int read_row(pg_store *s, const PGresult *r, int i, bool with_vector, store_image *img) {
    memset(img, 0, sizeof *img);
    img->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    img->name = strdup(PQgetvalue(r, i, 1));
    img->content_type = strdup(PQgetvalue(r, i, 2));
    img->width = atoi(PQgetvalue(r, i, 3));
    img->height = atoi(PQgetvalue(r, i, 4));
    img->size = strtoll(PQgetvalue(r, i, 5), NULL, 10);
    snprintf(img->sha256, sizeof img->sha256, "%s", PQgetvalue(r, i, 6));
    img->created_at = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    img->data = strdup(PQgetvalue(r, i, 8));
    bool labelled = !PQgetisnull(r, i, 9);
    img->labels = labelled ? strdup(PQgetvalue(r, i, 9)) : NULL;
    img->dims = s->dims;
    if (with_vector) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 10), &len);
        if (raw && len == sizeof(float) * (size_t)s->dims && (img->vector = malloc(len))) memcpy(img->vector, raw, len);
        bool bad = raw && len != sizeof(float) * (size_t)s->dims;
        PQfreemem(raw);
        if (bad) {
            store_image_clear(img);
            return IS_ERR_CORRUPT;
        }
    }
    if (!img->name || !img->content_type || !img->data || (labelled && !img->labels) || (with_vector && !img->vector)) {
        store_image_clear(img);
        return IS_ERR_NOMEM;
    }
    return IS_OK;
}

/* Inserts img (id 0: a new one) with its bytes and logs the add, in one transaction. */
static int insert_row(pg_store *s, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err,
                      size_t errlen) {
    if (!img->vector || img->dims != s->dims)
        return is_fail(err, errlen, IS_ERR_INVALID, "vector must have %d dimensions", s->dims);
    int rc;
    PGconn *c = begin(s, err, errlen, &rc);
    if (!c) return rc;
    /* the bytes first: a row may only name bytes that are there (foreign key) */
    const char *bv[2] = {img->sha256, bytes};
    int bl[2] = {0, (int)len}, bf[2] = {0, 1};
    PGresult *r = run(s, c,
                      "INSERT INTO imgsearch.blobs(sha256, refs, bytes) VALUES ($1, 1, $2)"
                      " ON CONFLICT (sha256) DO UPDATE SET refs = imgsearch.blobs.refs + 1",
                      2, bv, bl, bf, 0, PGRES_COMMAND_OK, err, errlen, &rc, "store the image bytes");
    PQclear(r);
    if (rc) return finish(s, c, rc, err, errlen);
    char w[16], h[16], sz[24], ts[24], id[24];
    snprintf(w, sizeof w, "%d", img->width);
    snprintf(h, sizeof h, "%d", img->height);
    snprintf(sz, sizeof sz, "%lld", (long long)img->size);
    snprintf(ts, sizeof ts, "%lld", (long long)img->created_at);
    snprintf(id, sizeof id, "%lld", (long long)img->id);
    const char *vals[11] = {img->name ? img->name : "",
                            img->content_type ? img->content_type : "application/octet-stream",
                            w, h, sz, img->sha256, ts, img->data ? img->data : "{}", (const char *)img->vector,
                            img->labels, id}; /* a NULL value is SQL NULL */
    int lens[11] = {0, 0, 0, 0, 0, 0, 0, 0, (int)(sizeof(float) * (size_t)s->dims), 0, 0};
    int fmts[11] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    r = run(s, c,
            img->id ? "INSERT INTO imgsearch.images(name, content_type, width, height, size, sha256, created_at, data,"
                      " vector, labels, id) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                      " RETURNING id"
                    : "INSERT INTO imgsearch.images(name, content_type, width, height, size, sha256, created_at, data,"
                      " vector, labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            img->id ? 11 : 10, vals, lens, fmts, 0, PGRES_TUPLES_OK, err, errlen, &rc, "add image");
    if (r) img->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (rc == IS_ERR_INTERNAL && strstr(err ? err : "", "duplicate key"))
        rc = is_fail(err, errlen, IS_ERR_INVALID, "id %s is taken", id);
    if (!rc) rc = log_change(s, c, CHANGE_ADD, img->id, seq, err, errlen);
    return finish(s, c, rc, err, errlen);
}

static int pg_add(store *base, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err,
                  size_t errlen) {
    img->created_at = now_ms();
    img->id = 0;
    return insert_row((pg_store *)base, img, bytes, len, seq, err, errlen);
}

static int pg_import(store *base, const store_image *img, const void *bytes, size_t len, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    store_image copy = *img;
    int64_t seq;
    int rc = insert_row(s, &copy, bytes, len, &seq, err, errlen);
    if (rc) return rc;
    /* later adds get larger ids than every imported one */
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    rc = exec_simple(s, c,
                     "SELECT setval(pg_get_serial_sequence('imgsearch.images', 'id'),"
                     " greatest((SELECT max(id) FROM imgsearch.images),"
                     " (SELECT last_value FROM imgsearch.images_id_seq)))",
                     err, errlen, "advance the id sequence");
    conn_put(s, c);
    return rc;
}

static int scalar(pg_store *s, const char *sql, int64_t *out);

static int pg_max_id(store *base, int64_t *id) {
    return scalar((pg_store *)base, "SELECT coalesce(max(id), 0) FROM imgsearch.images", id);
}

static int pg_get_many(store *base, const int64_t *ids, int n, bool with_vector, store_image *rows, int *found,
                       char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    *found = 0;
    char *list = malloc((size_t)n * 21 + 3);
    if (!list) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    size_t at = 0;
    list[at++] = '{';
    for (int i = 0; i < n; i++) at += (size_t)sprintf(list + at, i ? ",%lld" : "%lld", (long long)ids[i]);
    list[at++] = '}';
    list[at] = 0;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) {
        free(list);
        return IS_ERR_UNAVAILABLE;
    }
    const char *vals[1] = {list};
    int rc = IS_OK;
    PGresult *r = run(s, c,
                      with_vector ? "SELECT " ROW_COLUMNS " FROM imgsearch.images WHERE id = ANY($1::bigint[]) ORDER BY id"
                                  : "SELECT id, name, content_type, width, height, size, sha256, created_at, data, labels"
                                    " FROM imgsearch.images WHERE id = ANY($1::bigint[]) ORDER BY id",
                      1, vals, NULL, NULL, 0, PGRES_TUPLES_OK, err, errlen, &rc, "get images");
    conn_put(s, c);
    free(list);
    for (int i = 0; r && !rc && i < PQntuples(r) && i < n; i++) {
        rc = read_row(s, r, i, with_vector, &rows[i]);
        if (rc) rc = is_fail(err, errlen, rc, "cannot read an image row");
        else ++*found;
    }
    PQclear(r);
    if (rc) {
        for (int i = 0; i < *found; i++) store_image_clear(&rows[i]);
        *found = 0;
    }
    return rc;
}

static int pg_get(store *base, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen) {
    int found = 0;
    memset(out, 0, sizeof *out);
    int rc = pg_get_many(base, &id, 1, with_vector, out, &found, err, errlen);
    if (!rc && !found) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    return rc;
}

static int pg_delete(store *base, int64_t id, int64_t *seq, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    int rc;
    PGconn *c = begin(s, err, errlen, &rc);
    if (!c) return rc;
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    const char *vals[1] = {idtext};
    PGresult *r = run(s, c, "DELETE FROM imgsearch.images WHERE id = $1 RETURNING sha256", 1, vals, NULL, NULL, 0,
                      PGRES_TUPLES_OK, err, errlen, &rc, "delete image");
    if (r && PQntuples(r) == 0) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    char sha[BLOB_HEX_LEN + 1] = "";
    if (!rc) snprintf(sha, sizeof sha, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!rc) {
        /* the bytes go with the last row naming them; the row lock orders this against an add of
         * the same bytes on another node */
        const char *sv[1] = {sha};
        r = run(s, c,
                "WITH d AS (DELETE FROM imgsearch.blobs WHERE sha256 = $1 AND refs = 1 RETURNING 1)"
                " UPDATE imgsearch.blobs SET refs = refs - 1 WHERE sha256 = $1 AND NOT EXISTS (SELECT 1 FROM d)",
                1, sv, NULL, NULL, 0, PGRES_COMMAND_OK, err, errlen, &rc, "release the image bytes");
        PQclear(r);
    }
    if (!rc) rc = log_change(s, c, CHANGE_DELETE, id, seq, err, errlen);
    return finish(s, c, rc, err, errlen);
}

static int pg_delete_all(store *base, int64_t *count, int64_t *seq, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    *count = 0;
    int rc;
    PGconn *c = begin(s, err, errlen, &rc);
    if (!c) return rc;
    PGresult *r = run(s, c, "DELETE FROM imgsearch.images", 0, NULL, NULL, NULL, 0, PGRES_COMMAND_OK, err, errlen, &rc,
                      "delete every image");
    if (r) *count = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (!rc) rc = exec_simple(s, c, "DELETE FROM imgsearch.blobs", err, errlen, "delete the image bytes");
    if (!rc) rc = log_change(s, c, CHANGE_CLEAR, 0, seq, err, errlen);
    if (rc) *count = 0;
    return finish(s, c, rc, err, errlen);
}

/* Sets one text column of a row ($1 of sql; $2 the id) and logs a data change, in one transaction. */
static int update_row(pg_store *s, const char *sql, const char *value, int64_t id, int64_t *seq, char *err,
                      size_t errlen, const char *what) {
    int rc;
    PGconn *c = begin(s, err, errlen, &rc);
    if (!c) return rc;
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    const char *vals[2] = {value, idtext};
    PGresult *r = run(s, c, sql, 2, vals, NULL, NULL, 0, PGRES_COMMAND_OK, err, errlen, &rc, what);
    if (r && !strcmp(PQcmdTuples(r), "0"))
        rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    PQclear(r);
    if (!rc) rc = log_change(s, c, CHANGE_DATA, id, seq, err, errlen);
    return finish(s, c, rc, err, errlen);
}

static int pg_set_data(store *base, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen) {
    return update_row((pg_store *)base, "UPDATE imgsearch.images SET data = $1 WHERE id = $2", json, id, seq, err,
                      errlen, "set data");
}

static int pg_set_labels(store *base, int64_t id, const char *labels, int64_t *seq, char *err, size_t errlen) {
    return update_row((pg_store *)base, "UPDATE imgsearch.images SET labels = $1 WHERE id = $2", labels, id, seq, err,
                      errlen, "set labels");
}

static int pg_unlabelled(store *base, int64_t after, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n,
                         char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    *n = 0;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    char aftertext[24], maxtext[16];
    snprintf(aftertext, sizeof aftertext, "%lld", (long long)after);
    snprintf(maxtext, sizeof maxtext, "%d", max);
    const char *vals[2] = {aftertext, maxtext};
    int rc = IS_OK;
    PGresult *r = run(s, c, "SELECT id, sha256 FROM imgsearch.images WHERE labels IS NULL AND id > $1 ORDER BY id LIMIT $2",
                      2, vals, NULL, NULL, 0, PGRES_TUPLES_OK, err, errlen, &rc, "list images without labels");
    for (int i = 0; r && i < PQntuples(r) && i < max; i++) {
        ids[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(shas[i], BLOB_HEX_LEN + 1, "%s", PQgetvalue(r, i, 1));
        *n = i + 1;
    }
    PQclear(r);
    conn_put(s, c);
    return rc;
}

static int scalar(pg_store *s, const char *sql, int64_t *out) {
    PGconn *c = conn_get(s, NULL, 0);
    if (!c) return IS_ERR_UNAVAILABLE;
    int rc = IS_OK;
    PGresult *r = run(s, c, sql, 0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, NULL, 0, &rc, "read");
    if (r) *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    conn_put(s, c);
    return rc;
}

static int pg_count(store *base, int64_t *count) {
    return scalar((pg_store *)base, "SELECT count(*) FROM imgsearch.images", count);
}

static int pg_last_seq(store *base, int64_t *seq) {
    /* the highest committed change: every smaller one has committed too (file comment) */
    return scalar((pg_store *)base, "SELECT coalesce(max(seq), 0) FROM imgsearch.changes", seq);
}

static int pg_changes_after(store *base, int64_t seq, int (*fn)(int64_t seq, change_op op, int64_t id, void *ctx),
                            void *ctx, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    char seqtext[24];
    snprintf(seqtext, sizeof seqtext, "%lld", (long long)seq);
    const char *vals[1] = {seqtext};
    int rc = IS_OK;
    PGresult *r = run(s, c,
                      "SELECT seq, op, coalesce(image_id, 0) FROM imgsearch.changes WHERE seq > $1 ORDER BY seq",
                      1, vals, NULL, NULL, 0, PGRES_TUPLES_OK, err, errlen, &rc, "read changes");
    conn_put(s, c); /* the result is whole in memory: fn may call back into the store */
    for (int i = 0; r && !rc && i < PQntuples(r); i++)
        rc = fn(strtoll(PQgetvalue(r, i, 0), NULL, 10), (change_op)PQgetvalue(r, i, 1)[0],
                strtoll(PQgetvalue(r, i, 2), NULL, 10), ctx);
    PQclear(r);
    return rc;
}

/* Streams the rows of one statement (single-row mode) to fn. */
static int stream_rows(pg_store *s, PGconn *c, bool with_vector, int (*fn)(const store_image *img, void *ctx),
                       void *ctx, char *err, size_t errlen) {
    const char *sql = with_vector ? "SELECT " ROW_COLUMNS " FROM imgsearch.images ORDER BY id"
                                  : "SELECT id, name, content_type, width, height, size, sha256, created_at, data, labels"
                                    " FROM imgsearch.images ORDER BY id";
    if (!PQsendQuery(c, sql) || !PQsetSingleRowMode(c)) return pg_fail(s, c, NULL, err, errlen, "read images");
    int rc = IS_OK;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !rc) {
            store_image img;
            rc = read_row(s, r, 0, with_vector, &img);
            if (rc) rc = is_fail(err, errlen, rc, "cannot read an image row");
            else {
                rc = fn(&img, ctx);
                store_image_clear(&img);
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !rc) {
            rc = pg_fail(s, c, r, err, errlen, "read images");
        }
        PQclear(r); /* results after an error are drained, so the connection stays usable */
    }
    return rc;
}

static int pg_each(store *base, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx, char *err,
                   size_t errlen) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    int rc = stream_rows(s, c, with_vector, fn, ctx, err, errlen);
    conn_put(s, c);
    return rc;
}

static int pg_each_snapshot(store *base, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
                            int64_t *seq, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    /* one snapshot: the sequence and the rows are the same moment of the database */
    int rc = exec_simple(s, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen, "begin");
    PGresult *r = rc ? NULL
                     : run(s, c, "SELECT coalesce(max(seq), 0) FROM imgsearch.changes", 0, NULL, NULL, NULL, 0,
                           PGRES_TUPLES_OK, err, errlen, &rc, "read the last change");
    if (r) *seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!rc) rc = stream_rows(s, c, with_vector, fn, ctx, err, errlen);
    if (PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
    conn_put(s, c);
    return rc;
}

/* ---- image bytes ------------------------------------------------------------------------------ */

static int pg_bytes_prepare(store *base, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err,
                            size_t errlen) {
    (void)base;
    (void)err;
    (void)errlen;
    blobs_hash(bytes, len, hex); /* the bytes travel with the row (pg_add), in its transaction */
    return IS_OK;
}

static void pg_bytes_discard(store *base, const char *hex) {
    (void)base;
    (void)hex; /* nothing was stored ahead of the row */
}

static int pg_bytes_read(store *base, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    *out = NULL;
    *len = 0;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    const char *vals[1] = {hex};
    int rc = IS_OK;
    PGresult *r = run(s, c, "SELECT bytes FROM imgsearch.blobs WHERE sha256 = $1", 1, vals, NULL, NULL, 1,
                      PGRES_TUPLES_OK, err, errlen, &rc, "read image bytes");
    if (r && PQntuples(r) == 0) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no stored bytes %.16s…", hex);
    else if (r) {
        *len = (size_t)PQgetlength(r, 0, 0);
        if (!(*out = malloc(*len ? *len : 1))) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        else memcpy(*out, PQgetvalue(r, 0, 0), *len);
    }
    PQclear(r);
    conn_put(s, c);
    return rc;
}

static int pg_sweep(store *base, int *removed, char *err, size_t errlen) {
    (void)base;
    (void)err;
    (void)errlen;
    *removed = 0; /* bytes and rows commit together: nothing can be left unnamed */
    return IS_OK;
}

/* ---- embedding -------------------------------------------------------------------------------- */

static int pg_identity(store *base, char *out, size_t outlen) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, NULL, 0);
    if (!c) return IS_ERR_UNAVAILABLE;
    int rc = meta_get(s, c, "store_id", out, outlen);
    conn_put(s, c);
    return rc;
}

static int pg_bind_embedding(store *base, const char *model, int dims, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    int rc = check_meta(s, c, model, dims, err, errlen);
    if (!rc) s->dims = dims;
    conn_put(s, c);
    return rc;
}

static int pg_embedding(store *base, char *model, size_t modellen, int *dims) {
    pg_store *s = (pg_store *)base;
    PGconn *c = conn_get(s, NULL, 0);
    if (!c) return IS_ERR_UNAVAILABLE;
    char d[32] = "";
    int rc = meta_get(s, c, "model", model, modellen);
    if (!rc) rc = meta_get(s, c, "dims", d, sizeof d);
    conn_put(s, c);
    *dims = rc ? 0 : atoi(d);
    return rc;
}

static int no_reembed(char *err, size_t errlen) {
    return is_fail(err, errlen, IS_ERR_INVALID,
                   "imgsearch reembed works on an embedded data directory; for PostgreSQL, `imgsearch migrate` the "
                   "database to a data directory, reembed it there and migrate it back");
}

static int pg_reembed_begin(store *base, const char *model, int dims, int64_t *done, int64_t *total, char *err,
                            size_t errlen) {
    (void)base, (void)model, (void)dims, (void)done, (void)total;
    return no_reembed(err, errlen);
}

static int pg_reembed_pending(store *base, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                              size_t errlen) {
    (void)base, (void)ids, (void)shas, (void)max;
    *n = 0;
    return no_reembed(err, errlen);
}

static int pg_reembed_put(store *base, const int64_t *ids, const float *vectors, int n, char *err, size_t errlen) {
    (void)base, (void)ids, (void)vectors, (void)n;
    return no_reembed(err, errlen);
}

static int pg_reembed_swap(store *base, const char *model, int dims, char *err, size_t errlen) {
    (void)base, (void)model, (void)dims;
    return no_reembed(err, errlen);
}

/* ---- checking and repair: `imgsearch check` works on an embedded data directory ---------------- */

/* PostgreSQL guards its own pages (checksums, WAL); amcheck is an extension not assumed here. */
static int pg_integrity_check(store *base, void (*fn)(const char *line, void *ctx), void *ctx, char *err,
                              size_t errlen) {
    (void)base, (void)fn, (void)ctx, (void)err, (void)errlen;
    return IS_OK;
}

static int no_check(char *err, size_t errlen) {
    return is_fail(err, errlen, IS_ERR_INVALID,
                   "imgsearch check works on an embedded data directory; for PostgreSQL, `imgsearch migrate` the "
                   "database to a data directory and check that");
}

static int pg_check_each(store *base, int (*fn)(const store_check_row *row, void *ctx), void *ctx, char *err,
                         size_t errlen) {
    (void)base, (void)fn, (void)ctx;
    return no_check(err, errlen);
}

static int pg_bytes_verify(store *base, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen) {
    (void)base, (void)hex, (void)actual;
    return no_check(err, errlen);
}

static int pg_bytes_each(store *base, int (*fn)(const char *hex, bool named, void *ctx), void *ctx, char *err,
                         size_t errlen) {
    (void)base, (void)fn, (void)ctx;
    return no_check(err, errlen);
}

static int pg_bytes_remove_unnamed(store *base, const char *hex, char *err, size_t errlen) {
    (void)base, (void)hex;
    return no_check(err, errlen); /* bytes and rows commit together: none can be unnamed */
}

/* A vector changed without a change in the log would never reach the other nodes' indexes. */
static int pg_set_vector(store *base, int64_t id, const float *vector, int dims, char *err, size_t errlen) {
    (void)base, (void)id, (void)vector, (void)dims;
    return no_check(err, errlen);
}

/* ---- open and close --------------------------------------------------------------------------- */

/* ---- API keys ---------------------------------------------------------------------------------- */

/* One statement on a pooled connection, outside any explicit transaction; *r gets its result. */
static int key_statement(pg_store *s, const char *sql, int n, const char *const *vals, ExecStatusType want,
                         PGresult **r, char *err, size_t errlen, const char *what) {
    PGconn *c = conn_get(s, err, errlen);
    if (!c) return IS_ERR_UNAVAILABLE;
    int rc = IS_OK;
    *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(*r) != want) {
        const char *state = PQresultErrorField(*r, PG_DIAG_SQLSTATE);
        rc = state && !strcmp(state, "23505") /* unique_violation */
                 ? is_fail(err, errlen, IS_ERR_INVALID, "a key named '%s' exists", vals[0])
                 : pg_fail(s, c, *r, err, errlen, what);
        PQclear(*r);
        *r = NULL;
    }
    conn_put(s, c);
    return rc;
}

static int pg_key_add(store *base, const store_key *key, char *err, size_t errlen) {
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)key->created_at);
    const char *vals[4] = {key->name, key->scope, key->digest, when};
    PGresult *r = NULL;
    int rc = key_statement((pg_store *)base,
                           "INSERT INTO imgsearch.api_keys(name, scope, digest, created_at) VALUES ($1, $2, $3, $4)", 4,
                           vals, PGRES_COMMAND_OK, &r, err, errlen, "add key");
    PQclear(r);
    return rc;
}

static int pg_key_list(store *base, store_key **keys, int *n, char *err, size_t errlen) {
    PGresult *r = NULL;
    int rc = key_statement((pg_store *)base,
                           "SELECT name, scope, digest, created_at, last_used FROM imgsearch.api_keys ORDER BY name", 0,
                           NULL, PGRES_TUPLES_OK, &r, err, errlen, "list keys");
    if (rc) return rc;
    int rows = PQntuples(r);
    if (rows && !(*keys = calloc((size_t)rows, sizeof **keys))) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < rows; i++) {
        store_key *k = &(*keys)[i];
        snprintf(k->name, sizeof k->name, "%s", PQgetvalue(r, i, 0));
        snprintf(k->scope, sizeof k->scope, "%s", PQgetvalue(r, i, 1));
        snprintf(k->digest, sizeof k->digest, "%s", PQgetvalue(r, i, 2));
        k->created_at = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        k->last_used = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    }
    if (!rc) *n = rows;
    PQclear(r);
    return rc;
}

static int pg_key_revoke(store *base, const char *name, char *err, size_t errlen) {
    const char *vals[1] = {name};
    PGresult *r = NULL;
    int rc = key_statement((pg_store *)base, "DELETE FROM imgsearch.api_keys WHERE name = $1", 1, vals,
                           PGRES_COMMAND_OK, &r, err, errlen, "revoke key");
    if (!rc && !strcmp(PQcmdTuples(r), "0")) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no key is named '%s'", name);
    PQclear(r);
    return rc;
}

static int pg_key_touch(store *base, const char *name, int64_t when, char *err, size_t errlen) {
    char w[24];
    snprintf(w, sizeof w, "%lld", (long long)when);
    const char *vals[2] = {name, w};
    PGresult *r = NULL;
    int rc = key_statement((pg_store *)base,
                           "UPDATE imgsearch.api_keys SET last_used = $2 WHERE name = $1 AND last_used < $2", 2, vals,
                           PGRES_COMMAND_OK, &r, err, errlen, "record a key's use");
    PQclear(r);
    return rc;
}

static void pg_close(store *base) {
    pg_store *s = (pg_store *)base;
    if (!s) return;
    for (int i = 0; i < s->nidle; i++) PQfinish(s->idle[i]);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0) close(s->wake[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->freed);
    free(s->url);
    free(s);
}

/* ---- content hashes ---------------------------------------------------------------------------- */

static int cmp_text(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* One query for all n names: a text[] of the well-formed ones, matched through images_sha256. */
static int pg_hashes_stored(store *base, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    pg_store *s = (pg_store *)base;
    char *list = malloc((size_t)n * (BLOB_HEX_LEN + 1) + 3);
    if (!list) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    size_t at = 0;
    list[at++] = '{';
    for (int i = 0; i < n; i++) {
        stored[i] = false;
        size_t len = strlen(hexes[i]);
        if (len != BLOB_HEX_LEN || strspn(hexes[i], "0123456789abcdef") != len) continue; /* never stored */
        if (at > 1) list[at++] = ',';
        memcpy(list + at, hexes[i], len);
        at += len;
    }
    list[at++] = '}';
    list[at] = 0;
    if (at == 2) {
        free(list);
        return IS_OK;
    }
    PGconn *c = conn_get(s, err, errlen);
    if (!c) {
        free(list);
        return IS_ERR_UNAVAILABLE;
    }
    const char *vals[1] = {list};
    int rc = IS_OK;
    PGresult *r = run(s, c, "SELECT DISTINCT sha256 FROM imgsearch.images WHERE sha256 = ANY($1::text[])", 1, vals,
                      NULL, NULL, 0, PGRES_TUPLES_OK, err, errlen, &rc, "look up content hashes");
    conn_put(s, c);
    free(list);
    if (!r) return rc;
    int found = PQntuples(r);
    const char **have = malloc(sizeof *have * (size_t)(found ? found : 1));
    if (!have) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (int i = 0; have && i < found; i++) have[i] = PQgetvalue(r, i, 0);
    if (have) qsort(have, (size_t)found, sizeof *have, cmp_text);
    for (int i = 0; have && i < n; i++)
        stored[i] = bsearch(&hexes[i], have, (size_t)found, sizeof *have, cmp_text) != NULL;
    free(have);
    PQclear(r);
    return rc;
}

static const store_ops postgres_ops = {
    .name = "postgresql",
    .shared = true,
    .close = pg_close,
    .identity = pg_identity,
    .bytes_prepare = pg_bytes_prepare,
    .bytes_discard = pg_bytes_discard,
    .bytes_read = pg_bytes_read,
    .sweep = pg_sweep,
    .add = pg_add,
    .import = pg_import,
    .max_id = pg_max_id,
    .get = pg_get,
    .get_many = pg_get_many,
    .delete = pg_delete,
    .delete_all = pg_delete_all,
    .set_data = pg_set_data,
    .set_labels = pg_set_labels,
    .unlabelled = pg_unlabelled,
    .count = pg_count,
    .last_seq = pg_last_seq,
    .changes_after = pg_changes_after,
    .each = pg_each,
    .each_snapshot = pg_each_snapshot,
    .bind_embedding = pg_bind_embedding,
    .embedding = pg_embedding,
    .reembed_begin = pg_reembed_begin,
    .reembed_pending = pg_reembed_pending,
    .reembed_put = pg_reembed_put,
    .reembed_swap = pg_reembed_swap,
    .key_add = pg_key_add,
    .key_list = pg_key_list,
    .key_revoke = pg_key_revoke,
    .key_touch = pg_key_touch,
    .wait_changes = pg_wait_changes,
    .stop_waiting = pg_stop_waiting,
    .wake = pg_wake,
    .integrity_check = pg_integrity_check,
    .check_each = pg_check_each,
    .bytes_verify = pg_bytes_verify,
    .bytes_each = pg_bytes_each,
    .bytes_remove_unnamed = pg_bytes_remove_unnamed,
    .set_vector = pg_set_vector,
    .hashes_stored = pg_hashes_stored,
};

int store_postgres_open(const char *url, const char *model, int dims, store **out, char *err, size_t errlen) {
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    s->base.ops = &postgres_ops;
    s->wake[0] = s->wake[1] = -1;
    s->dims = dims;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->freed, NULL);
    if (pipe(s->wake)) s->wake[0] = s->wake[1] = -1; /* then a stop waits one poll */
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0) {
            fcntl(s->wake[i], F_SETFL, O_NONBLOCK);
            fcntl(s->wake[i], F_SETFD, FD_CLOEXEC);
        }
    const char *delay = getenv("IMGSEARCH_FAULT_COMMIT_DELAY_MS");
    s->commit_delay_ms = delay ? atoi(delay) : 0;
    if (!(s->url = strdup(url))) {
        pg_close(&s->base);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    char why[512];
    PGconn *c = conn_get(s, why, sizeof why);
    int rc = c ? migrate(s, c, err, errlen) : is_fail(err, errlen, IS_ERR_UNAVAILABLE, "%s", why);
    if (!rc && model) rc = check_meta(s, c, model, dims, err, errlen);
    if (c) conn_put(s, c);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return IS_OK;
}

/* ---- following the change log (store.h: store_wait_changes) ----------------------------------- */

/* The listening connection belongs to the one thread that calls store_wait_changes. */
static __thread PGconn *listener;
static __thread pg_store *listener_owner;

static void drop_listener(void) {
    PQfinish(listener);
    listener = NULL;
    listener_owner = NULL;
}

static int pg_wait_changes(store *base, int timeout_ms) {
    pg_store *s = (pg_store *)base;
    if (listener && listener_owner != s) drop_listener();
    if (!listener) {
        listener = connect_to(s->url);
        PGresult *r = PQstatus(listener) == CONNECTION_OK ? PQexec(listener, "LISTEN " CHANGE_CHANNEL) : NULL;
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            drop_listener();
            /* the caller polls anyway: nothing is missed; a wake-up still ends the wait */
            fd_set in;
            FD_ZERO(&in);
            if (s->wake[0] >= 0) FD_SET(s->wake[0], &in);
            struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
            select(s->wake[0] + 1, &in, NULL, NULL, &tv);
            return IS_ERR_UNAVAILABLE;
        }
        listener_owner = s;
        return IS_OK; /* (re)connected: whatever was notified meanwhile is for the caller to read */
    }
    int fd = PQsocket(listener);
    fd_set in;
    FD_ZERO(&in);
    FD_SET(fd, &in);
    if (s->wake[0] >= 0) FD_SET(s->wake[0], &in);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int top = fd > s->wake[0] ? fd : s->wake[0];
    if (select(top + 1, &in, NULL, NULL, &tv) < 0) return IS_OK;
    if (s->wake[0] >= 0 && FD_ISSET(s->wake[0], &in)) {
        char drain[64];
        while (read(s->wake[0], drain, sizeof drain) > 0) continue;
    }
    if (!PQconsumeInput(listener)) {
        drop_listener(); /* reconnect on the next call */
        return IS_ERR_UNAVAILABLE;
    }
    PGnotify *n;
    while ((n = PQnotifies(listener))) PQfreemem(n);
    return IS_OK;
}

static void pg_stop_waiting(store *base) {
    if (listener_owner == (pg_store *)base) drop_listener();
}

static void pg_wake(store *base) {
    pg_store *s = (pg_store *)base;
    if (s->wake[1] >= 0 && write(s->wake[1], "w", 1) < 0) { /* full: a wake-up is pending anyway */
    }
}
