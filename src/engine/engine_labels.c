/* Labels: the label query a word makes, class names, and labelling images stored before labels
 * existed (engine.h "labels"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "util/status.h"

int engine_label_query(const engine *e, const char *word, double min_score, label_query *q, unsigned char **classes,
                       char *err, size_t errlen) {
    *classes = NULL;
    memset(q, 0, sizeof *q);
    if (!word) return IS_OK;
    if (min_score == 0) min_score = ENGINE_LABEL_MIN;
    if (!(min_score > 0 && min_score <= 1))
        return is_fail(err, errlen, IS_ERR_INVALID, "label_min must be a probability above 0 and at most 1");
    if (!e->concepts)
        return is_fail(err, errlen, IS_ERR_INVALID,
                       "this server's model has no concept table, so it cannot search by label (run "
                       "tools/fetch-model, then restart)");
    int n = embed_num_classes(e->model);
    *classes = malloc((size_t)n);
    if (!*classes) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (!concepts_match(e->concepts, word, *classes)) {
        free(*classes);
        *classes = NULL;
        char shown[64];
        snprintf(shown, sizeof shown, "%s", word);
        for (char *p = shown; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == '"') *p = '?';
        return is_fail(err, errlen, IS_ERR_INVALID,
                       "label \"%s\"%s names no ImageNet class and no broader concept (try a noun such as "
                       "\"dog\", \"bird\", \"vehicle\" or \"fruit\")",
                       shown, strlen(word) >= sizeof shown ? "..." : "");
    }
    *q = (label_query){.classes = *classes, .num_classes = n, .min_score = (float)min_score};
    return IS_OK;
}

const char *engine_class_name(const engine *e, int cls) {
    return cls >= 0 && cls < embed_num_classes(e->model) ? embed_label(e->model, cls) : NULL;
}

#define LABEL_BATCH 64

int engine_label_missing(engine *e, void (*progress)(int64_t done, int64_t total, void *ctx), void *ctx,
                         int64_t *labelled, int64_t *failed, char *err, size_t errlen) {
    *labelled = *failed = 0;
    int classes = embed_num_classes(e->model);
    int64_t ids[LABEL_BATCH], after = 0;
    char (*shas)[BLOB_HEX_LEN + 1] = malloc(sizeof *shas * LABEL_BATCH);
    float *vec = malloc(sizeof(float) * (size_t)embed_dims(e->model));
    float *logits = malloc(sizeof(float) * (size_t)classes);
    int rc = shas && vec && logits ? IS_OK : is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    int n = 0;
    do {
        if (!rc) rc = store_unlabelled(e->db, after, ids, shas, LABEL_BATCH, &n, err, errlen);
        for (int i = 0; !rc && i < n; i++) {
            after = ids[i];
            unsigned char *bytes = NULL;
            size_t len = 0;
            char why[512];
            int got = store_bytes_read(e->db, shas[i], &bytes, &len, why, sizeof why);
            if (got == IS_ERR_NOT_FOUND) continue; /* deleted meanwhile */
            if (!got) got = engine_embed_image(e, bytes, len, vec, logits, NULL, why, sizeof why);
            free(bytes);
            if (got == IS_ERR_BUSY || got == IS_ERR_NOMEM || got == IS_ERR_UNAVAILABLE) {
                rc = is_fail(err, errlen, got, "%s", why);
                break;
            }
            if (got) {
                fprintf(stderr, "imgsearch: image %lld cannot be labelled: %s\n", (long long)ids[i], why);
                ++*failed;
                continue;
            }
            image_labels l;
            char text[LABELS_TEXT_MAX];
            labels_from_logits(logits, classes, &l);
            labels_format(&l, text, sizeof text);
            int64_t seq;
            pthread_mutex_lock(&e->write_lock);
            got = store_set_labels(e->db, ids[i], text, &seq, why, sizeof why);
            if (!got && store_shared(e->db)) {
                index_catch_up(e, NULL, 0); /* the change reaches this node's index like any other */
            } else if (!got) {
                pthread_rwlock_wrlock(&e->index_lock);
                got = index_put_labels(&e->idx, ids[i], text);
                e->idx.applied_seq = seq;
                pthread_rwlock_unlock(&e->index_lock);
                index_after_write(e);
            }
            pthread_mutex_unlock(&e->write_lock);
            if (got == IS_ERR_NOT_FOUND) continue;
            if (got) {
                rc = is_fail(err, errlen, got, "%s", why);
                break;
            }
            ++*labelled;
            if (progress) progress(*labelled + *failed, -1, ctx);
        }
    } while (!rc && n == LABEL_BATCH);
    free(shas);
    free(vec);
    free(logits);
    return rc;
}
