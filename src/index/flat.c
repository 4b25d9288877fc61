#include "index/flat.h"

#include <stdlib.h>
#include <string.h>

#include "index/distance.h"
#include "util/idmap.h"
#include "util/status.h"

struct flat_index {
    int dims;
    size_t count, cap;
    float *rows;   /* cap × dims */
    int64_t *ids;  /* row → id */
    idmap where;   /* id → row */
};

flat_index *flat_new(int dims) {
    if (dims < 1) return NULL;
    flat_index *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->dims = dims;
    idmap_init(&f->where);
    return f;
}

void flat_free(flat_index *f) {
    if (!f) return;
    free(f->rows);
    free(f->ids);
    idmap_destroy(&f->where);
    free(f);
}

int flat_dims(const flat_index *f) { return f->dims; }
size_t flat_count(const flat_index *f) { return f->count; }

int flat_add(flat_index *f, int64_t id, const float *vec) {
    uint32_t row;
    if (idmap_get(&f->where, id, &row)) return IS_ERR_INVALID;
    if (f->count == UINT32_MAX) return IS_ERR_NOMEM;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        float *rows = realloc(f->rows, cap * (size_t)f->dims * sizeof *rows);
        if (!rows) return IS_ERR_NOMEM;
        f->rows = rows;
        int64_t *ids = realloc(f->ids, cap * sizeof *ids);
        if (!ids) return IS_ERR_NOMEM;
        f->ids = ids;
        f->cap = cap;
    }
    if (idmap_put(&f->where, id, (uint32_t)f->count)) return IS_ERR_NOMEM;
    memcpy(f->rows + f->count * (size_t)f->dims, vec, (size_t)f->dims * sizeof *vec);
    f->ids[f->count++] = id;
    return IS_OK;
}

int flat_remove(flat_index *f, int64_t id) {
    uint32_t row;
    if (!idmap_get(&f->where, id, &row)) return IS_ERR_NOT_FOUND;
    idmap_remove(&f->where, id);
    size_t last = f->count - 1;
    if (row != last) {
        memcpy(f->rows + (size_t)row * (size_t)f->dims, f->rows + last * (size_t)f->dims,
               (size_t)f->dims * sizeof *f->rows);
        f->ids[row] = f->ids[last];
        idmap_put(&f->where, f->ids[row], row); /* replaces an existing key: cannot fail */
    }
    f->count--;
    return IS_OK;
}

const float *flat_get(const flat_index *f, int64_t id) {
    uint32_t row;
    return idmap_get(&f->where, id, &row) ? f->rows + (size_t)row * (size_t)f->dims : NULL;
}

int64_t flat_id_at(const flat_index *f, size_t i) { return f->ids[i]; }

int flat_search(const flat_index *f, const float *query, int k, index_accept_fn accept, void *ctx,
                index_hit *out, int *nout) {
    *nout = 0;
    if (k < 1) return IS_ERR_INVALID;
    topk t;
    topk_init(&t, out, k);
    for (size_t r = 0; r < f->count; r++) {
        float d = cosine_distance(query, f->rows + r * (size_t)f->dims, (size_t)f->dims);
        if (!topk_admits(&t, d)) continue;
        if (accept && !accept(f->ids[r], ctx)) continue;
        topk_push(&t, (index_hit){f->ids[r], d});
    }
    *nout = topk_finish(&t);
    return IS_OK;
}

int flat_search_ids(const flat_index *f, const float *query, const int64_t *ids, size_t nids, int k,
                    index_hit *out, int *nout) {
    *nout = 0;
    if (k < 1) return IS_ERR_INVALID;
    topk t;
    topk_init(&t, out, k);
    for (size_t i = 0; i < nids; i++) {
        const float *v = flat_get(f, ids[i]);
        if (v) topk_push(&t, (index_hit){ids[i], cosine_distance(query, v, (size_t)f->dims)});
    }
    *nout = topk_finish(&t);
    return IS_OK;
}
