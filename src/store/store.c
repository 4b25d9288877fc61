/* store.c — store.h's functions, dispatched to the implementation that opened the store
 * (store_impl.h). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_impl.h"
#include "util/status.h"

int store_open(const char *data_dir, const char *url, const char *model, int dims, store **out, char *err,
               size_t errlen) {
    if (url && *url) return store_postgres_open(url, model, dims, out, err, errlen);
    return store_sqlite_open(data_dir, model, dims, out, err, errlen);
}

const char *store_kind(const store *s) { return s->ops->name; }
bool store_shared(const store *s) { return s->ops->shared; }

int store_identity(store *s, char *out, size_t outlen) {
    if (s->ops->identity) return s->ops->identity(s, out, outlen);
    if (outlen) *out = 0;
    return 0;
}

int store_bytes_prepare(store *s, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err,
                        size_t errlen) {
    return s->ops->bytes_prepare(s, bytes, len, hex, err, errlen);
}

void store_bytes_discard(store *s, const char *hex) { s->ops->bytes_discard(s, hex); }

int store_bytes_read(store *s, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen) {
    return s->ops->bytes_read(s, hex, out, len, err, errlen);
}

int store_sweep(store *s, int *removed, char *err, size_t errlen) { return s->ops->sweep(s, removed, err, errlen); }

void store_close(store *s) {
    if (s) s->ops->close(s);
}

void store_image_clear(store_image *img) {
    free(img->name);
    free(img->content_type);
    free(img->data);
    free(img->vector);
    free(img->labels);
    memset(img, 0, sizeof *img);
}

int store_add(store *s, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err, size_t errlen) {
    return s->ops->add(s, img, bytes, len, seq, err, errlen);
}

int store_import(store *s, const store_image *img, const void *bytes, size_t len, char *err, size_t errlen) {
    return s->ops->import(s, img, bytes, len, err, errlen);
}

int store_max_id(store *s, int64_t *id) { return s->ops->max_id(s, id); }

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int store_get_many(store *s, const int64_t *ids, int n, bool with_vector, store_image *rows, int *found, char *err,
                   size_t errlen) {
    *found = 0;
    if (n <= 0) return IS_OK;
    if (s->ops->get_many) return s->ops->get_many(s, ids, n, with_vector, rows, found, err, errlen);
    int64_t *sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    memcpy(sorted, ids, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_id);
    int rc = IS_OK;
    for (int i = 0; !rc && i < n; i++) {
        if (i && sorted[i] == sorted[i - 1]) continue;
        rc = s->ops->get(s, sorted[i], with_vector, &rows[*found], err, errlen);
        if (rc == IS_ERR_NOT_FOUND) rc = IS_OK;
        else if (!rc) ++*found;
    }
    free(sorted);
    if (rc) {
        for (int i = 0; i < *found; i++) store_image_clear(&rows[i]);
        *found = 0;
    }
    return rc;
}

int store_get(store *s, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen) {
    return s->ops->get(s, id, with_vector, out, err, errlen);
}

int store_delete(store *s, int64_t id, int64_t *seq, char *err, size_t errlen) {
    return s->ops->delete(s, id, seq, err, errlen);
}

int store_delete_all(store *s, int64_t *count, int64_t *seq, char *err, size_t errlen) {
    return s->ops->delete_all(s, count, seq, err, errlen);
}

int store_set_data(store *s, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen) {
    return s->ops->set_data(s, id, json, seq, err, errlen);
}

int store_set_labels(store *s, int64_t id, const char *labels, int64_t *seq, char *err, size_t errlen) {
    return s->ops->set_labels(s, id, labels, seq, err, errlen);
}

int store_unlabelled(store *s, int64_t after, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                     size_t errlen) {
    return s->ops->unlabelled(s, after, ids, shas, max, n, err, errlen);
}

int store_count(store *s, int64_t *count) { return s->ops->count(s, count); }
int store_last_seq(store *s, int64_t *seq) { return s->ops->last_seq(s, seq); }

int store_changes_after(store *s, int64_t seq, int (*fn)(int64_t seq, change_op op, int64_t id, void *ctx), void *ctx,
                        char *err, size_t errlen) {
    return s->ops->changes_after(s, seq, fn, ctx, err, errlen);
}

int store_each(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx, char *err,
               size_t errlen) {
    return s->ops->each(s, with_vector, fn, ctx, err, errlen);
}

int store_each_snapshot(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
                        int64_t *seq, char *err, size_t errlen) {
    return s->ops->each_snapshot(s, with_vector, fn, ctx, seq, err, errlen);
}

int store_bind_embedding(store *s, const char *model, int dims, char *err, size_t errlen) {
    return s->ops->bind_embedding(s, model, dims, err, errlen);
}

int store_embedding(store *s, char *model, size_t modellen, int *dims) {
    return s->ops->embedding(s, model, modellen, dims);
}

int store_reembed_begin(store *s, const char *model, int dims, int64_t *done, int64_t *total, char *err,
                        size_t errlen) {
    return s->ops->reembed_begin(s, model, dims, done, total, err, errlen);
}

int store_reembed_pending(store *s, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                          size_t errlen) {
    return s->ops->reembed_pending(s, ids, shas, max, n, err, errlen);
}

int store_reembed_put(store *s, const int64_t *ids, const float *vectors, int n, char *err, size_t errlen) {
    return s->ops->reembed_put(s, ids, vectors, n, err, errlen);
}

int store_reembed_swap(store *s, const char *model, int dims, char *err, size_t errlen) {
    return s->ops->reembed_swap(s, model, dims, err, errlen);
}

int store_wait_changes(store *s, int timeout_ms) {
    if (s->ops->wait_changes) return s->ops->wait_changes(s, timeout_ms);
    usleep((useconds_t)timeout_ms * 1000);
    return 0;
}

void store_stop_waiting(store *s) {
    if (s->ops->stop_waiting) s->ops->stop_waiting(s);
}

void store_wake(store *s) {
    if (s->ops->wake) s->ops->wake(s);
}

int store_key_add(store *s, const store_key *key, char *err, size_t errlen) {
    return s->ops->key_add(s, key, err, errlen);
}

int store_key_list(store *s, store_key **keys, int *n, char *err, size_t errlen) {
    *keys = NULL;
    *n = 0;
    return s->ops->key_list(s, keys, n, err, errlen);
}

int store_key_revoke(store *s, const char *name, char *err, size_t errlen) {
    return s->ops->key_revoke(s, name, err, errlen);
}

int store_key_touch(store *s, const char *name, int64_t when, char *err, size_t errlen) {
    return s->ops->key_touch(s, name, when, err, errlen);
}

/* ---- checking and repair ---- */

