/*
 * The filtered-search planner: with a metadata filter, either walk the HNSW graph admitting only
 * matching nodes, or rank the matching ids exactly. A filtered walk costs about ef / p node
 * visits (p = the matching fraction); the exact path costs one filter test per image plus p × N
 * distances. The two cross where p² × N is a constant times ef; the constant is measured by
 * bench/ann.py (its filtered table) and is PLANNER_CROSSOVER.
 *
 * Pure functions of their arguments: thread-safe, nothing owned.
 */
#ifndef IMGSEARCH_PLANNER_H
#define IMGSEARCH_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index.h"

/* How many live ids the caller samples to estimate p. 512 gives p ± 2 % (one standard error)
 * near the crossover, which is all the decision needs. */
#define PLANNER_SAMPLE 512

/* p² × N below PLANNER_CROSSOVER × ef → exact. */
#define PLANNER_CROSSOVER 25.0

/* The fraction of `ids` the filter accepts (0 when n is 0). */
double planner_fraction(const int64_t *ids, size_t n, index_accept_fn accept, void *ctx);

/* true when ranking the matching ids exactly is expected to be faster than a filtered walk. */
bool planner_prefers_exact(double fraction, size_t count, int ef);

#endif
