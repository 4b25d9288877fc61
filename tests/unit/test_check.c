/* Unit tests for what `imgsearch check` asks of the store and the blob directory: a blob verified
 * against its name while streamed, a damaged blob never read back as an image, the check's walk
 * over rows whose vector has the wrong size, blobs no row names, a vector replaced, and a damaged or
 * lost database refused at open with a message naming the file and what to run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/blobs.h"
#include "store/store.h"
#include "util/status.h"
#include "test_util.h"

static char dir[64];

static int make_dir(void **state) {
    (void)state;
    return test_make_dir(dir, "imgsearch_check");
}

static int remove_dir(void **state) {
    (void)state;
    return test_remove_dir(dir);
}

/* Flips one byte of a file. */
static void flip(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

static void test_blob_verify(void **state) {
    (void)state;
    char path[256], file[512], err[512], hex[BLOB_HEX_LEN + 1], actual[BLOB_HEX_LEN + 1];
    snprintf(path, sizeof path, "%s/loose", dir);
    blobs *b;
    assert_int_equal(blobs_open(path, &b, err, sizeof err), IS_OK);
    /* larger than the 64 KiB it hashes at a time */
    size_t len = 200000;
    unsigned char *bytes = malloc(len);
    for (size_t i = 0; i < len; i++) bytes[i] = (unsigned char)(i * 7 + i / 1000);
    assert_int_equal(blobs_put(b, bytes, len, hex, err, sizeof err), IS_OK);
    assert_int_equal(blobs_verify(b, hex, actual, err, sizeof err), IS_OK);
    assert_string_equal(actual, hex);
    blobs_file_path(path, hex, file, sizeof file);
    assert_int_equal(access(file, F_OK), 0);

    flip(file, 150000);
    bytes[150000] ^= 0x01;
    char want[BLOB_HEX_LEN + 1];
    blobs_hash(bytes, len, want);
    assert_int_equal(blobs_verify(b, hex, actual, err, sizeof err), IS_ERR_CORRUPT);
    assert_string_equal(actual, want);
    assert_non_null(strstr(err, file));
    /* a damaged file is never handed out */
    unsigned char *got = (unsigned char *)"unchanged";
    size_t glen = 1;
    assert_int_equal(blobs_read(b, hex, &got, &glen, err, sizeof err), IS_ERR_CORRUPT);
    assert_null(got);
    assert_int_equal(glen, 0);
    assert_non_null(strstr(err, "is damaged"));

    assert_int_equal(blobs_unlink(b, hex, err, sizeof err), IS_OK);
    assert_int_equal(blobs_verify(b, hex, actual, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(blobs_verify(b, "../../etc/passwd", actual, err, sizeof err), IS_ERR_INVALID);
    free(bytes);
    blobs_close(b);
}

static int64_t add(store *s, const char *bytes) {
    float vec[4] = {1, 0, 0, 0};
    store_image img = {.name = "x.png", .content_type = "image/png", .vector = vec, .dims = 4};
    char err[256];
    int64_t seq;
    assert_int_equal(store_bytes_prepare(s, bytes, strlen(bytes), img.sha256, err, sizeof err), IS_OK);
    assert_int_equal(store_add(s, &img, bytes, strlen(bytes), &seq, err, sizeof err), IS_OK);
    return img.id;
}

typedef struct {
    int64_t ids[8];
    size_t bytes[8];
    char shas[8][BLOB_HEX_LEN + 1];
    int verified[8];
    int n;
    store *s;
} walk;

static int row_seen(const store_check_row *r, void *ctx) {
    walk *w = ctx;
    w->ids[w->n] = r->id;
    w->bytes[w->n] = r->vector_bytes;
    memcpy(w->shas[w->n], r->sha256, sizeof r->sha256);
    char err[256];
    w->verified[w->n++] = store_bytes_verify(w->s, r->sha256, NULL, err, sizeof err); /* allowed from the walk */
    return 0;
}

typedef struct {
    int named, unnamed;
    char last_unnamed[BLOB_HEX_LEN + 1];
} blob_count;

static int blob_seen(const char *hex, bool named, void *ctx) {
    blob_count *c = ctx;
    if (named) c->named++;
    else {
        c->unnamed++;
        memcpy(c->last_unnamed, hex, sizeof c->last_unnamed);
    }
    return 0;
}

static void damage_line(const char *line, void *ctx) {
    (void)line;
    ++*(int *)ctx;
}

static void test_store_check(void **state) {
    (void)state;
    char err[512], db[256], blobdir[256], file[512];
    snprintf(db, sizeof db, "%s/imgsearch.db", dir);
    snprintf(blobdir, sizeof blobdir, "%s/blobs", dir);
    store *s = NULL;
    assert_int_equal(store_open(dir, NULL, "m", 4, &s, err, sizeof err), IS_OK);
    int64_t a = add(s, "image a"), b = add(s, "image b"), c = add(s, "image c");
    int lines = 0;
    assert_int_equal(store_integrity_check(s, damage_line, &lines, err, sizeof err), IS_OK);
    assert_int_equal(lines, 0);

    /* a vector of the wrong size (written behind the store's back) does not end the walk */
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE images SET vector = x'0000803f' WHERE id = %lld", (long long)b);
    assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    walk w = {.s = s};
    assert_int_equal(store_check_each(s, row_seen, &w, err, sizeof err), IS_OK);
    assert_int_equal(w.n, 3);
    assert_true(w.ids[0] == a && w.ids[1] == b && w.ids[2] == c);
    assert_int_equal(w.bytes[0], 16);
    assert_int_equal(w.bytes[1], 4);
    assert_true(w.verified[0] == IS_OK && w.verified[1] == IS_OK && w.verified[2] == IS_OK);
    store_image row;
    assert_int_not_equal(store_get(s, b, true, &row, err, sizeof err), IS_OK); /* the normal read refuses it */

    /* a recomputed vector replaces it; the size must be the store's */
    float v[4] = {0, 1, 0, 0};
    assert_int_equal(store_set_vector(s, b, v, 4, err, sizeof err), IS_OK);
    assert_int_equal(store_get(s, b, true, &row, err, sizeof err), IS_OK);
    assert_true(row.vector[0] == 0 && row.vector[1] == 1);
    store_image_clear(&row);
    assert_int_equal(store_set_vector(s, b, v, 3, err, sizeof err), IS_ERR_INVALID);
    assert_int_equal(store_set_vector(s, 999, v, 4, err, sizeof err), IS_ERR_NOT_FOUND);

    /* a missing file that a row names is damage, said with the file and what to run */
    blobs_file_path(blobdir, w.shas[0], file, sizeof file);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(store_bytes_verify(s, w.shas[0], NULL, err, sizeof err), IS_ERR_NOT_FOUND);
    unsigned char *bytes;
    size_t len;
    assert_int_equal(store_bytes_read(s, w.shas[0], &bytes, &len, err, sizeof err), IS_ERR_CORRUPT);
    char hint[300];
    snprintf(hint, sizeof hint, STORE_CHECK_HINT "%s`", dir);
    assert_non_null(strstr(err, file));
    assert_non_null(strstr(err, "is missing"));
    assert_non_null(strstr(err, hint));
    /* a damaged one too */
    blobs_file_path(blobdir, w.shas[2], file, sizeof file);
    flip(file, 2);
    char actual[BLOB_HEX_LEN + 1];
    assert_int_equal(store_bytes_verify(s, w.shas[2], actual, err, sizeof err), IS_ERR_CORRUPT);
    assert_string_not_equal(actual, w.shas[2]);
    assert_int_equal(store_bytes_read(s, w.shas[2], &bytes, &len, err, sizeof err), IS_ERR_CORRUPT);
    assert_non_null(strstr(err, hint));
    /* bytes no row names any more are simply not found */
    char orphan[BLOB_HEX_LEN + 1];
    assert_int_equal(store_bytes_prepare(s, "never named", 11, orphan, err, sizeof err), IS_OK);
    blob_count n = {0};
    assert_int_equal(store_bytes_each(s, blob_seen, &n, err, sizeof err), IS_OK);
    assert_int_equal(n.named, 2); /* a's file is gone */
    assert_int_equal(n.unnamed, 1);
    assert_string_equal(n.last_unnamed, orphan);
    assert_int_equal(store_bytes_remove_unnamed(s, w.shas[1], err, sizeof err), IS_ERR_INVALID);
    assert_int_equal(store_bytes_remove_unnamed(s, orphan, err, sizeof err), IS_OK);
    assert_int_equal(store_bytes_remove_unnamed(s, orphan, err, sizeof err), IS_ERR_NOT_FOUND);
    assert_int_equal(store_bytes_read(s, orphan, &bytes, &len, err, sizeof err), IS_ERR_NOT_FOUND);
    store_close(s);

    /* garbage over the database's first page: refused at open, naming the file and the command */
    FILE *f = fopen(db, "r+b");
    assert_non_null(f);
    for (int i = 0; i < 100; i++) fputc(i * 37, f);
    fclose(f);
    assert_int_equal(store_open(dir, NULL, "m", 4, &s, err, sizeof err), IS_ERR_CORRUPT);
    assert_null(s);
    assert_non_null(strstr(err, db));
    assert_non_null(strstr(err, "is damaged (read schema version: file is not a database)"));
    assert_non_null(strstr(err, hint));
    /* cut to nothing while its images are there: refused, never a new empty store */
    assert_int_equal(truncate(db, 0), 0);
    assert_int_equal(store_open(dir, NULL, "m", 4, &s, err, sizeof err), IS_ERR_CORRUPT);
    assert_non_null(strstr(err, "holds no database, but"));
    assert_non_null(strstr(err, hint));
    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_size, 0); /* left as it was */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob_verify),
        cmocka_unit_test(test_store_check),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
