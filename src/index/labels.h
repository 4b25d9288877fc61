/* labels.h — each image's most probable ImageNet classes, kept beside the index so that a search
 * can be restricted to "images showing a dog" without reading the store.
 *
 * An image's labels are its LABELS_MAX most probable classes with probability ≥ LABELS_MIN_PROB
 * (softmax of the classifier's scores), stored as JSON text `[[class, prob], ...]`, most probable
 * first (the store's `labels` column; NULL for images added before labels existed, until reindex
 * or reembed computes them). A query names a set of classes (concepts.h turns a word into one);
 * an image's score is the sum of the probabilities of its labels in that set, and it matches when
 * the score is at least the query's minimum.
 *
 * labelmap: id → labels, compact (about 40 bytes an image). Not thread-safe: the owner (the
 * engine's index state) serialises writers and keeps readers out while writing, like its other
 * per-image records. */
#ifndef IMGSEARCH_LABELS_H
#define IMGSEARCH_LABELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/idmap.h"

#define LABELS_MAX 5
#define LABELS_MIN_PROB 0.01f
#define LABELS_TEXT_MAX (LABELS_MAX * 24 + 4) /* the longest JSON text labels_format writes */

typedef struct {
    uint16_t cls[LABELS_MAX];
    float prob[LABELS_MAX];
    int n;
} image_labels;

/* The labels of one image from its classifier scores (num_classes raw logits). */
void labels_from_logits(const float *logits, int num_classes, image_labels *out);
/* JSON text of labels (probabilities to 4 decimals) into out (LABELS_TEXT_MAX bytes). */
void labels_format(const image_labels *l, char *out, size_t outlen);
/* Parses labels_format's text; false for anything else (or a class ≥ num_classes). */
bool labels_parse(const char *text, int num_classes, image_labels *out);

/* A query: the classes it covers (num_classes bytes, 1 = covered) and the smallest score that
 * matches. */
typedef struct {
    const unsigned char *classes;
    int num_classes;
    float min_score;
} label_query;

/* Sum of the probabilities of l's labels that q covers. */
float labels_score(const image_labels *l, const label_query *q);

typedef struct {
    idmap ids;            /* id → slot */
    image_labels *slots;
    uint32_t *free_slots; /* slots given back by removals, reused first */
    size_t nslots, cap, nfree, free_cap;
} labelmap;

void labelmap_init(labelmap *m);
void labelmap_destroy(labelmap *m);
/* Inserts or replaces id's labels. 0, or -1 when memory runs out (the map is unchanged). */
int labelmap_put(labelmap *m, int64_t id, const image_labels *l);
void labelmap_remove(labelmap *m, int64_t id);
/* id's labels, or NULL when it has none. Valid until the next put or remove. */
const image_labels *labelmap_get(const labelmap *m, int64_t id);

#endif
