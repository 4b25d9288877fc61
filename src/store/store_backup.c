/* store_backup.c — the embedded store's files copied while a server may be writing them (store.h,
 * "backup"): the database through SQLite's online backup API on connections of its own, the blobs
 * (<dir>/blobs/ab/cd/<hex>, blobs.h) as hard links or verified copies. Works on paths only:
 * nothing here touches an open store's handles or locks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/file.h"
#include "util/status.h"

#define DB_NAME "imgsearch.db"

static int join(char *out, size_t len, const char *dir, const char *rest, char *err, size_t errlen) {
    if (snprintf(out, len, "%s/%s", dir, rest) >= (int)len)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path %s/%s is too long", dir, rest);
    return IS_OK;
}

static bool is_hex_name(const char *s) {
    size_t n = strlen(s);
    if (n != BLOB_HEX_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static bool is_hex2(const char *s) {
    return strlen(s) == 2 && strspn(s, "0123456789abcdef") == 2;
}

bool store_files_exist(const char *dir) {
    char path[PATH_MAX];
    return join(path, sizeof path, dir, DB_NAME, NULL, 0) == IS_OK && access(path, F_OK) == 0;
}

/* ---- the database ------------------------------------------------------------------------------ */

static int sql_status(int code) {
    return code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? IS_ERR_CORRUPT
         : code == SQLITE_NOMEM ? IS_ERR_NOMEM : IS_ERR_IO;
}

/* One integer from a query (0 when it returns no row); false when the query fails. */
static bool query_int(sqlite3 *db, const char *sql, int64_t *out) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return false;
    int step = sqlite3_step(st);
    *out = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return step == SQLITE_ROW || step == SQLITE_DONE;
}

/* Opens the database at path with flags and a 5 s busy timeout (a server may be writing). */
static int open_db(const char *path, int flags, const char *verb, sqlite3 **db, char *err, size_t errlen) {
    *db = NULL;
    if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK) {
        int rc = is_fail(err, errlen, IS_ERR_IO, "cannot %s %s: %s", verb, path,
                         *db ? sqlite3_errmsg(*db) : "no memory");
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(*db, 5000);
    return IS_OK;
}

#define LAST_SEQ_SQL "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"

int store_backup_db(const char *from_dir, const char *to_dir, int64_t *seq, char *err, size_t errlen) {
    char from[PATH_MAX], to[PATH_MAX];
    *seq = 0;
    int rc = join(from, sizeof from, from_dir, DB_NAME, err, errlen);
    if (!rc) rc = join(to, sizeof to, to_dir, DB_NAME, err, errlen);
    if (rc) return rc;
    if (access(from, F_OK)) return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch database", from_dir);
    if (!access(to, F_OK)) return is_fail(err, errlen, IS_ERR_INVALID, "%s exists already", to);
    sqlite3 *src = NULL, *dst = NULL;
    /* Only read (in WAL mode beside a server's writes), but opened read-write where permitted: a
     * read-only connection to a WAL database nobody else has open leaves -wal and -shm files behind
     * (owned by whoever ran the backup, which could lock a server of another user out); a
     * read-write one that closes last removes them. */
    rc = open_db(from, SQLITE_OPEN_READWRITE, "open", &src, err, errlen);
    if (!rc) rc = open_db(to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "create", &dst, err, errlen);
    if (!rc) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b) {
            rc = is_fail(err, errlen, IS_ERR_IO, "cannot copy %s: %s", from, sqlite3_errmsg(dst));
        } else {
            /* -1: every page in one step, inside one read transaction of the source, so the copy is
             * one moment of it; a busy source (WAL recovery under way) is retried for a while */
            int step, tries = 0;
            while ((step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED) {
                if (++tries > 200) break;
                sqlite3_sleep(50);
            }
            sqlite3_backup_finish(b);
            if (step != SQLITE_DONE)
                rc = is_fail(err, errlen, sql_status(step), "cannot copy %s: %s", from, sqlite3_errstr(step));
        }
    }
    if (!rc && !query_int(dst, LAST_SEQ_SQL, seq))
        rc = is_fail(err, errlen, IS_ERR_CORRUPT, "%s is not an imgsearch database: %s", from, sqlite3_errmsg(dst));
    sqlite3_close(src);
    if (dst && sqlite3_close(dst) != SQLITE_OK && !rc)
        rc = is_fail(err, errlen, IS_ERR_IO, "cannot close %s", to);
    if (rc && dst) {
        unlink(to);
        char journal[PATH_MAX + 16];
        snprintf(journal, sizeof journal, "%s-journal", to);
        unlink(journal);
    }
    return rc;
}

