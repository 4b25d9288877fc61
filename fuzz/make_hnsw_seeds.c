/* make_hnsw_seeds.c — writes the HNSW snapshot seeds of fuzz_hnsw into a directory, made by the
 * real hnsw_save from small random graphs (scripts/fuzz --seeds; fuzz/README.md):
 *   empty (no node), float32 and int8 graphs of a few dozen 8-dimensional vectors (several
 *   layers), one with marked deletes still in it, one with repaired (free) slots.
 * Usage: fuzz_make_hnsw_seeds DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "index/hnsw.h"
#include "util/status.h"

static uint64_t rng = 88172645463325252ull;

static float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

static int make(const char *dir, const char *name, hnsw_storage storage, int n, int m, int dels, bool repair) {
    hnsw_params p;
    hnsw_params_default(&p, 8);
    p.m = m;
    p.ef_construction = 32;
    p.ef_search = 16;
    p.storage = storage;
    p.seed = 7;
    hnsw_index *h = hnsw_new(&p);
    if (!h) return 1;
    for (int i = 0; i < n; i++) {
        float v[8], ss = 0;
        for (int d = 0; d < 8; d++) ss += (v[d] = uniform()) * v[d];
        for (int d = 0; d < 8; d++) v[d] /= sqrtf(ss);
        if (hnsw_add(h, 1 + i, v)) return 1;
    }
    for (int i = 0; i < dels; i++)
        if (hnsw_remove(h, 1 + 3 * i)) return 1;
    if (repair && hnsw_repair(h)) return 1;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = hnsw_save(h, path, 1000 + n, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    hnsw_free(h);
    return rc != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int bad = make(dir, "empty.hnsw", HNSW_FLOAT32, 0, 4, 0, false) +
              make(dir, "float32_m2_24.hnsw", HNSW_FLOAT32, 24, 2, 0, false) +
              make(dir, "float32_m4_40.hnsw", HNSW_FLOAT32, 40, 4, 0, false) +
              make(dir, "int8_m3_20.hnsw", HNSW_INT8, 20, 3, 0, false) +
              make(dir, "float32_marked_deletes.hnsw", HNSW_FLOAT32, 20, 2, 1, false) +
              make(dir, "float32_free_slots.hnsw", HNSW_FLOAT32, 20, 2, 4, true);
    return bad ? 1 : 0;
}
