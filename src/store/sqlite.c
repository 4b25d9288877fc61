/* The embedded store on SQLite: one implementation of store.h (store_impl.h), opened by
 * store_sqlite_open. The database is <dir>/imgsearch.db, the image bytes are files under
 * <dir>/blobs (blobs.h). A blob file is written before its row commits and unlinked after the last
 * row naming it is gone, both under the store's mutex, so no add can see a blob that a delete is
 * about to unlink. See store.h for the contract. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/blobs.h"
#include "store/store.h"
#include "store/store_impl.h"
#include "util/status.h"

typedef struct {
    store base; /* first: a sqlite_store is a store (store_impl.h) */
    sqlite3 *db;
    blobs *files;         /* NULL on the private connection of sq_each_snapshot */
    pthread_mutex_t lock; /* one caller at a time on db, and blob unlinks against adds */
    int dims;
    char *path; /* for the second connection of sq_each_snapshot */
    char *dir;  /* the data directory, for messages about damage (borrowed by sq_each_snapshot) */
} sqlite_store;

static const store_ops sqlite_ops;

/* Schema versions, applied in order inside one transaction each; PRAGMA user_version records
 * how many have been applied. Never edit a released step: add a new one. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    /* AUTOINCREMENT: an id, once deleted, is never handed out again */
    "CREATE TABLE images("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  content_type TEXT NOT NULL,"
    "  width INTEGER NOT NULL, height INTEGER NOT NULL, size INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  data TEXT NOT NULL DEFAULT '{}',"
    "  vector BLOB NOT NULL);"
    "CREATE INDEX images_sha256 ON images(sha256);"
    "CREATE TABLE changes("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  op TEXT NOT NULL CHECK (op IN ('a', 'd', 'm', 'c')),"
    "  image_id INTEGER);",
    /* 2: vectors recomputed by `imgsearch reembed`, kept beside the live ones until the swap */
    "CREATE TABLE reembed(id INTEGER PRIMARY KEY, vector BLOB NOT NULL);",
    /* 3: API keys, by the SHA-256 of the key (never the key) */
    "CREATE TABLE api_keys("
    "  name TEXT PRIMARY KEY,"
    "  scope TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),"
    "  digest TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  last_used INTEGER NOT NULL DEFAULT 0);",
    /* 4: each image's most probable classes (index/labels.h); NULL until computed */
    "ALTER TABLE images ADD COLUMN labels TEXT;",
};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))

/* The status of the connection's last failure. SQLite reports a full disk as SQLITE_FULL, and
 * sometimes as an I/O error whose extended code carries the errno (ENOSPC while writing). */
static int status_of(sqlite_store *s) {
    int code = sqlite3_errcode(s->db);
    if (code == SQLITE_FULL || (code == SQLITE_IOERR && (sqlite3_system_errno(s->db) == ENOSPC ||
                                                         sqlite3_system_errno(s->db) == EDQUOT)))
        return IS_ERR_NO_SPACE;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return IS_ERR_CORRUPT; /* damaged(): says so */
    return code == SQLITE_IOERR || code == SQLITE_CANTOPEN ? IS_ERR_IO
         : code == SQLITE_NOMEM ? IS_ERR_NOMEM : IS_ERR_INTERNAL;
}

/* A damaged database file (SQLite found garbage where its pages should be): the message names the
 * file and what to run (store.h, STORE_CHECK_HINT). */
static int damaged(sqlite_store *s, char *err, size_t errlen, const char *what, const char *why) {
    return is_fail(err, errlen, IS_ERR_CORRUPT, "%s is damaged (%s%s%s)" STORE_CHECK_HINT "%s`",
                   s->path ? s->path : "the database", what ? what : "", what ? ": " : "", why,
                   s->dir ? s->dir : "DATA_DIR");
}

static int db_fail(sqlite_store *s, char *err, size_t errlen, const char *what) {
    int status = status_of(s);
    if (status == IS_ERR_CORRUPT) return damaged(s, err, errlen, what, sqlite3_errmsg(s->db));
    return is_fail(err, errlen, status, "%s: %s", what, sqlite3_errmsg(s->db));
}

static int exec(sqlite_store *s, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return IS_OK;
    int status = status_of(s);
    int rc = status == IS_ERR_CORRUPT ? damaged(s, err, errlen, NULL, msg ? msg : sqlite3_errmsg(s->db))
                                      : is_fail(err, errlen, status, "%s", msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return rc;
}

static int migrate(sqlite_store *s, char *err, size_t errlen) {
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, "read schema version");
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > N_MIGRATIONS)
        return is_fail(err, errlen, IS_ERR_INVALID,
                       "the database has schema version %d, newer than this imgsearch (%d)", version, N_MIGRATIONS);
    for (int v = version; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v + 1);
        int rc = exec(s, "BEGIN IMMEDIATE;", err, errlen);
        if (!rc) rc = exec(s, MIGRATIONS[v], err, errlen);
        if (!rc) rc = exec(s, bump, err, errlen);
        if (!rc) rc = exec(s, "COMMIT;", err, errlen);
        if (rc) {
            exec(s, "ROLLBACK;", NULL, 0);
            return rc;
        }
    }
    return IS_OK;
}

