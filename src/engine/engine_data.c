/* engine_data.c — metadata checked against the engine's limits (engine_data.h). */
#include "engine/engine_data.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

/* Counts object members below v into *keys and fails once the document is deeper than max_depth
 * or has more than max_keys members. */
static bool data_within(const json_t *v, int depth, const engine_data_limits *lim, int *keys, bool *too_deep) {
    if (!json_is_object(v) && !json_is_array(v)) return true;
    if (depth > lim->max_depth) {
        *too_deep = true;
        return false;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) {
            if (++*keys > lim->max_keys || !data_within(child, depth + 1, lim, keys, too_deep)) return false;
        }
    } else {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            if (!data_within(child, depth + 1, lim, keys, too_deep)) return false;
        }
    }
    return true;
}

int engine_data_normalise(const engine_data_limits *lim, const char *text, char **out, char *err, size_t errlen) {
    size_t len = strlen(text);
    if (len > lim->max_bytes)
        return is_fail(err, errlen, IS_ERR_TOO_LARGE, "data is %zu bytes, over the limit of %zu bytes (--max-data-bytes)",
                       len, lim->max_bytes);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return is_fail(err, errlen, IS_ERR_INVALID, "data is not valid JSON: %s at line %d, column %d", jerr.text,
                       jerr.line, jerr.column);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return is_fail(err, errlen, IS_ERR_INVALID, "data must be a JSON object");
    }
    int keys = 0;
    bool too_deep = false;
    if (!data_within(doc, 1, lim, &keys, &too_deep)) {
        json_decref(doc);
        if (too_deep)
            return is_fail(err, errlen, IS_ERR_TOO_LARGE, "data is nested more than %d levels deep (--max-data-depth)",
                           lim->max_depth);
        return is_fail(err, errlen, IS_ERR_TOO_LARGE, "data has more than %d keys (--max-data-keys)", lim->max_keys);
    }
    *out = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(doc);
    if (!*out) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (strlen(*out) > lim->max_bytes) { /* \u escapes can make the stored form longer */
        free(*out);
        *out = NULL;
        return is_fail(err, errlen, IS_ERR_TOO_LARGE, "data is over the limit of %zu bytes once stored (--max-data-bytes)",
                       lim->max_bytes);
    }
    return IS_OK;
}
