/* engine_backup: online backup of a data directory and its restore (engine.h, "backup and
 * restore").
 *
 * Why the backup holds every write acknowledged before it began, while a server goes on writing:
 * a blob is durable before the row naming it commits, and is unlinked only after the last row
 * naming it is gone (sqlite.c, under the store's mutex). So:
 *   1. every blob present now is linked (or copied) into the backup: this covers every row
 *      committed before the start, since such a row's bytes exist until the row is deleted;
 *   2. the database is copied as one moment (SQLite's online backup API, store_backup_db);
 *   3. every row of the copy whose bytes are not in the backup yet was added after the start; its
 *      bytes are linked now, and when they are gone already (the row was deleted since) the row is
 *      deleted from the copy, logged like any delete (store_delete), so the copy stays consistent;
 *   4. blobs linked in step 1 that no row of the copy names (deleted before step 2) are removed
 *      (store_sweep), the copy is sealed (one file, quick_check, fsync) and renamed into place.
 * The index snapshot is left out (engine.h). */
#define _GNU_SOURCE /* renameat2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "store/store.h"
#include "util/file.h"
#include "util/status.h"

#define MANIFEST "BACKUP.json"
#define FORMAT "imgsearch-backup"
#define FORMAT_VERSION 1
#define DIR_MAX (PATH_MAX - 64) /* a directory given: room left for the names made beside and in it */

/* ---- paths ------------------------------------------------------------------------------------- */

/* path without trailing slashes into out; IS_ERR_INVALID for "", "/" or a path too long. */
static int clean_path(const char *path, char *out, size_t len, char *err, size_t errlen) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (!n || (n == 1 && path[0] == '/') || n >= len)
        return is_fail(err, errlen, IS_ERR_INVALID, "'%s' cannot be used as a directory here", path);
    memcpy(out, path, n);
    out[n] = 0;
    return IS_OK;
}

static void parent_of(const char *path, char *out, size_t len) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, len, ".");
    else if (slash == path) snprintf(out, len, "/");
    else snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* 1: an empty directory, 0: not empty (or not a directory), -1: absent; errors count as not empty. */
static int dir_state(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? -1 : 0;
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

/* Is inner the same directory as outer, or inside it? Only for paths that exist. */
static bool within(const char *inner, const char *outer) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(inner, a) || !realpath(outer, b)) return false;
    size_t n = strlen(b);
    return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/' || (n == 1 && b[0] == '/'));
}

/* Test hook (tests/cli/test_backup.py): with IMGSEARCH_FAULT_BACKUP_PAUSE=<dir>, a backup stops
 * after the named step: it creates <dir>/<stage> and waits up to 60 s for <dir>/<stage>.go, so a
 * test can write to the store at exactly that moment. */
static void pause_for_test(const char *stage) {
    const char *dir = getenv("IMGSEARCH_FAULT_BACKUP_PAUSE");
    if (!dir || !*dir) return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, stage);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/%s.go", dir, stage);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 6000 && access(path, F_OK); i++) nanosleep(&tick, NULL);
}

/* ---- the rows of a copy ------------------------------------------------------------------------ */

typedef struct {
    int64_t id;
    char sha[BLOB_HEX_LEN + 1];
} row_ref;

typedef struct {
    row_ref *v;
    size_t n, cap;
} row_list;

static int collect_row(const store_image *img, void *ctx) {
    row_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        row_ref *more = realloc(l->v, cap * sizeof *more);
        if (!more) return IS_ERR_NOMEM;
        l->v = more;
        l->cap = cap;
    }
    l->v[l->n].id = img->id;
    memcpy(l->v[l->n].sha, img->sha256, sizeof img->sha256);
    l->n++;
    return 0;
}

static int list_rows(store *s, row_list *rows, char *err, size_t errlen) {
    int rc = store_each(s, false, collect_row, rows, err, errlen);
    if (rc == IS_ERR_NOMEM) rc = is_fail(err, errlen, rc, "out of memory listing the images");
    return rc;
}

typedef struct {
    engine_stage_fn fn;
    void *ctx;
} stage_cb;

static void blobs_progress(int64_t done, void *ctx) {
    stage_cb *cb = ctx;
    if (cb->fn) cb->fn("blobs", done, -1, cb->ctx);
}

/* ---- the manifest ------------------------------------------------------------------------------ */

typedef struct {
    char model[160];
    int dims, schema;
    int64_t images, blobs, bytes, change, source_change, dropped;
} manifest;