/* The first open records model and dims; later opens must agree. */
static int check_meta(sqlite_store *s, const char *model, int dims, char *err, size_t errlen) {
    char dims_text[16];
    snprintf(dims_text, sizeof dims_text, "%d", dims);
    const char *keys[2] = {"model", "dims"}, *want[2] = {model, dims_text};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK)
            return db_fail(s, err, errlen, "read meta");
        sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
        int found = sqlite3_step(st) == SQLITE_ROW;
        int same = found && !strcmp((const char *)sqlite3_column_text(st, 0), want[i]);
        char have[128];
        snprintf(have, sizeof have, "%s", found ? (const char *)sqlite3_column_text(st, 0) : "");
        sqlite3_finalize(st);
            if (found && !same)
            return is_fail(err, errlen, IS_ERR_INVALID,
                           "the data directory holds vectors of %s %s, not %s: recompute them with "
                           "`imgsearch reembed DATA_DIR` (same --model), use that model, or a new data directory",
                           keys[i], have, want[i]);
        if (!found) {
            if (sqlite3_prepare_v2(s->db, "INSERT INTO meta(key, value) VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
                return db_fail(s, err, errlen, "write meta");
            sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, want[i], -1, SQLITE_STATIC);
            int ok = sqlite3_step(st) == SQLITE_DONE;
            sqlite3_finalize(st);
            if (!ok) return db_fail(s, err, errlen, "write meta");
        }
    }
    return IS_OK;
}

static void sq_close(store *base) {
    sqlite_store *s = (sqlite_store *)base;
    if (!s) return;
    sqlite3_close(s->db);
    blobs_close(s->files);
    free(s->path);
    free(s->dir);
    pthread_mutex_destroy(&s->lock);
    free(s);
}


