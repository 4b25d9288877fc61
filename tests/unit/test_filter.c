/* Unit tests for the metadata filter language: every operator and combinator against documents,
 * and every kind of malformed filter refused with a message that says what and where. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/filter.h"
#include "util/status.h"

static const char *DOCS[] = {
    /* 0 */ "{\"breed\": \"labrador\", \"age\": 3, \"owner\": {\"city\": \"Oslo\"}, \"tags\": [\"dog\", \"black\"]}",
    /* 1 */ "{\"breed\": \"pug\", \"age\": 12.5, \"owner\": {\"city\": \"Bergen\"}, \"tags\": []}",
    /* 2 */ "{\"breed\": \"labrador\", \"age\": 1, \"owner\": null, \"vaccinated\": true}",
    /* 3 */ "{}",
    /* 4 */ "{\"breed\": \"Labrador\", \"age\": \"3\", \"size\": [1, 2]}",
};
#define NDOCS (sizeof DOCS / sizeof *DOCS)

/* Which documents does the filter match, as a bit mask of DOCS indices. */
static unsigned matches(const char *spec) {
    char err[512];
    filter *f = NULL;
    int rc = filter_compile_text(spec, strlen(spec), &f, err, sizeof err);
    if (rc) fail_msg("%s: %s", spec, err);
    unsigned mask = 0;
    for (size_t i = 0; i < NDOCS; i++) {
        json_t *doc = json_loads(DOCS[i], 0, NULL);
        assert_non_null(doc);
        if (filter_match(f, doc)) mask |= 1u << i;
        json_decref(doc);
    }
    filter_free(f);
    return mask;
}

static unsigned bits_list(int n, ...) {
    va_list ap;
    unsigned m = 0;
    va_start(ap, n);
    for (int i = 0; i < n; i++) m |= 1u << va_arg(ap, int);
    va_end(ap);
    return m;
}
#define B1(a) bits_list(1, a)
#define B2(a, b) bits_list(2, a, b)
#define B3(a, b, c) bits_list(3, a, b, c)
#define ALL ((1u << NDOCS) - 1)

static void test_equality_and_paths(void **state) {
    (void)state;
    assert_int_equal(matches("{}"), ALL);
    assert_int_equal(matches("{\"breed\": \"labrador\"}"), B2(0, 2)); /* case-sensitive */
    assert_int_equal(matches("{\"breed\": \"labrador\", \"age\": 1}"), B1(2));
    assert_int_equal(matches("{\"age\": 3.0}"), B1(0));               /* 3 == 3.0, "3" != 3 */
    assert_int_equal(matches("{\"owner.city\": \"Oslo\"}"), B1(0));
    assert_int_equal(matches("{\"owner\": {\"city\": \"Oslo\"}}"), B1(0)); /* whole-object equality */
    assert_int_equal(matches("{\"owner\": null}"), B1(2));
    assert_int_equal(matches("{\"tags\": \"dog\"}"), B1(0));          /* an array holding it */
    assert_int_equal(matches("{\"tags\": []}"), B1(1));               /* the whole array */
    assert_int_equal(matches("{\"size\": [1, 2]}"), B1(4));
    assert_int_equal(matches("{\"vaccinated\": true}"), B1(2));
    assert_int_equal(matches("{\"owner.city.name\": \"Oslo\"}"), 0);  /* path through a string */
}

static void test_operators(void **state) {
    (void)state;
    assert_int_equal(matches("{\"age\": {\"$gt\": 2}}"), B2(0, 1));  /* "3" is a string: no */
    assert_int_equal(matches("{\"age\": {\"$gte\": 3, \"$lt\": 12.5}}"), B1(0));
    assert_int_equal(matches("{\"age\": {\"$lte\": 3}}"), B2(0, 2));
    assert_int_equal(matches("{\"breed\": {\"$lt\": \"m\"}}"), B3(0, 2, 4)); /* bytewise: "L" < "l" < "m" */
    assert_int_equal(matches("{\"breed\": {\"$ne\": \"labrador\"}}"), B3(1, 3, 4)); /* missing matches $ne */
    assert_int_equal(matches("{\"breed\": {\"$eq\": \"pug\"}}"), B1(1));
    assert_int_equal(matches("{\"breed\": {\"$in\": [\"pug\", \"Labrador\"]}}"), B2(1, 4));
    assert_int_equal(matches("{\"breed\": {\"$nin\": [\"pug\", \"Labrador\"]}}"), B3(0, 2, 3));
    assert_int_equal(matches("{\"tags\": {\"$in\": [\"black\", \"white\"]}}"), B1(0));
    assert_int_equal(matches("{\"owner\": {\"$exists\": true}}"), B3(0, 1, 2)); /* null is present */
    assert_int_equal(matches("{\"owner.city\": {\"$exists\": false}}"), B3(2, 3, 4));
    assert_int_equal(matches("{\"size\": {\"$gt\": 1}}"), B1(4));    /* any element */
    assert_int_equal(matches("{\"age\": {\"$not\": {\"$gt\": 2}}}"), B3(2, 3, 4));
}

