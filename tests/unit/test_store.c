/* Unit tests for the blob directory and the SQLite store: durability across reopen, the change
 * log, ids never reused, refusal of a database made with another model, precise errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/blobs.h"
#include "store/store.h"
#include "util/status.h"
#include "test_util.h"

static char dir[64];

static int make_dir(void **state) {
    (void)state;
    return test_make_dir(dir, "imgsearch_store");
}

static int remove_dir(void **state) {
    (void)state;
    return test_remove_dir(dir);
}

static int count_blob(const char *hex, void *ctx) {
    (void)hex;
    ++*(int *)ctx;
    return 0;
}

static void test_blobs(void **state) {
    (void)state;
    char path[256], err[256], a[BLOB_HEX_LEN + 1], b[BLOB_HEX_LEN + 1];
    snprintf(path, sizeof path, "%s/blobs", dir);
    /* a temp file left by a crash is cleaned at open, once it is old enough not to be an upload
     * under way in a server beside this process */
    blobs *bl;
    assert_int_equal(blobs_open(path, &bl, err, sizeof err), IS_OK);
    blobs_close(bl);
    char stray[300], fresh[300];
    snprintf(stray, sizeof stray, "%s/tmp/leftover.123", path);
    snprintf(fresh, sizeof fresh, "%s/tmp/uploading.456", path);
    FILE *f = fopen(stray, "w");
    fputs("half a blob", f);
    fclose(f);
    f = fopen(fresh, "w");
    fputs("half an upload", f);
    fclose(f);
    struct timespec old[2] = {{.tv_sec = time(NULL) - BLOBS_TEMP_STALE_SECONDS - 60}, {.tv_sec = time(NULL) - BLOBS_TEMP_STALE_SECONDS - 60}};
    assert_int_equal(utimensat(AT_FDCWD, stray, old, 0), 0);
    assert_int_equal(blobs_open(path, &bl, err, sizeof err), IS_OK);
    assert_int_equal(access(stray, F_OK), -1);
    assert_int_equal(access(fresh, F_OK), 0);
    unlink(fresh);

    assert_int_equal(blobs_put(bl, "hello", 5, a, err, sizeof err), IS_OK);
    /* SHA-256("hello") */
    assert_string_equal(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_int_equal(blobs_put(bl, "hello", 5, b, err, sizeof err), IS_OK); /* stored once */
    assert_string_equal(a, b);
    assert_int_equal(blobs_put(bl, "", 0, b, err, sizeof err), IS_OK);
    int n = 0;
    blobs_each(bl, count_blob, &n);
    assert_int_equal(n, 2);
    unsigned char *buf;
    size_t len;
    assert_int_equal(blobs_read(bl, a, &buf, &len, err, sizeof err), IS_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    free(buf);
    assert_int_equal(blobs_unlink(bl, a, err, sizeof err), IS_OK);
    assert_int_equal(blobs_unlink(bl, a, err, sizeof err), IS_OK); /* absent is fine */
    assert_int_equal(blobs_read(bl, a, &buf, &len, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(blobs_read(bl, "../../etc/passwd", &buf, &len, err, sizeof err), IS_ERR_INVALID);
    n = 0;
    blobs_each(bl, count_blob, &n);
    assert_int_equal(n, 1);
    /* images without a database are a lost database, which a store opened here would refuse */
    assert_int_equal(blobs_unlink(bl, b, err, sizeof err), IS_OK);
    blobs_close(bl);
}

static store *open_store(const char *model, int dims) {
    char err[256];
    store *s = NULL;
    int rc = store_open(dir, NULL, model, dims, &s, err, sizeof err);
    if (rc) fail_msg("store_open: %s", err);
    return s;
}

static int64_t add(store *s, const char *name, const char *data, float x) {
    float vec[4] = {x, 1, 2, 3};
    store_image img = {.name = (char *)name, .content_type = "image/png", .data = (char *)data, .width = 10,
                       .height = 20, .size = 1234, .vector = vec, .dims = 4};
    char bytes[32], err[256];
    snprintf(bytes, sizeof bytes, "image bytes %d", (int)x);
    assert_int_equal(store_bytes_prepare(s, bytes, strlen(bytes), img.sha256, err, sizeof err), IS_OK);
    int64_t seq;
    assert_int_equal(store_add(s, &img, bytes, strlen(bytes), &seq, err, sizeof err), IS_OK);
    assert_true(img.created_at > 1600000000000ll);
    return img.id;
}

typedef struct {
    char ops[64];
    int64_t ids[64], last_seq;
    int n;
} changes;

static int collect(int64_t seq, change_op op, int64_t id, void *ctx) {
    changes *c = ctx;
    assert_true(seq > c->last_seq);
    c->last_seq = seq;
    c->ops[c->n] = (char)op;
    c->ids[c->n++] = id;
    return 0;
}

static int sum_ids(const store_image *img, void *ctx) {
    assert_non_null(img->vector);
    assert_true(img->vector[0] == (float)img->vector[0]);
    *(int64_t *)ctx = *(int64_t *)ctx * 10 + img->id; /* order shows in the digits */
    return 0;
}

static void test_store_lifecycle(void **state) {
    (void)state;
    char err[256];
    store *s = open_store("efficientnet_lite0", 4);
    int64_t a = add(s, "a.png", "{\"breed\": \"pug\"}", 1), b = add(s, "b.png", NULL, 2), c = add(s, "c.png", NULL, 1);
    assert_true(a < b && b < c);
    store_image img;
    assert_int_equal(store_get(s, a, true, &img, err, sizeof err), IS_OK);
    assert_string_equal(img.name, "a.png");
    assert_string_equal(img.data, "{\"breed\": \"pug\"}");
    assert_int_equal(img.width, 10);
    assert_true(img.vector[0] == 1.0f && img.vector[3] == 3.0f);
    store_image_clear(&img);
    assert_int_equal(store_get(s, 999, false, &img, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "999"));

    int64_t seq;
    assert_int_equal(store_set_data(s, b, "{\"x\": 1}", &seq, err, sizeof err), IS_OK);
    assert_int_equal(store_set_data(s, 999, "{}", &seq, err, sizeof err), IS_ERR_NOT_FOUND);
    /* a and c share their bytes: deleting a keeps them, deleting c removes them */
    store_image row;
    assert_int_equal(store_get(s, c, false, &row, err, sizeof err), IS_OK);
    unsigned char *got;
    size_t glen;
    assert_int_equal(store_delete(s, a, &seq, err, sizeof err), IS_OK);
    assert_int_equal(store_bytes_read(s, row.sha256, &got, &glen, err, sizeof err), IS_OK);
    assert_memory_equal(got, "image bytes 1", glen);
    free(got);
    assert_int_equal(store_delete(s, a, &seq, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(store_delete(s, c, &seq, err, sizeof err), IS_OK);
    assert_int_equal(store_bytes_read(s, row.sha256, &got, &glen, err, sizeof err), IS_ERR_NOT_FOUND);
    store_image_clear(&row);
    /* bytes prepared for a row that never came are swept */
    char orphan[BLOB_HEX_LEN + 1];
    int removed = 0;
    assert_int_equal(store_bytes_prepare(s, "never named", 11, orphan, err, sizeof err), IS_OK);
    assert_int_equal(store_sweep(s, &removed, err, sizeof err), IS_OK);
    assert_true(removed >= 1); /* test_blobs left some in the same directory */
    assert_int_equal(store_bytes_read(s, orphan, &got, &glen, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(store_get(s, b, false, &row, err, sizeof err), IS_OK); /* named bytes stay */
    assert_int_equal(store_bytes_read(s, row.sha256, &got, &glen, err, sizeof err), IS_OK);
    free(got);
    store_image_clear(&row);
    assert_string_equal(store_kind(s), "sqlite");
    assert_false(store_shared(s));
    int64_t total = 0;
    assert_int_equal(store_each(s, true, sum_ids, &total, err, sizeof err), IS_OK);
    assert_int_equal(total, b);
    store_close(s);

    /* everything committed is there after reopening; ids are never reused */
    s = open_store("efficientnet_lite0", 4);
    int64_t n;
    assert_int_equal(store_count(s, &n), IS_OK);
    assert_int_equal(n, 1);
    int64_t d = add(s, "d.png", NULL, 4);
    assert_true(d > c);
    changes ch = {0};
    assert_int_equal(store_changes_after(s, 0, collect, &ch, err, sizeof err), IS_OK);
    assert_int_equal(ch.n, 7);
    assert_memory_equal(ch.ops, "aaamdda", 7);
    assert_int_equal(ch.ids[3], b);
    int64_t last;
    assert_int_equal(store_last_seq(s, &last), IS_OK);
    assert_int_equal(last, ch.last_seq);
    changes tail = {0};
    assert_int_equal(store_changes_after(s, last - 2, collect, &tail, err, sizeof err), IS_OK);
    assert_int_equal(tail.n, 2);

    int64_t deleted;
    assert_int_equal(store_delete_all(s, &deleted, &seq, err, sizeof err), IS_OK);
    assert_int_equal(deleted, 2);
    assert_int_equal(seq, last + 1);
    assert_int_equal(store_count(s, &n), IS_OK);
    assert_int_equal(n, 0);
    assert_true(add(s, "e.png", NULL, 5) > d);
    /* a vector of the wrong size never reaches the database */
    float small[2] = {0};
    store_image bad = {.name = "x", .vector = small, .dims = 2};
    assert_int_equal(store_add(s, &bad, "x", 1, &seq, err, sizeof err), IS_ERR_INVALID);
    store_close(s);
}

static void test_store_refuses_other_model(void **state) {
    (void)state;
    char path[256], err[256];
    store *s = NULL;
    assert_int_equal(store_open(dir, NULL, "efficientnet_lite0", 8, &s, err, sizeof err), IS_ERR_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, "dims 4"));
    assert_int_equal(store_open(dir, NULL, "efficientnet_lite2", 4, &s, err, sizeof err), IS_ERR_INVALID);
    assert_non_null(strstr(err, "model efficientnet_lite0"));
    snprintf(path, sizeof path, "%s/no/such/dir", dir);
    assert_int_equal(store_open(path, NULL, "m", 4, &s, err, sizeof err), IS_ERR_IO);
}

/* API keys: unique names and digests, ordered listing, last use only forward, revocation, and all
 * of it still there after a reopen. */
static void test_store_keys(void **state) {
    (void)state;
    char err[256], kdir[96];
    snprintf(kdir, sizeof kdir, "%s/keys", dir);
    mkdir(kdir, 0755);
    store *s;
    assert_int_equal(store_open(kdir, NULL, "m", 4, &s, err, sizeof err), IS_OK);
    store_key a = {.name = "zeta", .scope = "read", .digest = "aa", .created_at = 1000};
    store_key b = {.name = "alpha", .scope = "admin", .digest = "bb", .created_at = 2000};
    assert_int_equal(store_key_add(s, &a, err, sizeof err), IS_OK);
    assert_int_equal(store_key_add(s, &b, err, sizeof err), IS_OK);
    store_key same_name = {.name = "zeta", .scope = "read", .digest = "cc", .created_at = 1};
    assert_int_equal(store_key_add(s, &same_name, err, sizeof err), IS_ERR_INVALID);
    store_key same_digest = {.name = "other", .scope = "read", .digest = "aa", .created_at = 1};
    assert_int_equal(store_key_add(s, &same_digest, err, sizeof err), IS_ERR_INVALID);
    store_key bad_scope = {.name = "x", .scope = "root", .digest = "dd", .created_at = 1};
    assert_int_not_equal(store_key_add(s, &bad_scope, err, sizeof err), IS_OK);
    assert_int_equal(store_key_touch(s, "zeta", 5000, err, sizeof err), IS_OK);
    assert_int_equal(store_key_touch(s, "zeta", 4000, err, sizeof err), IS_OK); /* never back */
    assert_int_equal(store_key_touch(s, "nobody", 4000, err, sizeof err), IS_OK);
    store_close(s);
    assert_int_equal(store_open(kdir, NULL, "m", 4, &s, err, sizeof err), IS_OK);
    store_key *keys;
    int n;
    assert_int_equal(store_key_list(s, &keys, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(keys[0].name, "alpha");
    assert_string_equal(keys[0].scope, "admin");
    assert_int_equal(keys[0].last_used, 0);
    assert_string_equal(keys[1].digest, "aa");
    assert_int_equal(keys[1].created_at, 1000);
    assert_int_equal(keys[1].last_used, 5000);
    free(keys);
    assert_int_equal(store_key_revoke(s, "alpha", err, sizeof err), IS_OK);
    assert_int_equal(store_key_revoke(s, "alpha", err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(store_key_list(s, &keys, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(keys[0].name, "zeta");
    free(keys);
    store_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_store_lifecycle),
        cmocka_unit_test(test_store_refuses_other_model),
        cmocka_unit_test(test_store_keys),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