static int write_manifest(const char *dir, const char *source, const char *version, const manifest *m, char *err,
                          size_t errlen) {
    char path[PATH_MAX], when[32], src[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" MANIFEST, dir) >= (int)sizeof path)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path %s is too long", dir);
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    if (!realpath(source, src)) snprintf(src, sizeof src, "%s", source);
    json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "format", FORMAT,
                          "version", FORMAT_VERSION, "created_at", when, "source", src, "model", m->model, "dims",
                          m->dims, "schema", m->schema, "images", (json_int_t)m->images, "blobs",
                          (json_int_t)m->blobs, "bytes", (json_int_t)m->bytes, "change", (json_int_t)m->change,
                          "source_change", (json_int_t)m->source_change, "dropped", (json_int_t)m->dropped);
    if (j && version) json_object_set_new(j, "imgsearch", json_string(version));
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    int rc = IS_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd))
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) && !rc) rc = is_fail(err, errlen, IS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    free(text);
    if (!rc && file_sync_dir(dir)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", dir, strerror(errno));
    return rc;
}

static int read_manifest(const char *dir, manifest *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" MANIFEST, dir) >= (int)sizeof path)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path %s is too long", dir);
    unsigned char *text = NULL;
    size_t len = 0;
    char why[256];
    int rc = file_read_all(path, 1 << 20, &text, &len, why, sizeof why);
    if (rc == IS_ERR_NOT_FOUND)
        return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s is not an imgsearch backup (it has no " MANIFEST ")", dir);
    if (rc) return is_fail(err, errlen, rc, "cannot read %s: %s", path, why);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)text, len, 0, &jerr);
    free(text);
    const char *format = NULL, *model = NULL;
    json_int_t version = 0, dims = 0, images = -1, change = -1;
    if (!j || json_unpack(j, "{s:s, s:I, s:s, s:I, s:I, s:I}", "format", &format, "version", &version, "model",
                          &model, "dims", &dims, "images", &images, "change", &change) ||
        strcmp(format, FORMAT)) {
        json_decref(j);
        return is_fail(err, errlen, IS_ERR_CORRUPT, "%s is damaged or not an imgsearch backup's manifest", path);
    }
    if (version > FORMAT_VERSION) {
        json_decref(j);
        return is_fail(err, errlen, IS_ERR_INVALID,
                       "%s was made by a newer imgsearch (backup format %lld, this one reads %d)", dir,
                       (long long)version, FORMAT_VERSION);
    }
    snprintf(m->model, sizeof m->model, "%s", model);
    m->dims = (int)dims;
    m->images = images;
    m->change = change;
    json_decref(j);
    return IS_OK;
}

/* ---- backup ------------------------------------------------------------------------------------ */

/* Steps 3 and 4 on the copy in tmp (see the top of this file). */
static int complete_copy(const char *data_dir, const char *tmp, bool link, engine_stage_fn progress, void *ctx,
                         manifest *m, store_blob_stats *stats, char *err, size_t errlen) {
    store *copy = NULL;
    row_list rows = {0};
    int rc = store_open(tmp, NULL, NULL, 0, &copy, err, errlen);
    if (!rc) rc = list_rows(copy, &rows, err, errlen);
    for (size_t i = 0; !rc && i < rows.n; i++) {
        rc = store_backup_blob(data_dir, tmp, rows.v[i].sha, link, false, stats, err, errlen);
        if (rc == IS_ERR_NOT_FOUND) { /* added after the backup began, deleted since: left out */
            int64_t seq;
            rc = store_delete(copy, rows.v[i].id, &seq, err, errlen);
            if (!rc) m->dropped++;
        }
        if (progress && ((i + 1) % 1024 == 0 || i + 1 == rows.n))
            progress("images", (int64_t)i + 1, (int64_t)rows.n, ctx);
    }
    int swept = 0;
    if (!rc) rc = store_sweep(copy, &swept, err, errlen);
    if (!rc && (store_count(copy, &m->images) || store_last_seq(copy, &m->change)))
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot read the copy's image count and last change");
    if (!rc && store_embedding(copy, m->model, sizeof m->model, &m->dims)) {
        m->model[0] = 0; /* a store that never held an image has recorded no model yet */
        m->dims = 0;
    }
    free(rows.v);
    store_close(copy);
    return rc;
}