/* Appends a change inside the caller's transaction. */
static int log_change(sqlite_store *s, change_op op, int64_t id, int64_t *seq, char *err, size_t errlen) {
    sqlite3_stmt *st;
    char opname[2] = {(char)op, 0};
    if (sqlite3_prepare_v2(s->db, "INSERT INTO changes(op, image_id) VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, "log change");
    sqlite3_bind_text(st, 1, opname, 1, SQLITE_TRANSIENT);
    if (op == CHANGE_CLEAR) sqlite3_bind_null(st, 2);
    else sqlite3_bind_int64(st, 2, id);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) return db_fail(s, err, errlen, "log change");
    *seq = sqlite3_last_insert_rowid(s->db);
    return IS_OK;
}

static int begin(sqlite_store *s, char *err, size_t errlen) {
    pthread_mutex_lock(&s->lock);
    int rc = exec(s, "BEGIN IMMEDIATE;", err, errlen);
    if (rc) pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Commits when rc is IS_OK, rolls back otherwise; returns the final status. */
static int finish(sqlite_store *s, int rc, char *err, size_t errlen) {
    if (!rc) rc = exec(s, "COMMIT;", err, errlen);
    if (rc) exec(s, "ROLLBACK;", NULL, 0);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Inserts img (id 0: a new one) with its bytes and logs the add, in one transaction. */
static int insert_row(sqlite_store *s, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err,
                      size_t errlen) {
    if (!img->vector || img->dims != s->dims)
        return is_fail(err, errlen, IS_ERR_INVALID, "vector must have %d dimensions", s->dims);
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    /* A delete of other rows with the same bytes may have unlinked the prepared blob since; this
     * puts it back (one stat when it is there). A crash before the row commits leaves an orphan
     * blob, which store_sweep removes. */
    rc = blobs_store(s->files, bytes, len, img->sha256, err, errlen);
    if (rc) return finish(s, rc, err, errlen);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO images(name, content_type, width, height, size, sha256, created_at, data, vector,"
                           " id, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "add image"), err, errlen);
    sqlite3_bind_text(st, 1, img->name ? img->name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, img->content_type ? img->content_type : "application/octet-stream", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, img->width);
    sqlite3_bind_int(st, 4, img->height);
    sqlite3_bind_int64(st, 5, img->size);
    sqlite3_bind_text(st, 6, img->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, img->created_at);
    sqlite3_bind_text(st, 8, img->data ? img->data : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 9, img->vector, (int)(sizeof(float) * (size_t)s->dims), SQLITE_STATIC);
    if (img->id) sqlite3_bind_int64(st, 10, img->id);
    else sqlite3_bind_null(st, 10);
    if (img->labels) sqlite3_bind_text(st, 11, img->labels, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 11);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE)
        return finish(s,
                      sqlite3_errcode(s->db) == SQLITE_CONSTRAINT
                          ? is_fail(err, errlen, IS_ERR_INVALID, "id %lld is taken", (long long)img->id)
                          : db_fail(s, err, errlen, "add image"),
                      err, errlen);
    img->id = sqlite3_last_insert_rowid(s->db);
    return finish(s, log_change(s, CHANGE_ADD, img->id, seq, err, errlen), err, errlen);
}

static int sq_add(store *base, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err,
                  size_t errlen) {
    img->created_at = now_ms();
    img->id = 0;
    return insert_row((sqlite_store *)base, img, bytes, len, seq, err, errlen);
}

static int sq_import(store *base, const store_image *img, const void *bytes, size_t len, char *err, size_t errlen) {
    store_image copy = *img;
    int64_t seq;
    return insert_row((sqlite_store *)base, &copy, bytes, len, &seq, err, errlen);
}

static int scalar(sqlite_store *s, const char *sql, const char *arg, int64_t *out);

static int sq_max_id(store *base, int64_t *id) {
    return scalar((sqlite_store *)base, "SELECT coalesce(max(id), 0) FROM images", NULL, id);
}

static char *column_dup(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    return strdup(t ? (const char *)t : "");
}

/* Fills img from a row of SELECT ROW_COLUMNS (the vector only when asked for). */
static int read_row(sqlite_store *s, sqlite3_stmt *st, bool with_vector, store_image *img) {
    memset(img, 0, sizeof *img);
    img->id = sqlite3_column_int64(st, 0);
    img->name = column_dup(st, 1);
    img->content_type = column_dup(st, 2);
    img->width = sqlite3_column_int(st, 3);
    img->height = sqlite3_column_int(st, 4);
    img->size = sqlite3_column_int64(st, 5);
    snprintf(img->sha256, sizeof img->sha256, "%s", (const char *)sqlite3_column_text(st, 6));
    img->created_at = sqlite3_column_int64(st, 7);
    img->data = column_dup(st, 8);
    bool labelled = sqlite3_column_type(st, 9) != SQLITE_NULL;
    img->labels = labelled ? column_dup(st, 9) : NULL;
    img->dims = s->dims;
    if (with_vector) {
        size_t bytes = sizeof(float) * (size_t)s->dims;
        img->vector = malloc(bytes);
        if (img->vector && (size_t)sqlite3_column_bytes(st, 10) == bytes)
            memcpy(img->vector, sqlite3_column_blob(st, 10), bytes);
        else if (img->vector) {
            store_image_clear(img);
            return IS_ERR_INTERNAL;
        }
    }
    if (!img->name || !img->content_type || !img->data || (labelled && !img->labels) || (with_vector && !img->vector)) {
        store_image_clear(img);
        return IS_ERR_NOMEM;
    }
    return IS_OK;
}

#define ROW_COLUMNS "id, name, content_type, width, height, size, sha256, created_at, data, labels, vector"

static int sq_get(store *base, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT " ROW_COLUMNS " FROM images WHERE id = ?", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "get image");
    } else {
        sqlite3_bind_int64(st, 1, id);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) rc = read_row(s, st, with_vector, out);
        else if (step == SQLITE_DONE) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
        else rc = db_fail(s, err, errlen, "get image");
        if (rc == IS_ERR_NOMEM || rc == IS_ERR_INTERNAL)
            rc = is_fail(err, errlen, rc, "cannot read image %lld", (long long)id);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int blob_used_locked(sqlite_store *s, const char *sha, bool *used) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM images WHERE sha256 = ? LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        return IS_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return IS_ERR_INTERNAL;
    *used = step == SQLITE_ROW;
    return IS_OK;
}

static int sq_delete(store *base, int64_t id, int64_t *seq, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    char sha[BLOB_HEX_LEN + 1] = "";
    bool in_use = true;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM images WHERE id = ? RETURNING sha256", -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "delete image"), err, errlen);
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 0));
    while (step == SQLITE_ROW) step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return finish(s, db_fail(s, err, errlen, "delete image"), err, errlen);
    if (sqlite3_changes(s->db) == 0)
        return finish(s, is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id), err, errlen);
    rc = blob_used_locked(s, sha, &in_use);
    if (rc) rc = db_fail(s, err, errlen, "check blob use");
    if (!rc) rc = log_change(s, CHANGE_DELETE, id, seq, err, errlen);
    if (!rc) rc = exec(s, "COMMIT;", err, errlen);
    if (rc) exec(s, "ROLLBACK;", NULL, 0);
    /* still under the mutex: no add of the same bytes runs between the check and the unlink */
    else if (!in_use) blobs_unlink(s->files, sha, NULL, 0);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int unlink_blob(const char *hex, void *ctx) {
    blobs_unlink(ctx, hex, NULL, 0);
    return 0;
}

