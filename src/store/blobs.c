#include "store/blobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/file.h"
#include "util/status.h"

struct blobs {
    char dir[PATH_MAX - 128];
};

static int is_hex_name(const char *s) {
    if (strlen(s) != BLOB_HEX_LEN) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

static int mkdir_p(const char *path) { return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1; }

int blobs_open(const char *dir, blobs **out, char *err, size_t errlen) {
    *out = NULL;
    blobs *b = calloc(1, sizeof *b);
    if (!b) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (snprintf(b->dir, sizeof b->dir, "%s", dir) >= (int)sizeof b->dir) {
        free(b);
        return is_fail(err, errlen, IS_ERR_INVALID, "blob directory path is too long");
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/tmp", b->dir);
    if (mkdir_p(b->dir) || mkdir_p(tmp)) {
        int e = errno;
        free(b);
        return is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", tmp, strerror(e));
    }
    /* temp files are never referenced: whatever a crash left there goes, once it is old enough not
     * to be an upload under way in a server beside this process (`imgsearch keys` opens the store
     * while a server runs) */
    DIR *d = opendir(tmp);
    struct dirent *de;
    time_t now = time(NULL);
    while (d && (de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] != '.' && !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) &&
            now - st.st_mtime > BLOBS_TEMP_STALE_SECONDS)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d) closedir(d);
    *out = b;
    return IS_OK;
}

void blobs_close(blobs *b) { free(b); }

void blobs_hash(const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(bytes, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    hex[BLOB_HEX_LEN] = 0;
}

static void blob_path(const blobs *b, const char *hex, char *path, size_t len) {
    snprintf(path, len, "%s/%.2s/%.2s/%s", b->dir, hex, hex + 2, hex);
}

int blobs_put(blobs *b, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err, size_t errlen) {
    blobs_hash(bytes, len, hex);
    return blobs_store(b, bytes, len, hex, err, errlen);
}

int blobs_store(blobs *b, const void *bytes, size_t len, const char *hex, char *err, size_t errlen) {
    char path[PATH_MAX], d1[PATH_MAX], d2[PATH_MAX], tmp[PATH_MAX];
    blob_path(b, hex, path, sizeof path);
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size == len) return IS_OK; /* already stored */
    snprintf(d1, sizeof d1, "%s/%.2s", b->dir, hex);
    snprintf(d2, sizeof d2, "%s/%.2s/%.2s", b->dir, hex, hex + 2);
    int mkdir_errno = 0; /* why a directory could not be made (a full disk: its own status) */
    bool new_d1 = mkdir(d1, 0755) == 0;
    if (!new_d1 && errno != EEXIST) mkdir_errno = errno;
    bool new_d2 = mkdir(d2, 0755) == 0;
    if (!new_d2 && errno != EEXIST) mkdir_errno = errno;
    if (access(d2, F_OK)) {
        int e = mkdir_errno ? mkdir_errno : errno;
        return is_fail(err, errlen, file_write_status(e), "cannot create %s: %s", d2, strerror(e));
    }
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.XXXXXX", b->dir, hex);
    int fd = mkstemp(tmp);
    if (fd < 0) return is_fail(err, errlen, file_write_status(errno), "cannot create a temp file: %s", strerror(errno));
    const unsigned char *p = bytes;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return is_fail(err, errlen, file_write_status(e), "cannot write blob: %s", strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        int e = errno;
        unlink(tmp);
        return is_fail(err, errlen, file_write_status(e), "cannot sync blob: %s", strerror(e));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return is_fail(err, errlen, IS_ERR_IO, "cannot move blob into place: %s", strerror(e));
    }
    /* the new name must survive a crash too: sync each directory that gained an entry */
    if (file_sync_dir(d2) || (new_d2 && file_sync_dir(d1)) || (new_d1 && file_sync_dir(b->dir)))
        return is_fail(err, errlen, file_write_status(errno), "cannot sync blob directory: %s", strerror(errno));
    return IS_OK;
}

