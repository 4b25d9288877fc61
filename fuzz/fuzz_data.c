/* fuzz_data.c — the metadata check (src/engine/engine_data.h) every client's metadata passes
 * (POST /image/add's data field, POST /data/{id}) before it is stored and kept parsed in the index.
 *
 * Input: the metadata text (cut at a NUL byte, as the API refuses those before). Checked with the
 * defaults (engine.h) and with small limits, so that every bound is reached by short inputs.
 * Checks, beyond the sanitizers: a success is a JSON object within the limits whose stored form is
 * at most max_bytes; normalising the stored form again gives it back unchanged; a refusal says why
 * with IS_ERR_INVALID or IS_ERR_TOO_LARGE. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_data.h"
#include "fuzz_util.h"
#include "util/status.h"

static int depth_of(const json_t *v) {
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            int x = depth_of(c);
            if (x > d) d = x;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            int x = depth_of(c);
            if (x > d) d = x;
        }
        return d + 1;
    }
    return 0;
}

static int keys_of(const json_t *v) {
    int n = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) n += 1 + keys_of(c);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) n += keys_of(c);
    }
    return n;
}

static void run(const engine_data_limits *lim, const char *text) {
    char err[512] = "";
    char *out = NULL;
    int rc = engine_data_normalise(lim, text, &out, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(rc == IS_ERR_INVALID || rc == IS_ERR_TOO_LARGE || rc == IS_ERR_NOMEM);
        FUZZ_CHECK(err[0]);
        return;
    }
    FUZZ_CHECK(out && strlen(out) <= lim->max_bytes);
    json_error_t jerr;
    json_t *doc = json_loads(out, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_CHECK(json_is_object(doc));
    FUZZ_CHECK(depth_of(doc) <= lim->max_depth);
    FUZZ_CHECK(keys_of(doc) <= lim->max_keys);
    json_decref(doc);
    char *again = NULL;
    FUZZ_CHECK(engine_data_normalise(lim, out, &again, err, sizeof err) == IS_OK);
    FUZZ_CHECK(!strcmp(again, out));
    free(again);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    const engine_data_limits defaults = {ENGINE_DATA_MAX_BYTES, ENGINE_DATA_MAX_KEYS, ENGINE_DATA_MAX_DEPTH};
    const engine_data_limits small = {64, 4, 2};
    run(&defaults, text);
    run(&small, text);
    free(text);
    return 0;
}