static int sq_delete_all(store *base, int64_t *count, int64_t *seq, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    rc = exec(s, "DELETE FROM images;", err, errlen);
    *count = rc ? 0 : sqlite3_changes64(s->db);
    if (!rc) rc = log_change(s, CHANGE_CLEAR, 0, seq, err, errlen);
    if (!rc) rc = exec(s, "COMMIT;", err, errlen);
    if (rc) exec(s, "ROLLBACK;", NULL, 0);
    else blobs_each(s->files, unlink_blob, s->files);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Sets one text column of a row (the first ? of sql; the second is the id) and logs a data change,
 * in one transaction. */
static int update_row(sqlite_store *s, const char *sql, const char *value, int64_t id, int64_t *seq, char *err,
                      size_t errlen, const char *what) {
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, what), err, errlen);
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) return finish(s, db_fail(s, err, errlen, what), err, errlen);
    if (sqlite3_changes(s->db) == 0)
        return finish(s, is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id), err, errlen);
    return finish(s, log_change(s, CHANGE_DATA, id, seq, err, errlen), err, errlen);
}

static int sq_set_data(store *base, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen) {
    return update_row((sqlite_store *)base, "UPDATE images SET data = ? WHERE id = ?", json, id, seq, err, errlen,
                      "set data");
}

static int sq_set_labels(store *base, int64_t id, const char *labels, int64_t *seq, char *err, size_t errlen) {
    return update_row((sqlite_store *)base, "UPDATE images SET labels = ? WHERE id = ?", labels, id, seq, err, errlen,
                      "set labels");
}

