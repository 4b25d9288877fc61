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

/* p² × N below PLANNER_CROSSOVER × ef → exact. Measured by bench/ann.py at ef 64: the two paths
 * cross near p = 1.4 % on 1,000,000 × 128-d (p²N/ef ≈ 3) and near p = 20 % on openclipart's
 * 7,605 × 1280-d (≈ 5-7). The service's filter is a JSON match per image, dearer than the
 * bench's, which favours the walk further; 5 sits in the measured range. */
#define PLANNER_CROSSOVER 5.0

/* The fraction of `ids` the filter accepts (0 when n is 0). */
double planner_fraction(const int64_t *ids, size_t n, index_accept_fn accept, void *ctx);

/* true when ranking the matching ids exactly is expected to be faster than a filtered walk. */
bool planner_prefers_exact(double fraction, size_t count, int ef);

#endif
