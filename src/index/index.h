/* index.h — what every vector index shares: hits, the filter predicate, the top-k collector.
 *
 * Distances are cosine distances (1 - a·b) of L2-normalised vectors: 0 is identical. Results are
 * ordered nearest first, ties broken by smaller id, so equal inputs give equal outputs. */
#ifndef IMGSEARCH_INDEX_H
#define IMGSEARCH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t id;
    float dist;
} index_hit;

/* Decides whether an id may appear in results (a compiled metadata filter, typically). It is
 * called from the searching thread and must not modify the index. NULL accepts everything. */
typedef bool (*index_accept_fn)(int64_t id, void *ctx);

/* Keeps the k best hits seen so far in a max-heap (the worst of them on top). */
typedef struct {
    index_hit *heap; /* caller's buffer of k entries */
    int k, n;
} topk;

static inline bool hit_worse(index_hit a, index_hit b) {
    return a.dist > b.dist || (a.dist == b.dist && a.id > b.id);
}

void topk_init(topk *t, index_hit *buf, int k);
/* Would a hit at this distance enter? (cheap test before computing anything else) */
static inline bool topk_admits(const topk *t, float dist) {
    return t->n < t->k || dist <= t->heap[0].dist;
}
void topk_push(topk *t, index_hit h);
/* Sorts the kept hits nearest first in place; returns how many there are. */
int topk_finish(topk *t);

#endif