int store_integrity_check(store *s, void (*fn)(const char *line, void *ctx), void *ctx, char *err, size_t errlen) {
    return s->ops->integrity_check(s, fn, ctx, err, errlen);
}

int store_check_each(store *s, int (*fn)(const store_check_row *row, void *ctx), void *ctx, char *err,
                     size_t errlen) {
    return s->ops->check_each(s, fn, ctx, err, errlen);
}

int store_bytes_verify(store *s, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen) {
    return s->ops->bytes_verify(s, hex, actual, err, errlen);
}

int store_bytes_each(store *s, int (*fn)(const char *hex, bool named, void *ctx), void *ctx, char *err,
                     size_t errlen) {
    return s->ops->bytes_each(s, fn, ctx, err, errlen);
}

int store_bytes_remove_unnamed(store *s, const char *hex, char *err, size_t errlen) {
    return s->ops->bytes_remove_unnamed(s, hex, err, errlen);
}

int store_set_vector(store *s, int64_t id, const float *vector, int dims, char *err, size_t errlen) {
    return s->ops->set_vector(s, id, vector, dims, err, errlen);
}

/* ---- content hashes ---- */

int store_hashes_stored(store *s, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    if (n < 0 || n > STORE_HASHES_MAX)
        return is_fail(err, errlen, IS_ERR_INVALID, "from 0 to %d names at a time, not %d", STORE_HASHES_MAX, n);
    if (n == 0) return IS_OK;
    return s->ops->hashes_stored(s, hexes, n, stored, err, errlen);
}