int store_backup_inspect(const char *dir, store_backup_info *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    char path[PATH_MAX];
    int rc = join(path, sizeof path, dir, DB_NAME, err, errlen);
    if (rc) return rc;
    if (access(path, F_OK)) return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch database", dir);
    sqlite3 *db;
    if ((rc = open_db(path, SQLITE_OPEN_READONLY, "open", &db, err, errlen))) return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
        rc = is_fail(err, errlen, sql_status(sqlite3_errcode(db)), "%s is damaged: %s", path, sqlite3_errmsg(db));
    } else {
        int step = sqlite3_step(st);
        const unsigned char *verdict = step == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
        if (step != SQLITE_ROW)
            rc = is_fail(err, errlen, sql_status(step), "%s is damaged: %s", path, sqlite3_errmsg(db));
        else if (!verdict || strcmp((const char *)verdict, "ok"))
            rc = is_fail(err, errlen, IS_ERR_CORRUPT, "%s is damaged: %s", path, verdict ? (const char *)verdict : "?");
        sqlite3_finalize(st);
    }
    int64_t dims = 0, schema = 0;
    if (!rc && (!query_int(db, "SELECT count(*) FROM images", &info->count) ||
                !query_int(db, LAST_SEQ_SQL, &info->seq) ||
                !query_int(db, "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'dims'), 0)",
                           &dims) ||
                !query_int(db, "PRAGMA user_version", &schema)))
        rc = is_fail(err, errlen, IS_ERR_CORRUPT, "%s is not an imgsearch database: %s", path, sqlite3_errmsg(db));
    if (!rc && sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'model'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(info->model, sizeof info->model, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    info->dims = (int)dims;
    info->schema = (int)schema;
    sqlite3_close(db);
    return rc;
}

/* ---- blobs ------------------------------------------------------------------------------------- */

static int blob_file(char *out, size_t len, const char *dir, const char *hex, char *err, size_t errlen) {
    if (snprintf(out, len, "%s/blobs/%.2s/%.2s/%s", dir, hex, hex + 2, hex) >= (int)len)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path under %s is too long", dir);
    return IS_OK;
}

static int make_dir(const char *path, char *err, size_t errlen) {
    if (mkdir(path, 0755) && errno != EEXIST)
        return is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    return IS_OK;
}

/* <dir>/blobs/ab/cd for the blob hex. */
static int make_blob_dirs(const char *dir, const char *hex, char *err, size_t errlen) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/blobs/%.2s/%.2s", dir, hex, hex + 2) >= (int)sizeof path)
        return is_fail(err, errlen, IS_ERR_INVALID, "the path under %s is too long", dir);
    size_t len = strlen(path);
    path[len - 6] = 0; /* <dir>/blobs */
    int rc = make_dir(path, err, errlen);
    path[len - 6] = '/';
    path[len - 3] = 0; /* <dir>/blobs/ab */
    if (!rc) rc = make_dir(path, err, errlen);
    path[len - 3] = '/';
    if (!rc) rc = make_dir(path, err, errlen);
    return rc;
}