int engine_backup(const char *data_dir, const char *dest, bool copy, const char *version, engine_stage_fn progress,
                  void *ctx, engine_backup_info *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    char src[DIR_MAX], dst[DIR_MAX], tmp[PATH_MAX], parent[PATH_MAX];
    int rc = clean_path(data_dir, src, sizeof src, err, errlen);
    if (!rc) rc = clean_path(dest, dst, sizeof dst, err, errlen);
    if (rc) return rc;
    if (!store_files_exist(src)) {
        snprintf(tmp, sizeof tmp, "%s/store.id", src);
        if (!access(tmp, F_OK))
            return is_fail(err, errlen, IS_ERR_INVALID,
                           "%s is the cache of a server on PostgreSQL, whose data is in the database: back it up "
                           "with pg_dump", src);
        return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch data", src);
    }
    int state = dir_state(dst);
    if (state == 0) return is_fail(err, errlen, IS_ERR_INVALID, "%s exists and is not empty", dst);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dst, (long)getpid());
    if (mkdir(tmp, 0755))
        return is_fail(err, errlen, errno == ENOENT ? IS_ERR_NOT_FOUND : IS_ERR_IO, "cannot create %s: %s", tmp,
                       strerror(errno));
    stage_cb cb = {progress, ctx};
    store_blob_stats stats = {0};
    manifest m = {0};
    store_backup_info bi;
    rc = store_backup_blobs(src, tmp, !copy, &stats, blobs_progress, &cb, err, errlen);
    if (!rc) pause_for_test("blobs");
    if (!rc) rc = store_backup_db(src, tmp, &m.source_change, err, errlen);
    if (!rc && progress) progress("database", 1, 1, ctx);
    if (!rc) pause_for_test("database");
    if (!rc) rc = complete_copy(src, tmp, !copy, progress, ctx, &m, &stats, err, errlen);
    if (!rc) rc = store_backup_seal(tmp, &m.blobs, &m.bytes, err, errlen);
    if (!rc) rc = store_backup_inspect(tmp, &bi, err, errlen);
    if (!rc) m.schema = bi.schema;
    if (!rc) rc = write_manifest(tmp, src, version, &m, err, errlen);
    /* absent, or an empty directory that the rename replaces */
    if (!rc && rename(tmp, dst))
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot move %s to %s%s: %s", tmp, dst,
                     errno == EXDEV || errno == EBUSY ? " (a mount point? back up into a directory inside it)" : "",
                     strerror(errno));
    parent_of(dst, parent, sizeof parent);
    if (!rc && file_sync_dir(parent))
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", parent, strerror(errno));
    if (rc) {
        store_files_remove(tmp, NULL, 0);
        return rc;
    }
    *info = (engine_backup_info){.images = m.images, .blobs = m.blobs, .bytes = m.bytes, .seq = m.source_change,
                                 .dropped = m.dropped};
    return IS_OK;
}

/* ---- restore ----------------------------------------------------------------------------------- */

/* Copies the backup into tmp and checks it there: every row's bytes present and hashing to their
 * name. Nothing outside tmp is touched. */
