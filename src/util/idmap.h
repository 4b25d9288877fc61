/* idmap.h — an open-addressing hash map from int64 ids to uint32 slots.
 *
 * Used by the indexes to find a vector's row from its image id. Linear probing with backward-
 * shift deletion (no tombstones, so lookups stay short after many deletes); grows at 70% load.
 * Not thread-safe: the owner serialises writers and keeps readers out while writing. */
#ifndef IMGSEARCH_IDMAP_H
#define IMGSEARCH_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t *keys;
    uint32_t *vals;
    bool *used;
    size_t cap;   /* a power of two, or 0 before the first insert */
    size_t count;
} idmap;

void idmap_init(idmap *m);
void idmap_destroy(idmap *m);

/* Inserts or replaces. Returns 0, or -1 when memory runs out (the map is unchanged). */
int idmap_put(idmap *m, int64_t key, uint32_t val);
/* Finds key; returns true and sets *val when present. */
bool idmap_get(const idmap *m, int64_t key, uint32_t *val);
/* Removes key; returns whether it was present. */
bool idmap_remove(idmap *m, int64_t key);

#endif
