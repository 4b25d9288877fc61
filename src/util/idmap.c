#include "util/idmap.h"

#include <stdlib.h>

static size_t slot_of(int64_t key, size_t cap) {
    /* splitmix64 finaliser: ids are often sequential, so spread them over the table */
    uint64_t x = (uint64_t)key;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

void idmap_init(idmap *m) { *m = (idmap){0}; }

void idmap_destroy(idmap *m) {
    free(m->keys);
    free(m->vals);
    free(m->used);
    idmap_init(m);
}

static void insert_fresh(idmap *m, int64_t key, uint32_t val) {
    size_t i = slot_of(key, m->cap);
    while (m->used[i]) i = (i + 1) & (m->cap - 1);
    m->used[i] = true;
    m->keys[i] = key;
    m->vals[i] = val;
    m->count++;
}

static int grow(idmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    idmap bigger = {.keys = malloc(cap * sizeof(int64_t)), .vals = malloc(cap * sizeof(uint32_t)),
                    .used = calloc(cap, sizeof(bool)), .cap = cap};
    if (!bigger.keys || !bigger.vals || !bigger.used) {
        idmap_destroy(&bigger);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i]) insert_fresh(&bigger, m->keys[i], m->vals[i]);
    idmap_destroy(m);
    *m = bigger;
    return 0;
}

static bool find(const idmap *m, int64_t key, size_t *at) {
    if (!m->cap) return false;
    for (size_t i = slot_of(key, m->cap); m->used[i]; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == key) {
            *at = i;
            return true;
        }
    return false;
}

int idmap_put(idmap *m, int64_t key, uint32_t val) {
    size_t at;
    if (find(m, key, &at)) {
        m->vals[at] = val;
        return 0;
    }
    if ((m->count + 1) * 10 > m->cap * 7 && grow(m)) return -1;
    insert_fresh(m, key, val);
    return 0;
}

bool idmap_get(const idmap *m, int64_t key, uint32_t *val) {
    size_t at;
    if (!find(m, key, &at)) return false;
    *val = m->vals[at];
    return true;
}

bool idmap_remove(idmap *m, int64_t key) {
    size_t hole;
    if (!find(m, key, &hole)) return false;
    m->used[hole] = false;
    m->count--;
    /* Backward shift: move later entries of the probe run into the hole when their home slot
     * does not lie (cyclically) between the hole and their current slot. */
    for (size_t i = (hole + 1) & (m->cap - 1); m->used[i]; i = (i + 1) & (m->cap - 1)) {
        size_t home = slot_of(m->keys[i], m->cap);
        bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (stays) continue;
        m->keys[hole] = m->keys[i];
        m->vals[hole] = m->vals[i];
        m->used[hole] = true;
        m->used[i] = false;
        hole = i;
    }
    return true;
}
