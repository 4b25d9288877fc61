/* Unit tests for util/text: UTF-8 checking and repair, stored file names, log escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "util/text.h"

static void test_utf8_valid(void **state) {
    (void)state;
    assert_true(text_utf8_valid("plain", 5));
    assert_true(text_utf8_valid("\xC3\xA9t\xC3\xA9 \xF0\x9F\x90\x95", 10));
    assert_false(text_utf8_valid("caf\xE9", 4));            /* Latin-1 */
    assert_false(text_utf8_valid("\xC0\xAF", 2));           /* overlong '/' */
    assert_false(text_utf8_valid("\xED\xA0\x80", 3));       /* a surrogate */
    assert_false(text_utf8_valid("\xF4\x90\x80\x80", 4));   /* above U+10FFFF */
    assert_false(text_utf8_valid("\xE2\x82", 2));           /* cut short */
}

static void test_utf8_dup_replaces_each_bad_byte(void **state) {
    (void)state;
    char *s = text_utf8_dup("a\xFF" "b\xE2\x82", 5);
    assert_string_equal(s, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_true(text_utf8_valid(s, strlen(s)));
    free(s);
}

static void test_file_names(void **state) {
    (void)state;
    static const struct {
        const char *raw, *name;
    } cases[] = {
        {"dog.jpg", "dog.jpg"},
        {"../../etc/passwd", "passwd"},
        {"C:\\Users\\me\\cat.png", "cat.png"},
        {"dir/", "image"},
        {"..", "image"},
        {"", "image"},
        {"tab\there\x01.jpg", "tab_here_.jpg"},
        {"caf\xE9.jpg", "caf\xEF\xBF\xBD.jpg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *n = text_file_name_dup(cases[i].raw, "image");
        assert_string_equal(n, cases[i].name);
        free(n);
    }
    char *n = text_file_name_dup(NULL, "image");
    assert_string_equal(n, "image");
    free(n);
    /* long names are cut at TEXT_NAME_MAX bytes, never inside a character */
    char long_name[1000];
    for (int i = 0; i < 400; i += 2) memcpy(long_name + i, "\xC3\xA9", 2);
    long_name[400] = 0;
    n = text_file_name_dup(long_name, "image");
    assert_int_equal(strlen(n), 254);
    assert_true(text_utf8_valid(n, strlen(n)));
    free(n);
}

static void test_log_escape(void **state) {
    (void)state;
    char out[64];
    text_log_escape("/images\nGET /forged 200", out, sizeof out);
    assert_string_equal(out, "/images\\x0AGET /forged 200");
    text_log_escape("a\"b\\c\x1b\xff", out, sizeof out);
    assert_string_equal(out, "a\\x22b\\x5Cc\\x1B\\xFF");
    char small[12];
    text_log_escape("0123456789abcdef", small, sizeof small);
    assert_string_equal(small, "01234567...");
    text_log_escape(NULL, out, sizeof out);
    assert_string_equal(out, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_dup_replaces_each_bad_byte),
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_log_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
