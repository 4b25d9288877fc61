/* fuzz_filter.c — the metadata filter (src/index/filter.h): compiling filter text a client sends
 * (POST /image/search, /data/query, GET /images?filter=) and matching the compiled filter against
 * metadata documents.
 *
 * Input: filter text, optionally followed by a NUL byte and a JSON document (JSON text holds no raw
 * NUL, so the split is unambiguous). Without a document the filter is matched against its own JSON
 * (equality paths then find their values). Checks, beyond the sanitizers: compiling is
 * deterministic; {"$not": F} matches exactly where F does not; {"$or": [F, F]} and {"$and": [F]}
 * match exactly where F does; a NULL document matches as {} does. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "index/filter.h"
#include "util/status.h"

/* prefix + text + suffix, compiled (NULL when it does not compile, e.g. one level too deep). */
static filter *compile_wrapped(const char *prefix, const char *text, size_t len, const char *suffix) {
    size_t lp = strlen(prefix), ls = strlen(suffix);
    char *buf = malloc(lp + len + ls);
    if (!buf) abort();
    memcpy(buf, prefix, lp);
    memcpy(buf + lp, text, len);
    memcpy(buf + lp + len, suffix, ls);
    filter *f = NULL;
    char err[512];
    if (filter_compile_text(buf, lp + len + ls, &f, err, sizeof err)) f = NULL;
    free(buf);
    return f;
}

static void check_doc(const filter *f, const filter *neg, const filter *or2, const filter *and1, const json_t *doc) {
    bool m = filter_match(f, doc);
    FUZZ_CHECK(filter_match(f, doc) == m); /* no hidden state */
    if (neg) FUZZ_CHECK(filter_match(neg, doc) == !m);
    if (or2) FUZZ_CHECK(filter_match(or2, doc) == m);
    if (and1) FUZZ_CHECK(filter_match(and1, doc) == m);
    if (filter_is_all(f)) FUZZ_CHECK(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    char err[512];
    filter *f = NULL;
    int rc = filter_compile_text(text, flen, &f, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(f == NULL);
        FUZZ_CHECK(rc == IS_ERR_INVALID || rc == IS_ERR_TOO_LARGE || rc == IS_ERR_NOMEM);
        FUZZ_CHECK(err[0]);
        return 0;
    }
    FUZZ_CHECK(f != NULL);
    filter *again = NULL;
    FUZZ_CHECK(filter_compile_text(text, flen, &again, err, sizeof err) == IS_OK);

    filter *neg = compile_wrapped("{\"$not\":", text, flen, "}");
    filter *or2 = NULL, *and1 = compile_wrapped("{\"$and\":[", text, flen, "]}");
    {
        char *twice = malloc(2 * flen + 1);
        if (!twice) abort();
        memcpy(twice, text, flen);
        twice[flen] = ',';
        memcpy(twice + flen + 1, text, flen);
        or2 = compile_wrapped("{\"$or\":[", twice, 2 * flen + 1, "]}");
        free(twice);
    }

    json_t *doc = NULL;
    if (nul) doc = json_loadb((const char *)nul + 1, size - flen - 1, JSON_DECODE_ANY, NULL);
    else doc = json_loadb(text, flen, JSON_DECODE_ANY, NULL);
    json_t *empty = json_object();
    if (!empty) abort();
    check_doc(f, neg, or2, and1, doc);
    check_doc(f, neg, or2, and1, NULL);
    check_doc(f, neg, or2, and1, empty);
    FUZZ_CHECK(filter_match(f, NULL) == filter_match(f, empty));
    FUZZ_CHECK(filter_match(f, doc) == filter_match(again, doc));
    /* each member of an object document, and each element of an array, as a document of its own */
    if (json_is_object(doc)) {
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v) check_doc(f, neg, or2, and1, v);
    } else if (json_is_array(doc)) {
        size_t i;
        json_t *v;
        json_array_foreach(doc, i, v) check_doc(f, neg, or2, and1, v);
    }
    json_decref(empty);
    json_decref(doc);
    filter_free(neg);
    filter_free(or2);
    filter_free(and1);
    filter_free(again);
    filter_free(f);
    return 0;
}
