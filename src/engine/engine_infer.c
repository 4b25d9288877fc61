/* engine_infer.c — inference for requests: a pool of sessions, and concurrent images batched.
 *
 * Each request decodes its image on its own thread (so decoding overlaps other requests'
 * inference), then queues the tensor. A caller that gets a session leads: it takes up to
 * INFER_MAX_BATCH queued tensors, its own or others', and runs them as one batch; the others'
 * callers wait until their image is done, or lead in turn when a session frees and theirs is still
 * queued. Nobody waits on purpose for a batch to fill: under load, tensors queue up while the
 * sessions are busy and the next leader finds them; a lone request runs at once, as before.
 *
 * Why batch: the bf16 network runs its late layers batched (net_onednn.c), 14 % more images per
 * second at batch 8 than image by image on one thread (10 % on two). Batches run at sizes 8, 4,
 * 2, 1 (5 images: 4 + 1), so a session keeps at most four networks (embed.c's SESSION_NETS).
 *
 * Everything here is guarded by e->session_lock; e->session_free is broadcast whenever a session
 * frees or images are done. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "util/metrics.h"
#include "util/status.h"

#define INFER_MAX_BATCH 8

typedef struct infer_job {
    const float *tensor;
    float *vec, *logits; /* logits NULL: not wanted */
    bool done;
    int rc;
    char err[256];
    struct infer_job *next; /* in the queue while waiting for a leader */
} infer_job;

/* A session for a leader: an idle one, or a new one while fewer than max_sessions exist (built
 * outside the lock). Called with session_lock held, when one is available; may drop the lock. */
static embed_session *take_session(engine *e, int *rc, char *err, size_t errlen) {
    if (e->nidle) return e->idle_sessions[--e->nidle];
    e->nsessions++;
    pthread_mutex_unlock(&e->session_lock);
    embed_session *s = NULL;
    if (embed_session_new(e->model, e->infer_threads, &s, err, errlen)) s = NULL;
    pthread_mutex_lock(&e->session_lock);
    if (!s) {
        *rc = IS_ERR_MODEL;
        e->nsessions--;
        pthread_cond_broadcast(&e->session_free);
    }
    return s;
}

/* Runs jobs[0..n) on session s as batches of 8, 4, 2, 1, and fills in each job's result (not
 * its done flag). A lone image runs on its own buffers; a batch is gathered into shared ones.
 * Called without the lock. */
static void run_jobs(engine *e, embed_session *s, infer_job **jobs, int n) {
    if (n == 1) {
        infer_job *j = jobs[0];
        j->rc = embed_run(s, j->tensor, 1, j->vec, j->logits, j->err, sizeof j->err);
        metrics_counter_add(&e->inference_runs, 1);
        return;
    }
    size_t tlen = (size_t)embed_input_size(e->model) * (size_t)embed_input_size(e->model) * 3;
    int dims = embed_dims(e->model), nc = embed_num_classes(e->model);
    float *tensors = malloc(sizeof(float) * tlen * (size_t)n);
    float *vecs = malloc(sizeof(float) * (size_t)dims * (size_t)n);
    float *logits = malloc(sizeof(float) * (size_t)nc * (size_t)n);
    for (int at = 0; at < n;) {
        int size = INFER_MAX_BATCH;
        while (size > n - at) size /= 2;
        infer_job **chunk = jobs + at;
        int rc = IS_OK;
        char err[256] = "";
        bool want_logits = false;
        if (!tensors || !vecs || !logits) {
            rc = is_fail(err, sizeof err, IS_ERR_NOMEM, "out of memory");
        } else {
            for (int i = 0; i < size; i++) {
                memcpy(tensors + tlen * (size_t)i, chunk[i]->tensor, sizeof(float) * tlen);
                want_logits |= chunk[i]->logits != NULL;
            }
            rc = embed_run(s, tensors, size, vecs, want_logits ? logits : NULL, err, sizeof err);
            metrics_counter_add(&e->inference_runs, 1);
        }
        for (int i = 0; i < size; i++) {
            infer_job *j = chunk[i];
            j->rc = rc;
            if (rc) {
                snprintf(j->err, sizeof j->err, "%s", err);
                continue;
            }
            memcpy(j->vec, vecs + (size_t)dims * (size_t)i, sizeof(float) * (size_t)dims);
            if (j->logits) memcpy(j->logits, logits + (size_t)nc * (size_t)i, sizeof(float) * (size_t)nc);
        }
        at += size;
    }
    free(tensors);
    free(vecs);
    free(logits);
}

