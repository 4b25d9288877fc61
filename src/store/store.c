/* store.c — store.h's functions, dispatched to the implementation that opened the store
 * (store_impl.h). */
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_impl.h"

int store_open(const char *path, const char *model, int dims, store **out, char *err, size_t errlen) {
    return store_sqlite_open(path, model, dims, out, err, errlen);
}

void store_close(store *s) {
    if (s) s->ops->close(s);
}

void store_image_clear(store_image *img) {
    free(img->name);
    free(img->content_type);
    free(img->data);
    free(img->vector);
    memset(img, 0, sizeof *img);
}

int store_add(store *s, store_image *img, int64_t *seq, char *err, size_t errlen) {
    return s->ops->add(s, img, seq, err, errlen);
}

int store_get(store *s, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen) {
    return s->ops->get(s, id, with_vector, out, err, errlen);
}

int store_delete(store *s, int64_t id, char sha_out[BLOB_HEX_LEN + 1], bool *blob_in_use, int64_t *seq, char *err,
                 size_t errlen) {
    return s->ops->delete(s, id, sha_out, blob_in_use, seq, err, errlen);
}

int store_delete_all(store *s, int64_t *count, int64_t *seq, char *err, size_t errlen) {
    return s->ops->delete_all(s, count, seq, err, errlen);
}

int store_set_data(store *s, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen) {
    return s->ops->set_data(s, id, json, seq, err, errlen);
}

int store_get_vector(store *s, int64_t id, float *out) { return s->ops->get_vector(s, id, out); }
int store_count(store *s, int64_t *count) { return s->ops->count(s, count); }
int store_last_seq(store *s, int64_t *seq) { return s->ops->last_seq(s, seq); }
int store_blob_used(store *s, const char *sha, bool *used) { return s->ops->blob_used(s, sha, used); }

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