static int sq_unlabelled(store *base, int64_t after, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n,
                         char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT id, sha256 FROM images WHERE labels IS NULL AND id > ? ORDER BY id LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        rc = db_fail(s, err, errlen, "list images without labels");
    if (!rc) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, max);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
            ids[*n] = sqlite3_column_int64(st, 0);
            snprintf(shas[*n], BLOB_HEX_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 1));
            (*n)++;
        }
        if (step != SQLITE_DONE && step != SQLITE_ROW) rc = db_fail(s, err, errlen, "list images without labels");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int scalar(sqlite_store *s, const char *sql, const char *arg, int64_t *out) {
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_ERR_INTERNAL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW || step == SQLITE_DONE) {
            *out = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
            rc = IS_OK;
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_count(store *base, int64_t *count) {
    sqlite_store *s = (sqlite_store *)base; return scalar(s, "SELECT count(*) FROM images", NULL, count); }

static int sq_last_seq(store *base, int64_t *seq) {
    sqlite_store *s = (sqlite_store *)base;
    /* sqlite_sequence keeps the highest seq even after old changes are pruned */
    return scalar(s, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)", NULL, seq);
}

static int sq_bytes_prepare(store *base, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err,
                            size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    return blobs_put(s->files, bytes, len, hex, err, errlen); /* no lock: the file system arbitrates */
}

/* Unlinks a blob no row names; true when it did. */
static bool unlink_if_unused(sqlite_store *s, const char *hex) {
    pthread_mutex_lock(&s->lock);
    bool used = true;
    bool gone = blob_used_locked(s, hex, &used) == IS_OK && !used && blobs_unlink(s->files, hex, NULL, 0) == IS_OK;
    pthread_mutex_unlock(&s->lock);
    return gone;
}

static void sq_bytes_discard(store *base, const char *hex) { unlink_if_unused((sqlite_store *)base, hex); }

/* IS_ERR_NOT_FOUND when no row names hex (deleted meanwhile); a file that rows name but that is
 * missing or damaged is IS_ERR_CORRUPT, naming it and what to run (store.h). */
static int sq_bytes_read(store *base, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = blobs_read(s->files, hex, out, len, err, errlen);
    if (rc == IS_ERR_NOT_FOUND) {
        /* a delete just unlinked it, or it was lost: the rows tell (an add that names the same bytes
         * puts the file back under the lock, hence the second read) */
        bool used = false;
        pthread_mutex_lock(&s->lock);
        if (blob_used_locked(s, hex, &used) == IS_OK && used &&
            (rc = blobs_read(s->files, hex, out, len, err, errlen)) == IS_ERR_NOT_FOUND) {
            char dir[PATH_MAX], path[PATH_MAX];
            snprintf(dir, sizeof dir, "%s/blobs", s->dir);
            blobs_file_path(dir, hex, path, sizeof path);
            rc = is_fail(err, errlen, IS_ERR_CORRUPT, "blob file %s is missing, though an image names it", path);
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (rc == IS_ERR_CORRUPT && err && errlen) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, STORE_CHECK_HINT "%s`", s->dir);
    }
    return rc;
}

typedef struct {
    sqlite_store *s;
    int removed;
} sweep_ctx;

static int sweep_blob(const char *hex, void *ctx) {
    sweep_ctx *w = ctx;
    if (unlink_if_unused(w->s, hex)) w->removed++;
    return 0;
}

static int sq_sweep(store *base, int *removed, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    sweep_ctx w = {(sqlite_store *)base, 0};
    int rc = blobs_each(w.s->files, sweep_blob, &w);
    *removed = w.removed;
    return rc;
}

static int sq_changes_after(store *base, int64_t seq, int (*fn)(int64_t seq, change_op op, int64_t id, void *ctx),
                        void *ctx, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT seq, op, coalesce(image_id, 0) FROM changes WHERE seq > ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "read changes");
    } else {
        sqlite3_bind_int64(st, 1, seq);
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW)
            rc = fn(sqlite3_column_int64(st, 0), (change_op)sqlite3_column_text(st, 1)[0],
                    sqlite3_column_int64(st, 2), ctx);
        if (!rc && step != SQLITE_DONE) rc = db_fail(s, err, errlen, "read changes");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_each(store *base, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
               char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT " ROW_COLUMNS " FROM images ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "read images");
    } else {
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
            store_image img;
            rc = read_row(s, st, with_vector, &img);
            if (rc) rc = is_fail(err, errlen, rc, "cannot read an image row");
            else {
                rc = fn(&img, ctx);
                store_image_clear(&img);
            }
        }
        if (!rc && step != SQLITE_DONE) rc = db_fail(s, err, errlen, "read images");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_each_snapshot(store *base, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
                        int64_t *seq, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    /* a private read-only connection: the main one stays free */
    sqlite_store r = {.dims = s->dims, .path = s->path, .dir = s->dir};
    if (sqlite3_open_v2(s->path, &r.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        int rc = is_fail(err, errlen, IS_ERR_IO, "cannot open %s: %s", s->path, r.db ? sqlite3_errmsg(r.db) : "no memory");
        sqlite3_close(r.db);
        return rc;
    }
    sqlite3_busy_timeout(r.db, 5000);
    pthread_mutex_init(&r.lock, NULL);
    /* one read transaction: the sequence and the rows are the same moment of the database */
    int rc = exec(&r, "BEGIN;", err, errlen);
    if (!rc && sq_last_seq(&r.base, seq)) rc = db_fail(&r, err, errlen, "read the last change");
    if (!rc) rc = sq_each(&r.base, with_vector, fn, ctx, err, errlen);
    exec(&r, "COMMIT;", NULL, 0);
    pthread_mutex_destroy(&r.lock);
    sqlite3_close(r.db);
    return rc;
}

/* ---- re-embedding ---------------------------------------------------------------------------- */

static int meta_get(sqlite_store *s, const char *key, char *out, size_t outlen) {
    sqlite3_stmt *st;
    int rc = IS_ERR_NOT_FOUND;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK) return IS_ERR_INTERNAL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = IS_OK;
    } else if (step != SQLITE_DONE) {
        rc = status_of(s); /* unreadable is not absent */
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_set(sqlite_store *s, const char *key, const char *value, char *err, size_t errlen) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, "write meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok ? IS_OK : db_fail(s, err, errlen, "write meta");
}