static void hex_of(const unsigned char *md, char hex[BLOB_HEX_LEN + 1]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Copies src to dst (created, must not exist) when dst_fd >= 0 is given, else only reads src;
 * either way the bytes are hashed and compared with hex. */
static int stream_file(int src_fd, int dst_fd, const char *what, const char *hex, int64_t *bytes, char *err,
                       size_t errlen) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return is_fail(err, errlen, IS_ERR_NOMEM, "cannot hash: out of memory");
    }
    static const size_t CHUNK = 1 << 16;
    unsigned char *buf = malloc(CHUNK);
    int rc = buf ? IS_OK : is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    *bytes = 0;
    while (!rc) {
        ssize_t n = read(src_fd, buf, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", what, strerror(errno));
        if (n <= 0) break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        *bytes += n;
        for (ssize_t off = 0; dst_fd >= 0 && !rc && off < n;) {
            ssize_t w = write(dst_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) rc = is_fail(err, errlen, IS_ERR_IO, "cannot write a copy of %s: %s", what, strerror(errno));
            else off += w;
        }
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char got[BLOB_HEX_LEN + 1];
    if (!rc && (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32))
        rc = is_fail(err, errlen, IS_ERR_INTERNAL, "cannot hash %s", what);
    if (!rc) {
        hex_of(digest, got);
        if (strcmp(got, hex))
            rc = is_fail(err, errlen, IS_ERR_CORRUPT, "%s does not hold the bytes its name says (SHA-256 %s)", what,
                         got);
    }
    free(buf);
    EVP_MD_CTX_free(md);
    return rc;
}

static int verify_file(const char *path, const char *hex, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return is_fail(err, errlen, IS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int64_t bytes;
    int rc = stream_file(fd, -1, path, hex, &bytes, err, errlen);
    close(fd);
    return rc;
}

static int copy_file(const char *src, const char *dst, const char *hex, store_blob_stats *stats, char *err,
                     size_t errlen) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? IS_ERR_NOT_FOUND
                               : is_fail(err, errlen, IS_ERR_IO, "cannot open %s: %s", src, strerror(errno));
    struct stat st;
    mode_t mode = fstat(in, &st) == 0 ? (st.st_mode & 0777) : 0644;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) {
        int e = errno;
        close(in);
        return is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", dst, strerror(e));
    }
    int64_t bytes = 0;
    int rc = stream_file(in, out, src, hex, &bytes, err, errlen);
    if (!rc && fsync(out)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", dst, strerror(errno));
    if (close(out) && !rc) rc = is_fail(err, errlen, IS_ERR_IO, "cannot write %s: %s", dst, strerror(errno));
    close(in);
    if (rc) {
        unlink(dst);
        return rc;
    }
    stats->copied++;
    stats->bytes += bytes;
    return IS_OK;
}

int store_backup_blob(const char *from_dir, const char *to_dir, const char *hex, bool link_ok, bool verify,
                      store_blob_stats *stats, char *err, size_t errlen) {
    if (!is_hex_name(hex)) return is_fail(err, errlen, IS_ERR_INVALID, "not a blob name: '%.80s'", hex);
    char src[PATH_MAX], dst[PATH_MAX];
    int rc = blob_file(src, sizeof src, from_dir, hex, err, errlen);
    if (!rc) rc = blob_file(dst, sizeof dst, to_dir, hex, err, errlen);
    if (rc) return rc;
    struct stat st;
    if (lstat(dst, &st) == 0) {
        stats->present++;
        return verify ? verify_file(dst, hex, err, errlen) : IS_OK;
    }
    rc = make_blob_dirs(to_dir, hex, err, errlen);
    if (rc) return rc;
    if (link_ok) {
        if (link(src, dst) == 0) {
            stats->linked++;
            if (stat(dst, &st) == 0) stats->bytes += st.st_size;
            return verify ? verify_file(dst, hex, err, errlen) : IS_OK;
        }
        if (errno == ENOENT) return IS_ERR_NOT_FOUND; /* to_dir's directories exist: the source is gone */
        /* another file system, or one without hard links: copy */
        if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EOPNOTSUPP)
            return is_fail(err, errlen, IS_ERR_IO, "cannot link %s to %s: %s", src, dst, strerror(errno));
    }
    return copy_file(src, dst, hex, stats, err, errlen);
}

int store_backup_blobs(const char *from_dir, const char *to_dir, bool link_ok, store_blob_stats *stats,
                       void (*progress)(int64_t done, void *ctx), void *ctx, char *err, size_t errlen) {
    char root[PATH_MAX];
    int rc = join(root, sizeof root, from_dir, "blobs", err, errlen);
    if (rc) return rc;
    DIR *top = opendir(root);
    if (!top)
        return errno == ENOENT ? IS_OK : is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", root, strerror(errno));
    int64_t done = 0;
    struct dirent *e1;
    /* readdir returns every entry not added or removed meanwhile exactly once: a blob that exists
     * for the whole walk is always seen */
    while (!rc && (e1 = readdir(top))) {
        if (!is_hex2(e1->d_name)) continue; /* tmp/ holds files being written: never a blob */
        char p1[PATH_MAX];
        snprintf(p1, sizeof p1, "%.*s/%.2s", PATH_MAX - 8, root, e1->d_name);
        DIR *mid = opendir(p1);
        struct dirent *e2;
        while (!rc && mid && (e2 = readdir(mid))) {
            if (!is_hex2(e2->d_name)) continue;
            char p2[PATH_MAX];
            snprintf(p2, sizeof p2, "%.*s/%.2s", PATH_MAX - 8, p1, e2->d_name);
            DIR *leaf = opendir(p2);
            struct dirent *e3;
            while (!rc && leaf && (e3 = readdir(leaf))) {
                if (!is_hex_name(e3->d_name)) continue;
                rc = store_backup_blob(from_dir, to_dir, e3->d_name, link_ok, false, stats, err, errlen);
                if (rc == IS_ERR_NOT_FOUND) rc = IS_OK; /* deleted during the walk */
                if (!rc && ++done % 256 == 0 && progress) progress(done, ctx);
            }
            if (leaf) closedir(leaf);
        }
        if (mid) closedir(mid);
    }
    closedir(top);
    if (!rc && progress) progress(done, ctx);
    return rc;
}

