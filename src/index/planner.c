/* The filtered-search planner; the cost model is in planner.h. */
#include "planner.h"

double planner_fraction(const int64_t *ids, size_t n, index_accept_fn accept, void *ctx) {
    if (!n) return 0;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) hits += accept(ids[i], ctx);
    return (double)hits / (double)n;
}

bool planner_prefers_exact(double fraction, size_t count, int ef) {
    return fraction * fraction * (double)count < PLANNER_CROSSOVER * (double)ef;
}
