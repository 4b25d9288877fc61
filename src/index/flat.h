/* flat.h — the exact index: every vector in one contiguous matrix, searched by a full scan.
 *
 * Exact by construction, so it is the reference the HNSW is measured against and the planner's
 * choice when a filter leaves few candidates. Rows are packed: removing an id moves the last row
 * into its place, so memory stays proportional to the live count.
 *
 * Threads: any number of concurrent searches, or one writer; the owner (the engine) enforces it
 * with its reader-writer lock. Memory: vectors are copied in; flat_get's pointer is valid until
 * the next write. */
#ifndef IMGSEARCH_FLAT_H
#define IMGSEARCH_FLAT_H

#include "index/index.h"

typedef struct flat_index flat_index;

flat_index *flat_new(int dims); /* NULL when out of memory or dims < 1 */
void flat_free(flat_index *f);

int flat_dims(const flat_index *f);
size_t flat_count(const flat_index *f);

/* Adds a copy of vec under id. IS_ERR_INVALID if id is present, IS_ERR_NOMEM. */
int flat_add(flat_index *f, int64_t id, const float *vec);
/* IS_ERR_NOT_FOUND if id is absent. */
int flat_remove(flat_index *f, int64_t id);
/* The stored vector, or NULL. */
const float *flat_get(const flat_index *f, int64_t id);
/* The id of row i (0 <= i < count), for walking every entry. */
int64_t flat_id_at(const flat_index *f, size_t i);

/* The k nearest accepted vectors (k >= 1), nearest first, into out[k]; *nout gets how many
 * (fewer when fewer are accepted). */
int flat_search(const flat_index *f, const float *query, int k, index_accept_fn accept, void *ctx,
                index_hit *out, int *nout);

/* The k nearest among the listed ids only: each id at most once; ids not present are skipped. */
int flat_search_ids(const flat_index *f, const float *query, const int64_t *ids, size_t nids, int k,
                    index_hit *out, int *nout);

#endif