static int sq_bind_embedding(store *base, const char *model, int dims, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    int rc = check_meta(s, model, dims, err, errlen);
    if (!rc) s->dims = dims;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_embedding(store *base, char *model, size_t modellen, int *dims) {
    sqlite_store *s = (sqlite_store *)base;
    char d[32] = "";
    pthread_mutex_lock(&s->lock);
    int rc = meta_get(s, "model", model, modellen);
    if (!rc) rc = meta_get(s, "dims", d, sizeof d);
    pthread_mutex_unlock(&s->lock);
    *dims = rc ? 0 : atoi(d);
    return rc;
}

static int sq_reembed_begin(store *base, const char *model, int dims, int64_t *done, int64_t *total, char *err,
                        size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    char key[192];
    snprintf(key, sizeof key, "%s/%d", model, dims);
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    char have[192] = "";
    meta_get(s, "reembed_target", have, sizeof have);
    if (strcmp(have, key)) { /* another target than the interrupted run's: start over */
        rc = exec(s, "DELETE FROM reembed;", err, errlen);
        if (!rc) rc = meta_set(s, "reembed_target", key, err, errlen);
    }
    /* rows deleted since an interrupted run leave vectors that no longer count */
    if (!rc) rc = exec(s, "DELETE FROM reembed WHERE id NOT IN (SELECT id FROM images);", err, errlen);
    sqlite3_stmt *st;
    if (!rc && sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM reembed), (SELECT count(*) FROM images)", -1,
                                  &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            *done = sqlite3_column_int64(st, 0);
            *total = sqlite3_column_int64(st, 1);
        }
        sqlite3_finalize(st);
    }
    s->dims = dims;
    return finish(s, rc, err, errlen);
}

static int sq_reembed_pending(store *base, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                          size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, sha256 FROM images WHERE id NOT IN (SELECT id FROM reembed) ORDER BY id LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        rc = db_fail(s, err, errlen, "list rows to re-embed");
    if (!rc) {
        sqlite3_bind_int(st, 1, max);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
            ids[*n] = sqlite3_column_int64(st, 0);
            snprintf(shas[*n], BLOB_HEX_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 1));
            (*n)++;
        }
        if (step != SQLITE_DONE && step != SQLITE_ROW) rc = db_fail(s, err, errlen, "list rows to re-embed");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_reembed_put(store *base, const int64_t *ids, const float *vectors, int n, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO reembed(id, vector) VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "store re-embedded vectors"), err, errlen);
    size_t bytes = sizeof(float) * (size_t)s->dims;
    for (int i = 0; !rc && i < n; i++) {
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_blob(st, 2, vectors + (size_t)i * (size_t)s->dims, (int)bytes, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, errlen, "store re-embedded vectors");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return finish(s, rc, err, errlen);
}

static int sq_reembed_swap(store *base, const char *model, int dims, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    int64_t missing = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM images WHERE id NOT IN (SELECT id FROM reembed)", -1, &st,
                           NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) missing = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (missing != 0)
        return finish(s, is_fail(err, errlen, IS_ERR_INVALID, "%lld rows have no recomputed vector yet", (long long)missing),
                      err, errlen);
    char dims_text[16];
    snprintf(dims_text, sizeof dims_text, "%d", dims);
    rc = exec(s, "UPDATE images SET vector = (SELECT vector FROM reembed WHERE reembed.id = images.id);"
                 "DELETE FROM reembed; DELETE FROM meta WHERE key = 'reembed_target';",
              err, errlen);
    if (!rc) rc = meta_set(s, "model", model, err, errlen);
    if (!rc) rc = meta_set(s, "dims", dims_text, err, errlen);
    return finish(s, rc, err, errlen);
}

/* ---- API keys ---------------------------------------------------------------------------------- */

static void copy_text(char *dst, size_t cap, const unsigned char *src) {
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static int sq_key_add(store *base, const store_key *key, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO api_keys(name, scope, digest, created_at) VALUES (?, ?, ?, ?)", -1,
                           &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "add key"), err, errlen);
    sqlite3_bind_text(st, 1, key->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key->scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key->digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, key->created_at);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_CONSTRAINT) rc = is_fail(err, errlen, IS_ERR_INVALID, "a key named '%s' exists", key->name);
    else if (step != SQLITE_DONE) rc = db_fail(s, err, errlen, "add key");
    return finish(s, rc, err, errlen);
}

static int sq_key_list(store *base, store_key **keys, int *n, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK, cap = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT name, scope, digest, created_at, last_used FROM api_keys ORDER BY name", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "list keys");
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            store_key *more = realloc(*keys, (size_t)cap * sizeof *more);
            if (!more) {
                rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
                break;
            }
            *keys = more;
        }
        store_key *k = &(*keys)[(*n)++];
        copy_text(k->name, sizeof k->name, sqlite3_column_text(st, 0));
        copy_text(k->scope, sizeof k->scope, sqlite3_column_text(st, 1));
        copy_text(k->digest, sizeof k->digest, sqlite3_column_text(st, 2));
        k->created_at = sqlite3_column_int64(st, 3);
        k->last_used = sqlite3_column_int64(st, 4);
    }
    if (!rc && step != SQLITE_DONE) rc = db_fail(s, err, errlen, "list keys");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

/* One UPDATE or DELETE naming a key by name (bound as ?1; when, if any, as ?2); *changed = rows. */
static int key_write(sqlite_store *s, const char *sql, const char *name, int64_t when, int *changed, char *err,
                     size_t errlen) {
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "write key"), err, errlen);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(st) > 1) sqlite3_bind_int64(st, 2, when);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, errlen, "write key");
    *changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    return finish(s, rc, err, errlen);
}