int blobs_read(blobs *b, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen) {
    if (!is_hex_name(hex)) return is_fail(err, errlen, IS_ERR_INVALID, "not a blob name");
    char path[PATH_MAX];
    blob_path(b, hex, path, sizeof path);
    int rc = file_read_all(path, SIZE_MAX - 1, out, len, err, errlen);
    if (rc) return rc;
    /* a damaged file is never handed out as the image (its cost: blobs.h) */
    char actual[BLOB_HEX_LEN + 1];
    blobs_hash(*out, *len, actual);
    if (strcmp(actual, hex)) {
        free(*out);
        *out = NULL;
        *len = 0;
        return is_fail(err, errlen, IS_ERR_CORRUPT, "blob file %s is damaged: its bytes hash to %s", path, actual);
    }
    return IS_OK;
}

int blobs_unlink(blobs *b, const char *hex, char *err, size_t errlen) {
    if (!is_hex_name(hex)) return is_fail(err, errlen, IS_ERR_INVALID, "not a blob name");
    char path[PATH_MAX];
    blob_path(b, hex, path, sizeof path);
    if (unlink(path) && errno != ENOENT)
        return is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return IS_OK;
}

/* Walks <dir>/xx/yy/<hex>; anything else in the tree is ignored. */
int blobs_each(blobs *b, int (*fn)(const char *hex, void *ctx), void *ctx) {
    DIR *top = opendir(b->dir);
    if (!top) return IS_ERR_IO;
    int rc = 0;
    struct dirent *e1;
    while (!rc && (e1 = readdir(top))) {
        if (strlen(e1->d_name) != 2 || !strcmp(e1->d_name, "..")) continue;
        char p1[PATH_MAX];
        snprintf(p1, sizeof p1, "%s/%.2s", b->dir, e1->d_name);
        DIR *mid = opendir(p1);
        struct dirent *e2;
        while (!rc && mid && (e2 = readdir(mid))) {
            if (strlen(e2->d_name) != 2 || !strcmp(e2->d_name, "..")) continue;
            char p2[PATH_MAX];
            snprintf(p2, sizeof p2, "%.*s/%.2s", PATH_MAX - 8, p1, e2->d_name);
            DIR *leaf = opendir(p2);
            struct dirent *e3;
            while (!rc && leaf && (e3 = readdir(leaf)))
                if (is_hex_name(e3->d_name)) rc = fn(e3->d_name, ctx);
            if (leaf) closedir(leaf);
        }
        if (mid) closedir(mid);
    }
    closedir(top);
    return rc;
}

void blobs_file_path(const char *dir, const char *hex, char *path, size_t len) {
    snprintf(path, len, "%s/%.2s/%.2s/%s", dir, hex, hex + 2, hex);
}

int blobs_verify(blobs *b, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen) {
    if (!is_hex_name(hex)) return is_fail(err, errlen, IS_ERR_INVALID, "'%.80s' is not a blob name", hex);
    char path[PATH_MAX];
    blob_path(b, hex, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return is_fail(err, errlen, errno == ENOENT ? IS_ERR_NOT_FOUND : IS_ERR_IO, "cannot open %s: %s", path,
                       strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 16);
    int rc = md && buf && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? IS_OK : IS_ERR_NOMEM;
    if (rc) is_fail(err, errlen, rc, "out of memory hashing %s", path);
    for (ssize_t got = 1; !rc && got > 0;) {
        got = read(fd, buf, 1 << 16);
        if (got < 0 && errno == EINTR) got = 1;
        else if (got < 0) rc = is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        else if (got > 0 && !EVP_DigestUpdate(md, buf, (size_t)got))
            rc = is_fail(err, errlen, IS_ERR_INTERNAL, "cannot hash %s", path);
    }
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (!rc && !EVP_DigestFinal_ex(md, digest, &dlen)) rc = is_fail(err, errlen, IS_ERR_INTERNAL, "cannot hash %s", path);
    close(fd);
    EVP_MD_CTX_free(md);
    free(buf);
    if (rc) return rc;
    char got_hex[BLOB_HEX_LEN + 1];
    for (int i = 0; i < 32; i++) sprintf(got_hex + 2 * i, "%02x", digest[i]);
    if (actual) memcpy(actual, got_hex, sizeof got_hex);
    if (strcmp(got_hex, hex))
        return is_fail(err, errlen, IS_ERR_CORRUPT, "blob file %s is damaged: its bytes hash to %s", path, got_hex);
    return IS_OK;
}