/* ---- sealing and removing a copy ---------------------------------------------------------------- */

static int sync_file(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 || fsync(fd) ? is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", path, strerror(errno)) : IS_OK;
    if (fd >= 0) close(fd);
    return rc;
}

/* Counts the regular files below path (depth levels of directories) and fsyncs every directory. */
static int sync_tree(const char *path, int depth, int64_t *files, int64_t *bytes, char *err, size_t errlen) {
    DIR *d = opendir(path);
    if (!d) return is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    int rc = IS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) continue;
        struct stat st;
        if (lstat(child, &st)) continue;
        if (S_ISDIR(st.st_mode) && depth > 0) rc = sync_tree(child, depth - 1, files, bytes, err, errlen);
        else if (S_ISREG(st.st_mode) && is_hex_name(e->d_name)) {
            (*files)++;
            *bytes += st.st_size;
        }
    }
    closedir(d);
    if (!rc && file_sync_dir(path)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", path, strerror(errno));
    return rc;
}

int store_backup_seal(const char *dir, int64_t *blobs, int64_t *bytes, char *err, size_t errlen) {
    *blobs = *bytes = 0;
    char path[PATH_MAX], blobdir[PATH_MAX];
    int rc = join(path, sizeof path, dir, DB_NAME, err, errlen);
    if (!rc) rc = join(blobdir, sizeof blobdir, dir, "blobs", err, errlen);
    if (rc) return rc;
    sqlite3 *db;
    if ((rc = open_db(path, SQLITE_OPEN_READWRITE, "open", &db, err, errlen))) return rc;
    /* one file, readable from read-only media: no -wal or -shm beside it */
    sqlite3_stmt *st;
    const char *steps[2] = {"PRAGMA journal_mode = DELETE", "PRAGMA quick_check"};
    const char *want[2] = {"delete", "ok"};
    for (int i = 0; !rc && i < 2; i++) {
        if (sqlite3_prepare_v2(db, steps[i], -1, &st, NULL) != SQLITE_OK) {
            rc = is_fail(err, errlen, sql_status(sqlite3_errcode(db)), "%s: %s", path, sqlite3_errmsg(db));
            break;
        }
        const unsigned char *got = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
        if (!got || strcmp((const char *)got, want[i]))
            rc = is_fail(err, errlen, i ? IS_ERR_CORRUPT : IS_ERR_IO, "%s: %s gave %s", path, steps[i],
                         got ? (const char *)got : sqlite3_errmsg(db));
        sqlite3_finalize(st);
    }
    if (sqlite3_close(db) != SQLITE_OK && !rc) rc = is_fail(err, errlen, IS_ERR_IO, "cannot close %s", path);
    if (!rc) rc = sync_file(path, err, errlen);
    char tmpdir[PATH_MAX];
    if (!rc && !join(tmpdir, sizeof tmpdir, blobdir, "tmp", NULL, 0)) rmdir(tmpdir); /* store_open made it */
    if (!rc && access(blobdir, F_OK) == 0) rc = sync_tree(blobdir, 2, blobs, bytes, err, errlen);
    if (!rc && file_sync_dir(dir)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot sync %s: %s", dir, strerror(errno));
    return rc;
}

static int remove_tree(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st))
        return errno == ENOENT ? IS_OK : is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) && errno != ENOENT)
            return is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        return IS_OK;
    }
    DIR *d = opendir(path);
    if (!d) return is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    int rc = IS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child)
            rc = is_fail(err, errlen, IS_ERR_INVALID, "a path under %s is too long", path);
        else rc = remove_tree(child, err, errlen);
    }
    closedir(d);
    if (!rc && rmdir(path)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return rc;
}

int store_files_remove(const char *dir, char *err, size_t errlen) { return remove_tree(dir, err, errlen); }