static int sq_key_revoke(store *base, const char *name, char *err, size_t errlen) {
    int changed = 0;
    int rc = key_write((sqlite_store *)base, "DELETE FROM api_keys WHERE name = ?1", name, 0, &changed, err, errlen);
    if (!rc && !changed) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no key is named '%s'", name);
    return rc;
}

static int sq_key_touch(store *base, const char *name, int64_t when, char *err, size_t errlen) {
    int changed;
    return key_write((sqlite_store *)base, "UPDATE api_keys SET last_used = ?2 WHERE name = ?1 AND last_used < ?2",
                     name, when, &changed, err, errlen);
}

/* ---- checking and repair ----------------------------------------------------------------------- */

static int stop_at_first(const char *hex, void *ctx) {
    (void)hex;
    (void)ctx;
    return 1;
}

/* A database without a schema beside a blob directory that holds images was lost (deleted, or cut
 * to nothing): refused, so that a server never starts on an empty store while the images are still
 * there. Runs before anything writes to the database; reading its header also finds a file that is
 * not a database at all. */
static int refuse_lost_database(sqlite_store *s, char *err, size_t errlen) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, "read schema version");
    int step = sqlite3_step(st);
    int version = step == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    int rc = step == SQLITE_ROW || step == SQLITE_DONE ? IS_OK : db_fail(s, err, errlen, "read schema version");
    sqlite3_finalize(st);
    if (!rc && !version && blobs_each(s->files, stop_at_first, NULL) == 1)
        rc = is_fail(err, errlen, IS_ERR_CORRUPT,
                     "%s holds no database, but %s/blobs holds images: the database was lost or cut short"
                     STORE_CHECK_HINT "%s`", s->path, s->dir, s->dir);
    return rc;
}

static int sq_integrity_check(store *base, void (*fn)(const char *line, void *ctx), void *ctx, char *err,
                              size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "integrity check");
    } else {
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            const char *line = (const char *)sqlite3_column_text(st, 0);
            if (line && strcmp(line, "ok")) fn(line, ctx);
        }
        if (step != SQLITE_DONE) rc = db_fail(s, err, errlen, "integrity check");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_check_each(store *base, int (*fn)(const store_check_row *row, void *ctx), void *ctx, char *err,
                         size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT id, sha256, vector FROM images ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "read images");
    } else {
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
            store_check_row row = {.id = sqlite3_column_int64(st, 0)};
            const unsigned char *sha = sqlite3_column_text(st, 1);
            snprintf(row.sha256, sizeof row.sha256, "%s", sha ? (const char *)sha : "");
            row.vector = sqlite3_column_blob(st, 2);
            row.vector_bytes = row.vector ? (size_t)sqlite3_column_bytes(st, 2) : 0;
            rc = fn(&row, ctx);
        }
        if (!rc && step != SQLITE_DONE) rc = db_fail(s, err, errlen, "read images");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_bytes_verify(store *base, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen) {
    return blobs_verify(((sqlite_store *)base)->files, hex, actual, err, errlen); /* files only: no lock */
}

typedef struct {
    sqlite_store *s;
    int (*fn)(const char *hex, bool named, void *ctx);
    void *ctx;
} bytes_each_ctx;

static int bytes_each_blob(const char *hex, void *ctx) {
    bytes_each_ctx *w = ctx;
    bool named = true;
    pthread_mutex_lock(&w->s->lock);
    int rc = blob_used_locked(w->s, hex, &named);
    pthread_mutex_unlock(&w->s->lock);
    return rc ? rc : w->fn(hex, named, w->ctx);
}

static int sq_bytes_each(store *base, int (*fn)(const char *hex, bool named, void *ctx), void *ctx, char *err,
                         size_t errlen) {
    bytes_each_ctx w = {(sqlite_store *)base, fn, ctx};
    int rc = blobs_each(w.s->files, bytes_each_blob, &w);
    if (rc == IS_ERR_IO) return is_fail(err, errlen, rc, "cannot read %s/blobs", w.s->dir);
    if (rc == IS_ERR_INTERNAL) return db_fail(w.s, err, errlen, "check blob use");
    return rc;
}

