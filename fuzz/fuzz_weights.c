/* fuzz_weights.c — the safetensors loader (src/embed/weights.h): model and head weights are files
 * a user downloads or is handed (tools/fetch-model writes them, but nothing stops another file
 * being put there).
 *
 * Input: a whole safetensors file, loaded from memory (weights_load_buffer, which weights_load
 * runs on the mapped file). Checks, beyond the sanitizers: the loader keeps one tensor per name of
 * the header; each lies inside the data area with dtype size × shape bytes, aligned to its element
 * size, and every byte of it is read here (ASan catches a tensor reaching outside the input);
 * weights_get_f32 accepts an F32 tensor with its own shape and refuses it with another. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/weights.h"
#include "fuzz_util.h"
#include "util/status.h"

static size_t elem_size(const char *dtype) {
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
    if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64")) return 8;
    if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16") || !strcmp(dtype, "I16")) return 2;
    if (!strcmp(dtype, "U8") || !strcmp(dtype, "I8") || !strcmp(dtype, "BOOL")) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    weights *w = NULL;
    char err[512];
    int rc = weights_load_buffer(data, size, "input", &w, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(w == NULL && (rc == IS_ERR_MODEL || rc == IS_ERR_NOMEM) && err[0]);
        return 0;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    FUZZ_CHECK(hlen <= size - 8);
    const uint8_t *area = data + 8 + hlen, *end = data + size;
    json_t *hdr = json_loadb((const char *)data + 8, hlen, 0, NULL);
    FUZZ_CHECK(json_is_object(hdr));
    size_t names = json_object_size(hdr) - (json_object_get(hdr, "__metadata__") ? 1 : 0);
    FUZZ_CHECK(weights_count(w) == names);
    const char *name;
    json_t *desc;
    unsigned sum = 0;
    json_object_foreach(hdr, name, desc) {
        if (!strcmp(name, "__metadata__")) continue;
        const weights_tensor *t = weights_get(w, name);
        FUZZ_CHECK(t && !strcmp(t->name, name));
        size_t es = elem_size(t->dtype), numel = 1;
        FUZZ_CHECK(es && t->ndims >= 0 && t->ndims <= WEIGHTS_MAX_DIMS);
        for (int d = 0; d < t->ndims; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            numel *= (size_t)t->shape[d];
        }
        FUZZ_CHECK(t->nbytes == numel * es);
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= area && p <= end && t->nbytes <= (size_t)(end - p));
        FUZZ_CHECK((uintptr_t)p % es == 0);
        for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
        if (!strcmp(t->dtype, "F32")) {
            const float *f = NULL;
            FUZZ_CHECK(weights_get_f32(w, name, t->ndims, t->shape, &f, err, sizeof err) == IS_OK);
            FUZZ_CHECK((const void *)f == t->data);
            int64_t other[WEIGHTS_MAX_DIMS];
            memcpy(other, t->shape, sizeof other);
            if (t->ndims) {
                other[0]++;
                FUZZ_CHECK(weights_get_f32(w, name, t->ndims, other, &f, err, sizeof err) == IS_ERR_MODEL);
            }
        }
    }
    /* a name that is not there */
    FUZZ_CHECK(weights_get(w, "\x01 not a tensor") == NULL);
    json_decref(hdr);
    weights_free(w);
    volatile unsigned sink = sum; /* the reads above are not optimised away */
    (void)sink;
    return 0;
}