/* Runs one decoded tensor through the network, batched with whatever else is queued. */
static int infer(engine *e, const float *tensor, float *vec, float *logits, char *err, size_t errlen) {
    infer_job job = {.tensor = tensor, .vec = vec, .logits = logits};
    uint64_t asked = metrics_now_ns();
    pthread_mutex_lock(&e->session_lock);
    bool can_lead = e->nidle || e->nsessions < e->max_sessions;
    if (!can_lead && e->nwaiting >= e->max_waiting) {
        pthread_mutex_unlock(&e->session_lock);
        return is_fail(err, errlen, IS_ERR_BUSY,
                       "the server is busy: %d images wait for inference already (--queue); try again shortly",
                       e->max_waiting);
    }
    /* queue the job */
    infer_job **tail = &e->infer_queue;
    while (*tail) tail = &(*tail)->next;
    *tail = &job;
    e->nwaiting++; /* images queued: a leader takes them off */
    bool observed = false;
    while (!job.done) {
        if (!(e->nidle || e->nsessions < e->max_sessions) || !e->infer_queue) {
            /* no session to lead with, or nothing left to lead: our image is another's now */
            pthread_cond_wait(&e->session_free, &e->session_lock);
            continue;
        }
        if (!observed) { /* the time in the queue, up to leading */
            metrics_histogram_observe_ns(&e->queue_wait, metrics_now_ns() - asked);
            observed = true;
        }
        int rc = IS_OK;
        char why[256] = "";
        embed_session *s = take_session(e, &rc, why, sizeof why);
        if (!s) { /* no session could be built: the queued images fail with the reason */
            for (infer_job *j = e->infer_queue; j; j = j->next) {
                j->rc = rc;
                snprintf(j->err, sizeof j->err, "%s", why);
                j->done = true;
                e->nwaiting--;
            }
            e->infer_queue = NULL;
            pthread_cond_broadcast(&e->session_free);
            continue; /* ours was among them, or is in another leader's batch: wait for it */
        }
        infer_job *batch[INFER_MAX_BATCH];
        int n = 0;
        while (e->infer_queue && n < INFER_MAX_BATCH) {
            batch[n++] = e->infer_queue;
            e->infer_queue = e->infer_queue->next;
            e->nwaiting--;
        }
        pthread_mutex_unlock(&e->session_lock);
        if (n) run_jobs(e, s, batch, n);
        metrics_counter_add(&e->inferences, (uint64_t)n);
        pthread_mutex_lock(&e->session_lock);
        for (int i = 0; i < n; i++) batch[i]->done = true;
        e->idle_sessions[e->nidle++] = s;
        pthread_cond_broadcast(&e->session_free);
    }
    if (!observed) metrics_histogram_observe_ns(&e->queue_wait, metrics_now_ns() - asked);
    pthread_mutex_unlock(&e->session_lock);
    if (job.rc) is_fail(err, errlen, job.rc, "%s", job.err);
    return job.rc;
}

int engine_embed_image(engine *e, const void *bytes, size_t len, float *vec, float *logits, decode_info *info,
                       char *err, size_t errlen) {
    size_t tlen = (size_t)embed_input_size(e->model) * (size_t)embed_input_size(e->model) * 3;
    float *tensor = malloc(sizeof(float) * tlen);
    if (!tensor) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    decode_params p = embed_decode_params(e->model, e->max_pixels);
    int rc = decode_preprocess(bytes, len, &p, tensor, info, err, errlen);
    if (!rc) rc = infer(e, tensor, vec, logits, err, errlen);
    else metrics_counter_add(&e->inferences, 1); /* refused by the decoder: counted, as before */
    free(tensor);
    return rc;
}
