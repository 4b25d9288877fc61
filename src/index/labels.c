/* Image labels and the map that keeps them: labels.h. */
#include "index/labels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void labels_from_logits(const float *logits, int num_classes, image_labels *out) {
    out->n = 0;
    if (num_classes <= 0) return;
    float max = logits[0];
    for (int c = 1; c < num_classes; c++)
        if (logits[c] > max) max = logits[c];
    double sum = 0;
    for (int c = 0; c < num_classes; c++) sum += exp((double)(logits[c] - max));
    /* the LABELS_MAX largest, by insertion into a short sorted list */
    for (int c = 0; c < num_classes && c <= UINT16_MAX; c++) {
        float p = (float)(exp((double)(logits[c] - max)) / sum);
        if (p < LABELS_MIN_PROB || (out->n == LABELS_MAX && p <= out->prob[LABELS_MAX - 1])) continue;
        int at = out->n < LABELS_MAX ? out->n++ : LABELS_MAX - 1;
        while (at > 0 && out->prob[at - 1] < p) {
            out->prob[at] = out->prob[at - 1];
            out->cls[at] = out->cls[at - 1];
            at--;
        }
        out->prob[at] = p;
        out->cls[at] = (uint16_t)c;
    }
}

void labels_format(const image_labels *l, char *out, size_t outlen) {
    size_t at = (size_t)snprintf(out, outlen, "[");
    for (int i = 0; i < l->n && at < outlen; i++)
        at += (size_t)snprintf(out + at, outlen - at, "%s[%u,%.4f]", i ? "," : "", (unsigned)l->cls[i],
                               (double)l->prob[i]);
    if (at < outlen) snprintf(out + at, outlen - at, "]");
}

bool labels_parse(const char *text, int num_classes, image_labels *out) {
    out->n = 0;
    const char *p = text;
    if (*p++ != '[') return false;
    if (*p == ']') return p[1] == 0;
    for (;;) {
        unsigned cls;
        float prob;
        int used = 0;
        if (out->n == LABELS_MAX || sscanf(p, "[%u,%f]%n", &cls, &prob, &used) != 2 || !used) return false;
        if ((int)cls >= num_classes || !(prob >= 0.0f && prob <= 1.0f)) return false;
        out->cls[out->n] = (uint16_t)cls;
        out->prob[out->n++] = prob;
        p += used;
        if (*p == ']') return p[1] == 0;
        if (*p++ != ',') return false;
    }
}

float labels_score(const image_labels *l, const label_query *q) {
    float s = 0;
    for (int i = 0; i < l->n; i++)
        if (l->cls[i] < q->num_classes && q->classes[l->cls[i]]) s += l->prob[i];
    return s;
}

void labelmap_init(labelmap *m) {
    memset(m, 0, sizeof *m);
    idmap_init(&m->ids);
}

void labelmap_destroy(labelmap *m) {
    idmap_destroy(&m->ids);
    free(m->slots);
    free(m->free_slots);
    memset(m, 0, sizeof *m);
}

int labelmap_put(labelmap *m, int64_t id, const image_labels *l) {
    uint32_t slot;
    if (idmap_get(&m->ids, id, &slot)) {
        m->slots[slot] = *l;
        return 0;
    }
    bool reuse = m->nfree > 0;
    if (reuse) {
        slot = m->free_slots[m->nfree - 1];
    } else {
        if (m->nslots == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 64;
            image_labels *grown = realloc(m->slots, cap * sizeof *grown);
            if (!grown) return -1;
            m->slots = grown;
            m->cap = cap;
        }
        slot = (uint32_t)m->nslots;
    }
    if (idmap_put(&m->ids, id, slot)) return -1;
    if (reuse) m->nfree--;
    else m->nslots++;
    m->slots[slot] = *l;
    return 0;
}

void labelmap_remove(labelmap *m, int64_t id) {
    uint32_t slot;
    if (!idmap_get(&m->ids, id, &slot)) return;
    idmap_remove(&m->ids, id);
    if (m->nfree == m->free_cap) {
        size_t cap = m->free_cap ? m->free_cap * 2 : 64;
        uint32_t *grown = realloc(m->free_slots, cap * sizeof *grown);
        if (!grown) return; /* the slot is not reused: 40 bytes lost until the map goes, not an error */
        m->free_slots = grown;
        m->free_cap = cap;
    }
    m->free_slots[m->nfree++] = slot;
}

const image_labels *labelmap_get(const labelmap *m, int64_t id) {
    uint32_t slot;
    return idmap_get(&m->ids, id, &slot) ? &m->slots[slot] : NULL;
}
