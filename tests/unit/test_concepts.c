/* Unit tests for embed/concepts: words to the ImageNet classes they cover, on the table
 * tools/fetch-model writes beside the model (models/<name>.concepts.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/concepts.h"
#include "util/status.h"

enum { CLASSES = 1000, GOOSE = 99, SHIH_TZU = 155, GERMAN_SHEPHERD = 235, MALAMUTE = 249, TABBY = 281,
       MOUNTAIN_BIKE = 671, PICKUP = 717, SPORTS_CAR = 817, STRAWBERRY = 949, BANANA = 954 };

static concept_table *table;

static int load(void **state) {
    (void)state;
    const char *model = getenv("IMGSEARCH_MODEL");
    char path[4096], err[256];
    snprintf(path, sizeof path, "%.*s.concepts.json", (int)strlen(model) - 5, model);
    if (concepts_load(path, CLASSES, &table, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int unload(void **state) {
    (void)state;
    concepts_free(table);
    return 0;
}

static void test_broader_concepts_cover_their_classes(void **state) {
    (void)state;
    unsigned char c[CLASSES];
    assert_int_equal(concepts_match(table, "dog", c), 118); /* every breed ImageNet has */
    assert_true(c[MALAMUTE] && c[GERMAN_SHEPHERD] && c[SHIH_TZU]);
    assert_false(c[TABBY] || c[SPORTS_CAR] || c[GOOSE]);
    assert_true(concepts_match(table, "animal", c) > 300);
    assert_true(c[MALAMUTE] && c[TABBY] && c[GOOSE]);
    assert_false(c[SPORTS_CAR] || c[STRAWBERRY]);
    assert_true(concepts_match(table, "vehicle", c) > 50);
    assert_true(c[SPORTS_CAR] && c[PICKUP] && c[MOUNTAIN_BIKE]);
    assert_false(c[MALAMUTE]);
    assert_true(concepts_match(table, "fruit", c) > 10);
    assert_true(c[STRAWBERRY] && c[BANANA]);
    assert_false(c[MALAMUTE] || c[SPORTS_CAR]);
}

static void test_a_class_name_and_its_synonyms(void **state) {
    (void)state;
    unsigned char c[CLASSES];
    assert_int_equal(concepts_match(table, "malamute", c), 1);
    assert_true(c[MALAMUTE]);
    assert_int_equal(concepts_match(table, "Alaskan malamute", c), 1); /* WordNet's other word */
    assert_true(c[MALAMUTE]);
}

static void test_how_words_are_written_does_not_matter(void **state) {
    (void)state;
    unsigned char c[CLASSES];
    assert_int_equal(concepts_match(table, "  Shih_Tzu ", c), 1);
    assert_true(c[SHIH_TZU]);
    assert_int_equal(concepts_match(table, "shih tzu", c), 1);
    assert_int_equal(concepts_match(table, "DOG", c), 118);
    assert_int_equal(concepts_match(table, "Dogs", c), 118);               /* regular plural */
    assert_true(concepts_match(table, "strawberries", c) >= 1 && c[STRAWBERRY]); /* -ies */
    assert_true(concepts_match(table, "geese", c) >= 1 && c[GOOSE]);         /* WordNet's exceptions */
    assert_true(concepts_match(table, "sports   cars", c) >= 1 && c[SPORTS_CAR]);
}

static void test_words_that_name_nothing(void **state) {
    (void)state;
    unsigned char c[CLASSES];
    memset(c, 7, sizeof c);
    assert_int_equal(concepts_match(table, "qwertyuiop", c), 0);
    for (int i = 0; i < CLASSES; i++) assert_int_equal(c[i], 0);
    assert_int_equal(concepts_match(table, "", c), 0);
    assert_int_equal(concepts_match(table, " - _ ", c), 0);
    char long_word[600];
    memset(long_word, 'a', sizeof long_word - 1);
    long_word[sizeof long_word - 1] = 0;
    assert_int_equal(concepts_match(table, long_word, c), 0);
    assert_int_equal(concepts_match(table, "s", c), 0);
}

static void test_bad_tables_are_refused(void **state) {
    (void)state;
    char err[256], path[] = "/tmp/imgsearch-concepts-XXXXXX";
    concept_table *t = NULL;
    assert_int_equal(concepts_load("/nonexistent/x.concepts.json", CLASSES, &t, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "tools/fetch-model"));
    static const char *const bad[] = {
        "not json",
        "{\"concepts\": [], \"classes\": []}",                                          /* wrong class count */
        "{\"concepts\": [{\"names\": [\"a\"]}], \"classes\": [[1]]}",                   /* no such concept */
        "{\"concepts\": [{\"names\": []}], \"classes\": [[0]]}",                        /* a nameless concept */
        "{\"concepts\": [{\"names\": [\"a\"]}], \"classes\": [[]]}",                    /* a class with none */
        "{\"concepts\": [{\"names\": [\"a\"]}], \"classes\": [[0]], \"plurals\": []}", /* plurals not an object */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        FILE *f = fdopen(fd, "w");
        fputs(bad[i], f);
        fclose(f);
        int classes = i == 1 ? 2 : 1;
        assert_int_equal(concepts_load(path, classes, &t, err, sizeof err), IS_ERR_MODEL);
        assert_null(t);
        unlink(path);
        strcpy(path, "/tmp/imgsearch-concepts-XXXXXX");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broader_concepts_cover_their_classes),
        cmocka_unit_test(test_a_class_name_and_its_synonyms),
        cmocka_unit_test(test_how_words_are_written_does_not_matter),
        cmocka_unit_test(test_words_that_name_nothing),
        cmocka_unit_test(test_bad_tables_are_refused),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
