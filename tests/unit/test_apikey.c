/* Unit tests for auth/apikey.h: the form of new keys, the digest, the constant-time comparison,
 * scopes and names, and every way a request can present a key or get it wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "auth/apikey.h"

static void test_new_keys_are_distinct_and_well_formed(void **state) {
    (void)state;
    char a[AUTH_KEY_LEN + 1], b[AUTH_KEY_LEN + 1];
    assert_true(auth_key_generate(a));
    assert_true(auth_key_generate(b));
    assert_int_equal(strlen(a), AUTH_KEY_LEN);
    assert_memory_equal(a, "isk_", 4);
    assert_int_equal(strspn(a + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_string_not_equal(a, b);
}

static void test_digest_is_sha256(void **state) {
    (void)state;
    char hex[AUTH_DIGEST_HEX + 1];
    auth_key_digest("abc", 3, hex); /* FIPS 180-2's example */
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char other[AUTH_DIGEST_HEX + 1];
    auth_key_digest("abd", 3, other);
    assert_true(auth_digest_equal(hex, hex));
    assert_false(auth_digest_equal(hex, other));
    assert_false(auth_digest_equal(hex, "ba78"));
}

static void test_scopes_and_names(void **state) {
    (void)state;
    auth_scope s;
    assert_true(auth_scope_parse("write", &s) && s == AUTH_WRITE);
    assert_false(auth_scope_parse("Write", &s));
    assert_false(auth_scope_parse("none", &s));
    assert_false(auth_scope_parse(NULL, &s));
    assert_true(AUTH_ADMIN > AUTH_WRITE && AUTH_WRITE > AUTH_READ && AUTH_READ > AUTH_NONE);
    assert_string_equal(auth_scope_name(AUTH_ADMIN), "admin");
    assert_true(auth_name_valid("photo-sync_2.0"));
    char long_name[AUTH_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[AUTH_NAME_MAX + 1] = 0;
    assert_false(auth_name_valid(long_name));
    long_name[AUTH_NAME_MAX] = 0;
    assert_true(auth_name_valid(long_name));
    assert_false(auth_name_valid(""));
    assert_false(auth_name_valid("a b"));
    assert_false(auth_name_valid("a\nb"));
    assert_false(auth_name_valid(NULL));
}

static void test_presented_keys(void **state) {
    (void)state;
    const char *key = NULL;
    size_t len = 0;
    char why[160];
    assert_int_equal(auth_key_presented(NULL, NULL, &key, &len, why, sizeof why), 0);
    assert_int_equal(auth_key_presented("Bearer isk_x", NULL, &key, &len, why, sizeof why), 1);
    assert_int_equal(len, 5);
    assert_memory_equal(key, "isk_x", 5);
    assert_int_equal(auth_key_presented("  bearer   isk_y  ", NULL, &key, &len, why, sizeof why), 1);
    assert_int_equal(len, 5);
    assert_memory_equal(key, "isk_y", 5);
    assert_int_equal(auth_key_presented(NULL, "isk_z", &key, &len, why, sizeof why), 1);
    assert_int_equal(auth_key_presented("Bearer isk_z", "isk_z", &key, &len, why, sizeof why), 1); /* the same */
    assert_int_equal(auth_key_presented("Bearer isk_a", "isk_b", &key, &len, why, sizeof why), -1);
    assert_non_null(strstr(why, "different keys"));
    const char *bad[] = {"Basic abc", "Bearer", "Bearer ", "Bearer a b", "Bearer \x01", "isk_bare"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(auth_key_presented(bad[i], NULL, &key, &len, why, sizeof why), -1);
    char huge[300];
    memset(huge, 'k', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    assert_int_equal(auth_key_presented(NULL, huge, &key, &len, why, sizeof why), -1);
    assert_int_equal(auth_key_presented(NULL, "", &key, &len, why, sizeof why), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_keys_are_distinct_and_well_formed),
        cmocka_unit_test(test_digest_is_sha256),
        cmocka_unit_test(test_scopes_and_names),
        cmocka_unit_test(test_presented_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
