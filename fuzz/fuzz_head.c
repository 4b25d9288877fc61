/* fuzz_head.c — the embedding head's config (src/embed/head.h): models/<name>.head.json names the
 * head, its settings and its weights file, which head_load reads beside it.
 *
 * Input: the head JSON, written to a scratch directory that holds the real head weights under the
 * name the real config uses (a link to models/efficientnet_lite0.head.safetensors), loaded for the
 * network's 1280 features. Checks, beyond the sanitizers: a refusal is IS_ERR_MODEL or
 * IS_ERR_NOMEM with a reason (a weights name with a '/' never reaches outside the directory); a
 * head that loads has a valid name and 8..1280 dimensions, and applying it (with its float32 and
 * its bfloat16 weights) to a feature vector of pooled ReLU6 features (>= 0) gives a finite
 * unit-length vector of those dimensions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/head.h"
#include "fuzz_util.h"
#include "util/status.h"

#define IN_DIMS 1280

static char config_path[400];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = fuzz_scratch("head");
    char link_path[400];
    snprintf(config_path, sizeof config_path, "%s/h.head.json", dir);
    snprintf(link_path, sizeof link_path, "%s/efficientnet_lite0.head.safetensors", dir);
    if (symlink(IMGSEARCH_SOURCE_DIR "/models/efficientnet_lite0.head.safetensors", link_path)) {
        perror("fuzz_head: symlink");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(config_path, data, size);
    head *h = NULL;
    char err[512];
    int rc = head_load(config_path, IN_DIMS, &h, err, sizeof err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_head: %d %s\n", rc, rc ? err : "loaded");
    if (rc) {
        FUZZ_CHECK(h == NULL && (rc == IS_ERR_MODEL || rc == IS_ERR_NOMEM) && err[0]);
        return 0;
    }
    FUZZ_CHECK(h != NULL); /* the file exists, so there is a head or a refusal */
    int dims = head_dims(h);
    FUZZ_CHECK(dims >= 8 && dims <= IN_DIMS && head_name(h)[0]);
    float *x = malloc(sizeof(float) * IN_DIMS), *out = malloc(sizeof(float) * (size_t)dims);
    if (!x || !out) abort();
    for (int reduced = 0; reduced < 2; reduced++) { /* float32 weights, then their bfloat16 copy */
        for (int i = 0; i < IN_DIMS; i++) x[i] = (float)((i * 7919) % 101) / 50.0f; /* consumed as scratch */
        head_apply(h, reduced, x, 1, out);
        double ss = 0;
        for (int i = 0; i < dims; i++) {
            FUZZ_CHECK(isfinite(out[i]));
            ss += (double)out[i] * out[i];
        }
        FUZZ_CHECK(fabs(ss - 1.0) < 1e-3);
    }
    free(x);
    free(out);
    head_free(h);
    return 0;
}