static void test_combinators(void **state) {
    (void)state;
    assert_int_equal(matches("{\"$or\": [{\"breed\": \"pug\"}, {\"age\": 1}]}"), B2(1, 2));
    assert_int_equal(matches("{\"$and\": [{\"breed\": \"labrador\"}, {\"age\": {\"$gt\": 2}}]}"), B1(0));
    assert_int_equal(matches("{\"$not\": {\"breed\": \"labrador\"}}"), B3(1, 3, 4));
    assert_int_equal(matches("{\"$or\": [{\"$not\": {\"age\": {\"$exists\": true}}}, {\"owner.city\": \"Bergen\"}]}"),
                     B2(1, 3));
    assert_int_equal(matches("{\"breed\": \"labrador\", \"$or\": [{\"age\": 3}, {\"vaccinated\": true}]}"), B2(0, 2));
}

static void expect_error(const char *spec, const char *needle) {
    char err[512] = "";
    filter *f = NULL;
    int rc = filter_compile_text(spec, strlen(spec), &f, err, sizeof err);
    if (rc != IS_ERR_INVALID) fail_msg("%s: expected IS_ERR_INVALID, got %d", spec, rc);
    assert_null(f);
    if (!strstr(err, needle)) fail_msg("%s: message \"%s\" lacks \"%s\"", spec, err, needle);
}

static void test_invalid_filters(void **state) {
    (void)state;
    expect_error("{\"breed\": ", "not valid JSON");
    expect_error("[1, 2]", "filter: must be a JSON object, not an array");
    expect_error("\"labrador\"", "filter: must be a JSON object, not a string");
    expect_error("{\"age\": {\"$gt\": [1]}}", "filter.age.$gt: needs a number or a string, not an array");
    expect_error("{\"age\": {\"$in\": 3}}", "filter.age.$in: needs an array of values, not a number");
    expect_error("{\"age\": {\"$exists\": 1}}", "filter.age.$exists: needs true or false");
    expect_error("{\"age\": {\"$between\": [1, 2]}}", "filter.age.$between: unknown operator \"$between\"");
    expect_error("{\"$nor\": []}", "filter.$nor: unknown operator \"$nor\" here");
    expect_error("{\"$or\": []}", "filter.$or: needs a non-empty array of filters");
    expect_error("{\"$or\": {\"a\": 1}}", "filter.$or: needs a non-empty array of filters");
    expect_error("{\"$and\": [{\"a\": 1}, 5]}", "filter.$and[1]: must be a JSON object, not a number");
    expect_error("{\"$and\": [{\"a\": {\"$lt\": null}}]}", "filter.$and[0].a.$lt: needs a number or a string, not null");
    expect_error("{\"$not\": [1]}", "filter.$not: needs a filter object, not an array");
    expect_error("{\"a\": {\"$gt\": 1, \"b\": 2}}", "filter.a: mixes operators and field names");
    expect_error("{\"a..b\": 1}", "filter.a..b: field path \"a..b\" has an empty part");
    expect_error("{\"\": 1}", "empty field name");
    expect_error("{\"a\": {\"$not\": 5}}", "filter.a.$not: needs an object of operators");
    expect_error("{\"a\": {\"$not\": {\"b\": 5}}}", "filter.a.$not: takes operators, not the field \"b\"");
    expect_error("{\"a\": 1, \"a\": 2}", "duplicate object key");
    /* nesting without end is refused, not recursed into */
    char deep[4096] = "";
    for (int i = 0; i < 40; i++) strcat(deep, "{\"$not\": ");
    strcat(deep, "{\"a\": 1}");
    for (int i = 0; i < 40; i++) strcat(deep, "}");
    expect_error(deep, "nested too deeply");
}

static void test_null_and_empty(void **state) {
    (void)state;
    filter *f = NULL;
    char err[256];
    assert_int_equal(filter_compile(NULL, &f, err, sizeof err), IS_OK);
    assert_true(filter_is_all(f));
    assert_true(filter_match(f, NULL));
    filter_free(f);
    json_t *spec = json_loads("{\"a\": {\"$exists\": false}}", 0, NULL);
    assert_int_equal(filter_compile(spec, &f, err, sizeof err), IS_OK);
    json_decref(spec); /* the filter keeps its own copy */
    assert_false(filter_is_all(f));
    assert_true(filter_match(f, NULL));
    filter_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality_and_paths),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_combinators),
        cmocka_unit_test(test_invalid_filters),
        cmocka_unit_test(test_null_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