static int sq_bytes_remove_unnamed(store *base, const char *hex, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    char dir[PATH_MAX], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/blobs", s->dir);
    blobs_file_path(dir, hex, path, sizeof path);
    pthread_mutex_lock(&s->lock);
    bool used = true;
    int rc = blob_used_locked(s, hex, &used);
    if (rc) rc = db_fail(s, err, errlen, "check blob use");
    else if (used) rc = is_fail(err, errlen, IS_ERR_INVALID, "an image names %s", path);
    else if (access(path, F_OK)) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s is not there", path);
    else rc = blobs_unlink(s->files, hex, err, errlen);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_set_vector(store *base, int64_t id, const float *vector, int dims, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    if (dims != s->dims || dims <= 0)
        return is_fail(err, errlen, IS_ERR_INVALID, "vector must have %d dimensions, not %d", s->dims, dims);
    int rc = begin(s, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "UPDATE images SET vector = ? WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return finish(s, db_fail(s, err, errlen, "replace vector"), err, errlen);
    sqlite3_bind_blob(st, 1, vector, (int)(sizeof(float) * (size_t)dims), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, errlen, "replace vector");
    else if (sqlite3_changes(s->db) == 0) rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    sqlite3_finalize(st);
    return finish(s, rc, err, errlen);
}

/* ---- content hashes ---------------------------------------------------------------------------- */

/* One indexed lookup per name (images_sha256), all under the store's mutex. */
static int sq_hashes_stored(store *base, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = IS_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM images WHERE sha256 = ? LIMIT 1", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "look up content hashes");
    } else {
        for (int i = 0; !rc && i < n; i++) {
            sqlite3_bind_text(st, 1, hexes[i], -1, SQLITE_STATIC);
            int step = sqlite3_step(st);
            if (step == SQLITE_ROW || step == SQLITE_DONE) stored[i] = step == SQLITE_ROW;
            else rc = db_fail(s, err, errlen, "look up content hashes");
            sqlite3_reset(st);
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- the implementation behind store.h --------------------------------------------------------- */

static const store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .add = sq_add,
    .import = sq_import,
    .max_id = sq_max_id,
    .get = sq_get,
    .delete = sq_delete,
    .delete_all = sq_delete_all,
    .set_data = sq_set_data,
    .set_labels = sq_set_labels,
    .unlabelled = sq_unlabelled,
    .count = sq_count,
    .last_seq = sq_last_seq,
    .bytes_prepare = sq_bytes_prepare,
    .bytes_discard = sq_bytes_discard,
    .bytes_read = sq_bytes_read,
    .sweep = sq_sweep,
    .changes_after = sq_changes_after,
    .each = sq_each,
    .each_snapshot = sq_each_snapshot,
    .bind_embedding = sq_bind_embedding,
    .embedding = sq_embedding,
    .reembed_begin = sq_reembed_begin,
    .reembed_pending = sq_reembed_pending,
    .reembed_put = sq_reembed_put,
    .reembed_swap = sq_reembed_swap,
    .key_add = sq_key_add,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .key_touch = sq_key_touch,
    .integrity_check = sq_integrity_check,
    .check_each = sq_check_each,
    .bytes_verify = sq_bytes_verify,
    .bytes_each = sq_bytes_each,
    .bytes_remove_unnamed = sq_bytes_remove_unnamed,
    .set_vector = sq_set_vector,
    .hashes_stored = sq_hashes_stored,
};

int store_sqlite_open(const char *dir, const char *model, int dims, store **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    s->base.ops = &sqlite_ops;
    s->dims = dims;
    pthread_mutex_init(&s->lock, NULL);
    int rc;
    size_t plen = strlen(dir) + sizeof "/imgsearch.db";
    if (!(s->path = malloc(plen))) {
        sq_close(&s->base);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    snprintf(s->path, plen, "%s/imgsearch.db", dir);
    if (!(s->dir = strdup(dir))) {
        sq_close(&s->base);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot open %s: %s", s->path, s->db ? sqlite3_errmsg(s->db) : "no memory");
        sq_close(&s->base);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000);
    char blobdir[4096];
    snprintf(blobdir, sizeof blobdir, "%s/blobs", dir);
    rc = blobs_open(blobdir, &s->files, err, errlen);
    if (!rc) rc = refuse_lost_database(s, err, errlen);
    /* WAL: readers never block the writer; FULL: a commit is on disk before it returns. */
    if (!rc) rc = exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;", err, errlen);
    if (!rc) rc = migrate(s, err, errlen);
    /* what a server reads at start through calls that carry no message (store_count, store_last_seq,
     * store_embedding), read once here, so that damage to it is said naming the file (one pass over
     * the smallest index of images: little beside the start's own read of every row) */
    if (!rc) rc = exec(s, "SELECT count(*) FROM images; SELECT seq FROM sqlite_sequence; SELECT * FROM meta;", err, errlen);
    if (!rc && model) rc = check_meta(s, model, dims, err, errlen);
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return IS_OK;
}