static int build_restore(const char *backup, const char *tmp, bool link, const manifest *m, engine_stage_fn progress,
                         void *ctx, int64_t *blobs, int64_t *bytes, char *err, size_t errlen) {
    int64_t seq = 0, count = -1;
    store *s = NULL;
    row_list rows = {0};
    store_blob_stats stats = {0};
    int rc = store_backup_db(backup, tmp, &seq, err, errlen);
    if (!rc && progress) progress("database", 1, 1, ctx);
    if (!rc) rc = store_open(tmp, NULL, NULL, 0, &s, err, errlen); /* an older schema is brought up to date */
    if (!rc) rc = list_rows(s, &rows, err, errlen);
    char why[512];
    for (size_t i = 0; !rc && i < rows.n; i++) {
        rc = store_backup_blob(backup, tmp, rows.v[i].sha, link, true, &stats, why, sizeof why);
        if (rc == IS_ERR_NOT_FOUND)
            rc = is_fail(err, errlen, IS_ERR_CORRUPT, "the backup is damaged: the bytes of image %lld (%s) are missing",
                         (long long)rows.v[i].id, rows.v[i].sha);
        else if (rc)
            rc = is_fail(err, errlen, rc, "%simage %lld: %s", rc == IS_ERR_CORRUPT ? "the backup is damaged: " : "",
                         (long long)rows.v[i].id, why);
        if (progress && ((i + 1) % 1024 == 0 || i + 1 == rows.n))
            progress("images", (int64_t)i + 1, (int64_t)rows.n, ctx);
    }
    if (!rc && store_count(s, &count)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot count the restored images");
    if (!rc && (count != m->images || seq != m->change))
        rc = is_fail(err, errlen, IS_ERR_CORRUPT,
                     "the backup is damaged: its database holds %lld images at change %lld, its " MANIFEST
                     " says %lld at change %lld", (long long)count, (long long)seq, (long long)m->images,
                     (long long)m->change);
    free(rows.v);
    store_close(s);
    if (!rc) rc = store_backup_seal(tmp, blobs, bytes, err, errlen);
    return rc;
}

/* tmp becomes dst. replace: dst is a data directory (locked by the caller), exchanged atomically
 * with tmp and then removed; else dst is absent or an empty directory. */
static int move_into_place(const char *tmp, const char *dst, bool replace, char *err, size_t errlen) {
    if (!replace) {
        if (!rename(tmp, dst)) return IS_OK;
        return is_fail(err, errlen, IS_ERR_IO, "cannot move %s to %s%s: %s", tmp, dst,
                       errno == EXDEV || errno == EBUSY ? " (a mount point? restore into a directory inside it)" : "",
                       strerror(errno));
    }
    char why[512];
    if (!renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE)) {
        /* restored; what is left of the old directory is only disk space */
        if (store_files_remove(tmp, why, sizeof why)) fprintf(stderr, "imgsearch: %s\n", why);
        return IS_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return is_fail(err, errlen, IS_ERR_IO, "cannot exchange %s and %s: %s", tmp, dst, strerror(errno));
    /* a file system without an atomic exchange: two renames (a crash between them leaves the old
     * directory as <dst>.old-<pid> and the restored one as <dst>.restore-<pid>) */
    char old[PATH_MAX];
    if (snprintf(old, sizeof old, "%s.old-%ld", dst, (long)getpid()) >= (int)sizeof old)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path %s is too long", dst);
    if (rename(dst, old)) return is_fail(err, errlen, IS_ERR_IO, "cannot move %s aside: %s", dst, strerror(errno));
    if (rename(tmp, dst)) {
        int e = errno;
        rename(old, dst);
        return is_fail(err, errlen, IS_ERR_IO, "cannot move %s to %s: %s", tmp, dst, strerror(e));
    }
    if (store_files_remove(old, why, sizeof why)) fprintf(stderr, "imgsearch: %s\n", why);
    return IS_OK;
}

int engine_restore(const char *backup, const char *data_dir, bool force, bool link, engine_stage_fn progress,
                   void *ctx, engine_backup_info *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    char src[DIR_MAX], dst[DIR_MAX], tmp[PATH_MAX], parent[PATH_MAX];
    int rc = clean_path(backup, src, sizeof src, err, errlen);
    if (!rc) rc = clean_path(data_dir, dst, sizeof dst, err, errlen);
    if (rc) return rc;
    manifest m;
    rc = read_manifest(src, &m, err, errlen);
    if (rc) return rc;
    store_backup_info bi;
    char why[512];
    rc = store_backup_inspect(src, &bi, why, sizeof why);
    if (rc) return is_fail(err, errlen, rc == IS_ERR_NOT_FOUND ? IS_ERR_CORRUPT : rc, "the backup is damaged: %s", why);
    if (bi.count != m.images || bi.seq != m.change || strcmp(bi.model, m.model) || bi.dims != m.dims)
        return is_fail(err, errlen, IS_ERR_CORRUPT,
                       "the backup is damaged: its database (%lld images, change %lld, %s/%d) does not match its "
                       MANIFEST " (%lld images, change %lld, %s/%d)", (long long)bi.count, (long long)bi.seq, bi.model,
                       bi.dims, (long long)m.images, (long long)m.change, m.model, m.dims);
    int state = dir_state(dst);
    bool replace = false;
    int lock_fd = -1;
    if (state >= 0 && (within(dst, src) || within(src, dst)))
        return is_fail(err, errlen, IS_ERR_INVALID, "the backup %s and the data directory %s overlap", src, dst);
    if (state == 0) {
        if (!store_files_exist(dst))
            return is_fail(err, errlen, IS_ERR_INVALID, "%s exists, is not empty and holds no imgsearch store: "
                           "refusing to replace it", dst);
        if (!force)
            return is_fail(err, errlen, IS_ERR_INVALID, "%s holds an imgsearch store already: restore into a new "
                           "directory, or add --force to replace it", dst);
        /* a server holds the lock for its lifetime: the directory is not replaced under it */
        if (engine_lock_dir(dst, &lock_fd, why, sizeof why))
            return is_fail(err, errlen, IS_ERR_BUSY, "not replaced: %s", why);
        replace = true;
    }
    snprintf(tmp, sizeof tmp, "%s.restore-%ld", dst, (long)getpid());
    if (mkdir(tmp, 0755)) {
        rc = is_fail(err, errlen, errno == ENOENT ? IS_ERR_NOT_FOUND : IS_ERR_IO, "cannot create %s: %s", tmp,
                     strerror(errno));
        if (lock_fd >= 0) close(lock_fd);
        return rc;
    }
    rc = build_restore(src, tmp, link, &m, progress, ctx, &info->blobs, &info->bytes, err, errlen);
    if (!rc) rc = move_into_place(tmp, dst, replace, err, errlen);
    parent_of(dst, parent, sizeof parent);
    if (!rc && file_sync_dir(parent))
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", parent, strerror(errno));
    if (rc) store_files_remove(tmp, NULL, 0);
    if (lock_fd >= 0) close(lock_fd);
    if (!rc) {
        info->images = m.images;
        info->seq = m.change;
    }
    return rc;
}
