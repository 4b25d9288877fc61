/* engine_migrate: copies one store into another (an embedded data directory into PostgreSQL, or
 * back), ids, rows, metadata, vectors and image bytes as they are (engine.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "store/blobs.h"
#include "store/store.h"
#include "util/status.h"

typedef struct {
    store *from, *to;
    int64_t resume_after; /* rows up to this id are already in the destination */
    int64_t done, total;
    engine_progress_fn progress;
    void *ctx;
    char *err;
    size_t errlen;
} copy_ctx;

/* Are these the bytes named sha (their SHA-256)? */
static bool bytes_match(const unsigned char *bytes, size_t len, const char *sha) {
    char check[BLOB_HEX_LEN + 1];
    blobs_hash(bytes, len, check);
    return !strcmp(check, sha);
}

static int copy_row(const store_image *img, void *arg) {
    copy_ctx *c = arg;
    if (img->id <= c->resume_after) return 0;
    unsigned char *bytes = NULL;
    size_t len = 0;
    int rc = store_bytes_read(c->from, img->sha256, &bytes, &len, c->err, c->errlen);
    if (!rc && !bytes_match(bytes, len, img->sha256))
        rc = is_fail(c->err, c->errlen, IS_ERR_CORRUPT, "the source's bytes of image %lld do not match their SHA-256",
                     (long long)img->id);
    if (!rc) rc = store_import(c->to, img, bytes, len, c->err, c->errlen);
    free(bytes);
    if (rc) return is_fail(c->err, c->errlen, rc, "image %lld: %s", (long long)img->id, c->err);
    c->done++;
    if (c->progress) c->progress(c->done, c->total, c->ctx);
    return 0;
}

/* Both stores walked in id order at once is not possible through store_each (one walk at a time per
 * store), so verification reads the destination row by row against the source's walk. */
static int verify_row(const store_image *img, void *arg) {
    copy_ctx *c = arg;
    store_image twin;
    int rc = store_get(c->to, img->id, true, &twin, c->err, c->errlen);
    if (rc) return is_fail(c->err, c->errlen, rc, "verify: image %lld is missing from the destination", (long long)img->id);
    bool same = !strcmp(twin.name, img->name) && !strcmp(twin.content_type, img->content_type) &&
                !strcmp(twin.data, img->data) && !strcmp(twin.sha256, img->sha256) && twin.width == img->width &&
                twin.height == img->height && twin.size == img->size && twin.created_at == img->created_at &&
                twin.dims == img->dims && !memcmp(twin.vector, img->vector, sizeof(float) * (size_t)img->dims);
    store_image_clear(&twin);
    if (!same) return is_fail(c->err, c->errlen, IS_ERR_CORRUPT, "verify: image %lld differs in the destination", (long long)img->id);
    unsigned char *bytes = NULL;
    size_t len = 0;
    rc = store_bytes_read(c->to, img->sha256, &bytes, &len, c->err, c->errlen);
    if (!rc && !bytes_match(bytes, len, img->sha256)) {
        rc = is_fail(c->err, c->errlen, IS_ERR_CORRUPT, "verify: the bytes of image %lld differ", (long long)img->id);
    } else if (rc) {
        rc = is_fail(c->err, c->errlen, rc, "verify: the bytes of image %lld are missing", (long long)img->id);
    }
    free(bytes);
    return rc;
}

static int open_side(const char *dir, const char *url, bool create, int *lock_fd, store **out, char *err,
                     size_t errlen) {
    if (url) return store_open(NULL, url, NULL, 0, out, err, errlen);
    struct stat st;
    if (!create && stat(dir, &st)) return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch data", dir);
    if (create && mkdir(dir, 0755) && errno != EEXIST)
        return is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    /* no server may write to a data directory being copied or filled */
    int rc = engine_lock_dir(dir, lock_fd, err, errlen);
    return rc ? rc : store_open(dir, NULL, NULL, 0, out, err, errlen);
}

int engine_migrate(const char *from_dir, const char *from_url, const char *to_dir, const char *to_url,
                   engine_progress_fn progress, void *ctx, int64_t *copied, int64_t *total, char *err, size_t errlen) {
    *copied = *total = 0;
    store *from = NULL, *to = NULL;
    int from_lock = -1, to_lock = -1;
    char model[160];
    int dims = 0;
    int rc = open_side(from_dir, from_url, false, &from_lock, &from, err, errlen);
    if (!rc && store_embedding(from, model, sizeof model, &dims))
        rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "the source holds no imgsearch data");
    if (!rc) rc = open_side(to_dir, to_url, true, &to_lock, &to, err, errlen);
    /* the destination takes the source's embedding; one made for another is refused */
    if (!rc) rc = store_bind_embedding(to, model, dims, err, errlen);
    if (!rc) rc = store_bind_embedding(from, model, dims, err, errlen);
    copy_ctx c = {from, to, 0, 0, 0, progress, ctx, err, errlen};
    int64_t have = 0;
    if (!rc) rc = store_max_id(to, &c.resume_after);
    if (!rc) rc = store_count(to, &have);
    if (!rc) rc = store_count(from, &c.total);
    if (!rc && have > c.total)
        rc = is_fail(err, errlen, IS_ERR_INVALID, "the destination holds %lld images, more than the source's %lld: "
                     "it is not an interrupted copy of it", (long long)have, (long long)c.total);
    /* an interrupted run left the rows up to the destination's largest id: those are skipped */
    if (!rc) {
        c.done = have;
        if (progress) progress(c.done, c.total, ctx);
        int64_t seq;
        rc = store_each_snapshot(from, true, copy_row, &c, &seq, err, errlen);
    }
    int64_t count_to = 0;
    if (!rc) rc = store_count(to, &count_to);
    if (!rc && count_to != c.total)
        rc = is_fail(err, errlen, IS_ERR_CORRUPT, "verify: the destination holds %lld images, the source %lld",
                     (long long)count_to, (long long)c.total);
    if (!rc) rc = store_each(from, true, verify_row, &c, err, errlen);
    *copied = c.done - have;
    *total = c.total;
    store_close(from);
    store_close(to);
    if (from_lock >= 0) close(from_lock);
    if (to_lock >= 0) close(to_lock);
    return rc;
}
