/* engine_reembed: every stored vector recomputed from the stored image with the current model,
 * then swapped in at once (engine.h). Runs on a data directory no server is using. */
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/embed.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "store/store.h"
#include "util/status.h"

#define REEMBED_BATCH 8

typedef struct {
    int reembed_lock_fd;  /* <dir>/reembed.lock: one reembed at a time */
    embed_engine *model;
    embed_session *session;
    store *db;
    int lock_fd;
    float *tensors, *vectors;
} reembed_run;

static void run_close(reembed_run *r) {
    embed_session_free(r->session);
    embed_engine_free(r->model);
    store_close(r->db);
    free(r->tensors);
    free(r->vectors);
    if (r->lock_fd >= 0) close(r->lock_fd);
    if (r->reembed_lock_fd >= 0) close(r->reembed_lock_fd);
}

/* Decodes and embeds one batch of stored images into r->vectors. */
static int embed_batch(reembed_run *r, uint64_t max_pixels, const int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int n,
                       char *err, size_t errlen) {
    decode_params dp = embed_decode_params(r->model, max_pixels);
    size_t tlen = (size_t)embed_input_size(r->model) * (size_t)embed_input_size(r->model) * 3;
    for (int i = 0; i < n; i++) {
        unsigned char *bytes = NULL;
        size_t len = 0;
        char why[384];
        int rc = store_bytes_read(r->db, shas[i], &bytes, &len, why, sizeof why);
        if (!rc) rc = decode_preprocess(bytes, len, &dp, r->tensors + tlen * (size_t)i, NULL, why, sizeof why);
        free(bytes);
        if (rc) return is_fail(err, errlen, rc, "image %lld: %s", (long long)ids[i], why);
    }
    return embed_run(r->session, r->tensors, n, r->vectors, NULL, err, errlen);
}

/* Recomputes every row that has no new vector yet (rows a server adds meanwhile included). */
static int compute_pending(reembed_run *r, uint64_t max_pixels, int64_t *done, int64_t *total,
                           engine_progress_fn progress, void *ctx, char *err, size_t errlen) {
    int64_t ids[REEMBED_BATCH];
    char shas[REEMBED_BATCH][BLOB_HEX_LEN + 1];
    int rc = IS_OK;
    for (int n = 1; !rc && n > 0;) {
        rc = store_reembed_pending(r->db, ids, shas, REEMBED_BATCH, &n, err, errlen);
        if (!rc && n) rc = embed_batch(r, max_pixels, ids, shas, n, err, errlen);
        /* each batch is committed: an interrupted run resumes after the last one */
        if (!rc && n) rc = store_reembed_put(r->db, ids, r->vectors, n, err, errlen);
        if (!rc && n) {
            *done += n;
            if (*done > *total) *total = *done; /* rows a writer added meanwhile */
            if (progress) progress(*done, *total, ctx);
        }
    }
    return rc;
}

int engine_reembed(const engine_config *cfg, engine_progress_fn progress, void *ctx, int64_t *count, bool *swapped,
                   char *err, size_t errlen) {
    reembed_run r = {.lock_fd = -1, .reembed_lock_fd = -1};
    *count = 0;
    *swapped = false;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/imgsearch.db", cfg->data_dir);
    int rc = access(path, F_OK) ? is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s holds no imgsearch data", cfg->data_dir)
                                : engine_lock_file(cfg->data_dir, "reembed.lock", &r.reembed_lock_fd, err, errlen);
    if (!rc) rc = embed_engine_new(cfg->model_config, &r.model, err, errlen);
    if (!rc) rc = embed_apply_precision(r.model, cfg->precision, err, errlen);
    if (!rc) rc = embed_session_new(r.model, cfg->infer_threads > 0 ? cfg->infer_threads : 1, &r.session, err, errlen);
    if (!rc) rc = store_open(cfg->data_dir, NULL, NULL, 0, &r.db, err, errlen); /* any model: that is what changes */
    const char *target = rc ? NULL : embed_model_name(r.model);
    int dims = rc ? 0 : embed_dims(r.model);
    int64_t done = 0, total = 0;
    if (!rc) rc = store_reembed_begin(r.db, target, dims, &done, &total, err, errlen);
    size_t tlen = rc ? 0 : (size_t)embed_input_size(r.model) * (size_t)embed_input_size(r.model) * 3;
    if (!rc) {
        r.tensors = malloc(sizeof(float) * tlen * REEMBED_BATCH);
        r.vectors = malloc(sizeof(float) * (size_t)dims * REEMBED_BATCH);
        if (!r.tensors || !r.vectors) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    if (progress && !rc) progress(done, total, ctx);
    /* a server may be serving the old vectors meanwhile: it is only needed gone for the swap */
    if (!rc) rc = compute_pending(&r, cfg->max_pixels, &done, &total, progress, ctx, err, errlen);
    if (!rc && engine_lock_dir(cfg->data_dir, &r.lock_fd, NULL, 0)) {
        *count = done;
        run_close(&r);
        return IS_OK; /* computed, not swapped: a server holds the directory */
    }
    /* with the directory to ourselves: what a server added before it stopped, then the swap */
    if (!rc) rc = compute_pending(&r, cfg->max_pixels, &done, &total, progress, ctx, err, errlen);
    if (!rc) {
        /* The HNSW snapshot holds the old vectors: it goes first, so that no crash can leave it
         * beside the new ones (without it the server rebuilds the index from the store). */
        snprintf(path, sizeof path, "%s/index.hnsw", cfg->data_dir);
        if (unlink(path) && errno != ENOENT) rc = is_fail(err, errlen, IS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    }
    if (!rc) rc = store_reembed_swap(r.db, target, dims, err, errlen);
    if (!rc) {
        *count = done;
        *swapped = true;
    }
    run_close(&r);
    return rc;
}
