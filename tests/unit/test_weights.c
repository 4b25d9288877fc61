/* Unit tests for the safetensors reader: valid files load, hostile headers are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/weights.h"
#include "util/status.h"

/* Writes <u64 header length><header, space-padded to 8 bytes unless pad is 0><data> to a temporary
 * file and returns its path. */
static char *write_st_pad(const char *header, const void *data, size_t data_len, long long fake_hlen, int pad) {
    static char path[64];
    strcpy(path, "/tmp/imgsearch_test_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    size_t padding = pad ? (8 - strlen(header) % 8) % 8 : 0;
    uint64_t hl = fake_hlen >= 0 ? (uint64_t)fake_hlen : strlen(header) + padding;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    fwrite("        ", 1, padding, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
    return path;
}

static char *write_st(const char *header, const void *data, size_t data_len, long long fake_hlen) {
    return write_st_pad(header, data, data_len, fake_hlen, 1);
}

static int load_status(const char *header, const void *data, size_t n, long long fake, char *err) {
    weights *w = NULL;
    char *p = write_st(header, data, n, fake);
    int rc = weights_load(p, &w, err, 256);
    unlink(p);
    weights_free(w);
    return rc;
}

static void test_valid_file(void **state) {
    (void)state;
    float data[6] = {1, 2, 3, 4, 5, 6};
    const char *h = "{\"__metadata__\":{\"x\":\"y\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    char *p = write_st(h, data, sizeof data, -1);
    weights *w = NULL;
    char err[256];
    assert_int_equal(weights_load(p, &w, err, sizeof err), IS_OK);
    unlink(p);
    assert_int_equal(weights_count(w), 1);
    const float *f;
    int64_t shape[2] = {2, 3}, wrong[2] = {3, 2};
    assert_int_equal(weights_get_f32(w, "a", 2, shape, &f, err, sizeof err), IS_OK);
    assert_true(f[5] == 6.0f);
    assert_int_equal(weights_get_f32(w, "a", 2, wrong, &f, err, sizeof err), IS_ERR_MODEL);
    assert_non_null(strstr(err, "dimension 0 is 2, expected 3"));
    assert_int_equal(weights_get_f32(w, "missing", 2, shape, &f, err, sizeof err), IS_ERR_MODEL);
    assert_non_null(strstr(err, "missing"));
    weights_free(w);
}

static void test_hostile_headers(void **state) {
    (void)state;
    char err[256];
    float d[4] = {0};
    /* header length pointing past the end of the file */
    assert_int_equal(load_status("{}", NULL, 0, 1ll << 40, err), IS_ERR_MODEL);
    assert_non_null(strstr(err, "impossible"));
    /* not JSON */
    assert_int_equal(load_status("{not json", NULL, 0, -1, err), IS_ERR_MODEL);
    /* data offsets beyond the data */
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,64]}}",
                                 d, sizeof d, -1, err), IS_ERR_MODEL);
    assert_non_null(strstr(err, "outside"));
    /* byte count that does not match the shape */
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
                                 d, sizeof d, -1, err), IS_ERR_MODEL);
    /* unknown dtype, negative dimension, reversed offsets */
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                                 d, sizeof d, -1, err), IS_ERR_MODEL);
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
                                 d, sizeof d, -1, err), IS_ERR_MODEL);
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}",
                                 d, sizeof d, -1, err), IS_ERR_MODEL);
    /* a header not padded to 8 bytes leaves float data misaligned */
    const char *odd = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    assert_true(strlen(odd) % 4 != 0);
    weights *w = NULL;
    char *p = write_st_pad(odd, d, sizeof d, -1, 0);
    assert_int_equal(weights_load(p, &w, err, sizeof err), IS_ERR_MODEL);
    unlink(p);
    assert_non_null(strstr(err, "not aligned"));
    /* a shape whose element count overflows */
    assert_int_equal(load_status("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,"
                                 "1099511627776],\"data_offsets\":[0,16]}}", d, sizeof d, -1, err),
                     IS_ERR_MODEL);
}

static void test_missing_file(void **state) {
    (void)state;
    weights *w = NULL;
    char err[256];
    assert_int_equal(weights_load("/nonexistent/model.safetensors", &w, err, sizeof err), IS_ERR_MODEL);
    assert_null(w);
    assert_non_null(strstr(err, "fetch-model"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
