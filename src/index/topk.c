#include "index/index.h"

#include <stdlib.h>

void topk_init(topk *t, index_hit *buf, int k) {
    t->heap = buf;
    t->k = k;
    t->n = 0;
}

static void sift_down(index_hit *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && hit_worse(h[l], h[w])) w = l;
        if (r < n && hit_worse(h[r], h[w])) w = r;
        if (w == i) return;
        index_hit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

void topk_push(topk *t, index_hit h) {
    if (t->k <= 0) return;
    if (t->n < t->k) {
        int i = t->n++;
        t->heap[i] = h;
        while (i > 0 && hit_worse(t->heap[i], t->heap[(i - 1) / 2])) {
            index_hit tmp = t->heap[i];
            t->heap[i] = t->heap[(i - 1) / 2];
            t->heap[(i - 1) / 2] = tmp;
            i = (i - 1) / 2;
        }
    } else if (hit_worse(t->heap[0], h)) {
        t->heap[0] = h;
        sift_down(t->heap, t->n, 0);
    }
}

int topk_finish(topk *t) {
    /* heap sort: repeatedly move the worst to the end */
    for (int n = t->n; n > 1; n--) {
        index_hit tmp = t->heap[0];
        t->heap[0] = t->heap[n - 1];
        t->heap[n - 1] = tmp;
        sift_down(t->heap, n - 1, 0);
    }
    return t->n;
}
