/* Unit tests for the engine with the real model and real photos: an image finds itself and its
 * re-encodings first, filters restrict exactly, deletes vanish everywhere, health and reindex
 * agree with the store, and a restart keeps every write and drops orphan blobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "engine/engine.h"
#include "test_util.h"
#include "util/status.h"

static char dir[64];
static engine *eng;

static void open_engine(void) {
    char err[512];
    engine_config cfg = {.data_dir = dir, .model_config = getenv("IMGSEARCH_MODEL"), .infer_threads = 1};
    if (!cfg.model_config) cfg.model_config = "models/efficientnet_lite0.json";
    if (engine_open(&cfg, &eng, err, sizeof err)) fail_msg("engine_open: %s", err);
}

static int setup(void **state) {
    (void)state;
    strcpy(dir, "/tmp/imgsearch_engine_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    open_engine();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    engine_close(eng);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int64_t add(const char *d, const char *name, const char *data) {
    size_t len;
    unsigned char *buf = test_read(d, name, &len);
    int64_t id = 0;
    char err[512];
    int rc = engine_add(eng, buf, len, name, data, &id, err, sizeof err);
    free(buf);
    if (rc) fail_msg("add %s: %s", name, err);
    return id;
}

static int search(const char *d, const char *name, int k, const char *filter, engine_hit **hits, char *err) {
    size_t len;
    unsigned char *buf = test_read(d, name, &len);
    int n = -1;
    engine_search_opts opts = {.k = k, .filter_json = filter, .max_dist = -1};
    int rc = engine_search(eng, buf, len, &opts, hits, &n, err, 512);
    free(buf);
    return rc ? rc : n;
}

static int64_t cat, dog, coffee, cat2, rocket;

static void test_add_and_search(void **state) {
    (void)state;
    cat = add(NULL, "cat.png", "{\"animal\": \"cat\", \"owner\": {\"city\": \"Oslo\"}}");
    dog = add(DARKNET_DATA, "dog.jpg", "{\"animal\": \"dog\"}");
    coffee = add(SKIMAGE_DATA, "coffee.png", NULL);
    cat2 = add(NULL, "cat_q90.jpg", "{\"animal\": \"cat\"}");
    rocket = add(SKIMAGE_DATA, "rocket.jpg", "{\"tags\": [\"space\", \"launch\"]}");
    engine_hit *hits;
    char err[512];
    /* the half-size cat finds both cats first */
    int n = search(NULL, "cat_half.png", 3, NULL, &hits, err);
    assert_int_equal(n, 3);
    assert_true((hits[0].id == cat && hits[1].id == cat2) || (hits[0].id == cat2 && hits[1].id == cat));
    assert_true(hits[0].dist <= hits[1].dist && hits[1].dist <= hits[2].dist);
    assert_true(hits[1].dist < 0.1f && hits[2].dist > 0.3f);
    engine_hits_free(hits, n);
    /* an image stored is its own nearest neighbour */
    n = search(DARKNET_DATA, "dog.jpg", 1, NULL, &hits, err);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].id, dog);
    assert_true(hits[0].dist < 1e-4f);
    assert_string_equal(hits[0].name, "dog.jpg");
    assert_string_equal(hits[0].data, "{\"animal\":\"dog\"}");
    engine_hits_free(hits, n);
    /* fewer stored than k: all of them */
    n = search(NULL, "cat.png", 50, NULL, &hits, err);
    assert_int_equal(n, 5);
    engine_hits_free(hits, n);
}

/* Concurrent searches (and adds, which want the classifier's scores too) are batched into shared
 * network runs (engine_infer.c), and each still gets its own image's answer. */
typedef struct {
    const char *d, *name;
    bool is_add;
    pthread_barrier_t *start;
    int rc;
    int64_t id;
    float dist;
    char err[512];
} concurrent_call;

static void *concurrent_one(void *arg) {
    concurrent_call *c = arg;
    size_t len;
    unsigned char *buf = test_read(c->d, c->name, &len);
    pthread_barrier_wait(c->start);
    if (c->is_add) {
        c->rc = engine_add(eng, buf, len, c->name, NULL, &c->id, c->err, sizeof c->err);
    } else {
        engine_hit *hits = NULL;
        int n = 0;
        engine_search_opts opts = {.k = 1, .max_dist = -1};
        c->rc = engine_search(eng, buf, len, &opts, &hits, &n, c->err, sizeof c->err);
        if (!c->rc && n == 1) {
            c->id = hits[0].id;
            c->dist = hits[0].dist;
        }
        engine_hits_free(hits, n);
    }
    free(buf);
    return NULL;
}

static void test_concurrent_inference_is_batched(void **state) {
    (void)state;
    enum { N = 14 };
    const char *ds[3] = {DARKNET_DATA, SKIMAGE_DATA, SKIMAGE_DATA}, *names[3] = {"dog.jpg", "coffee.png", "rocket.jpg"};
    int64_t ids[3] = {dog, coffee, rocket};
    bool batched = false;
    for (int round = 0; round < 5 && !batched; round++) {
        engine_metrics_info before, after;
        assert_int_equal(engine_metrics(eng, &before), IS_OK);
        concurrent_call calls[N];
        pthread_t threads[N];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, N);
        for (int i = 0; i < N; i++) {
            bool is_add = i >= N - 2; /* two adds: a copy of the cat, kept under new ids */
            calls[i] = (concurrent_call){.d = is_add ? NULL : ds[i % 3], .name = is_add ? "cat_half.png" : names[i % 3],
                                         .is_add = is_add, .start = &start};
            assert_int_equal(pthread_create(&threads[i], NULL, concurrent_one, &calls[i]), 0);
        }
        for (int i = 0; i < N; i++) pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < N; i++) {
            if (calls[i].rc) fail_msg("%s: %s", calls[i].name, calls[i].err);
            if (calls[i].is_add) {
                char err[512];
                assert_int_equal(engine_delete(eng, calls[i].id, err, sizeof err), IS_OK);
                continue;
            }
            assert_int_equal(calls[i].id, ids[i % 3]); /* its own image, found exactly */
            assert_true(calls[i].dist < 1e-4f);
        }
        assert_int_equal(engine_metrics(eng, &after), IS_OK);
        uint64_t images = after.inferences - before.inferences, runs = after.inference_runs - before.inference_runs;
        print_message("round %d: %llu images in %llu network runs\n", round, (unsigned long long)images,
                      (unsigned long long)runs);
        assert_int_equal(images, N);
        assert_true(runs >= 1 && runs <= images);
        batched = runs < images;
    }
    assert_true(batched);
}

static void test_filters(void **state) {
    (void)state;
    engine_hit *hits;
    char err[512];
    int n = search(NULL, "cat.png", 10, "{\"animal\": \"dog\"}", &hits, err);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].id, dog);
    engine_hits_free(hits, n);
    n = search(NULL, "cat.png", 10, "{\"owner.city\": \"Oslo\"}", &hits, err);
    assert_int_equal(n, 1);
    engine_hits_free(hits, n);
    n = search(NULL, "cat.png", 10, "{\"tags\": \"space\"}", &hits, err);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].id, rocket);
    engine_hits_free(hits, n);
    n = search(NULL, "cat.png", 10, "{\"animal\": {\"$exists\": false}}", &hits, err);
    assert_int_equal(n, 2); /* coffee and rocket */
    engine_hits_free(hits, n);
    assert_int_equal(search(NULL, "cat.png", 10, "{\"animal\": {\"$gt\": []}}", &hits, err), IS_ERR_INVALID);
    assert_non_null(strstr(err, "filter.animal.$gt"));
    assert_int_equal(search(NULL, "cat.png", 0, NULL, &hits, err), IS_ERR_INVALID);
    assert_int_equal(search(NULL, "cat.png", 1001, NULL, &hits, err), IS_ERR_INVALID);
    /* more like this leaves the image itself out */
    engine_search_opts one = {.k = 1, .max_dist = -1};
    assert_int_equal(engine_similar(eng, cat, &one, &hits, &n, err, sizeof err), IS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].id, cat2);
    engine_hits_free(hits, n);
}

static void test_bad_input_stores_nothing(void **state) {
    (void)state;
    static const char *bad[] = {"empty.jpg", "truncated.jpg", "text.jpg", "bomb.png"};
    static const int want[] = {IS_ERR_EMPTY_IMAGE, IS_ERR_CORRUPT_IMAGE, IS_ERR_UNSUPPORTED_IMAGE, IS_ERR_IMAGE_TOO_LARGE};
    char err[512];
    for (int i = 0; i < 4; i++) {
        size_t len;
        unsigned char *buf = test_read(NULL, bad[i], &len);
        int64_t id;
        assert_int_equal(engine_add(eng, buf, len, bad[i], NULL, &id, err, sizeof err), want[i]);
        free(buf);
    }
    size_t len;
    unsigned char *buf = test_read(NULL, "cat.png", &len);
    int64_t id;
    assert_int_equal(engine_add(eng, buf, len, "x", "[1, 2]", &id, err, sizeof err), IS_ERR_INVALID);
    assert_non_null(strstr(err, "JSON object"));
    assert_int_equal(engine_add(eng, buf, len, "x", "{\"a\": ", &id, err, sizeof err), IS_ERR_INVALID);
    free(buf);
    store_image *rows;
    int n;
    int64_t total;
    assert_int_equal(engine_query(eng, NULL, NULL, 0, 0, 100, &rows, NULL, &n, &total, err, sizeof err), IS_OK);
    assert_int_equal(total, 5);
    engine_rows_free(rows, n);
}

static void test_data_query_delete_health(void **state) {
    (void)state;
    char err[512], msg[256];
    assert_int_equal(engine_set_data(eng, coffee, "{\"animal\": \"none\", \"cups\": 2}", err, sizeof err), IS_OK);
    assert_int_equal(engine_set_data(eng, 9999, "{}", err, sizeof err), IS_ERR_NOT_FOUND);
    store_image *rows;
    int n;
    int64_t total;
    assert_int_equal(engine_query(eng, "{\"cups\": {\"$gte\": 2}}", NULL, 0, 0, 10, &rows, NULL, &n, &total, err, sizeof err), IS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].id, coffee);
    assert_string_equal(rows[0].content_type, "image/png");
    assert_int_equal(rows[0].width, 600);
    engine_rows_free(rows, n);
    /* pagination in id order */
    assert_int_equal(engine_query(eng, NULL, NULL, 0, 1, 2, &rows, NULL, &n, &total, err, sizeof err), IS_OK);
    assert_int_equal(total, 5);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].id, dog);
    assert_int_equal(rows[1].id, coffee);
    engine_rows_free(rows, n);

    assert_int_equal(engine_delete(eng, cat2, err, sizeof err), IS_OK);
    assert_int_equal(engine_delete(eng, cat2, err, sizeof err), IS_ERR_NOT_FOUND);
    store_image row;
    unsigned char *bytes;
    size_t len;
    assert_int_equal(engine_image(eng, cat2, &bytes, &len, &row, err, sizeof err), IS_ERR_NOT_FOUND);
    engine_hit *hits;
    n = search(NULL, "cat_q90.jpg", 10, NULL, &hits, err);
    for (int i = 0; i < n; i++) assert_true(hits[i].id != cat2);
    assert_int_equal(hits[0].id, cat);
    engine_hits_free(hits, n);
    assert_int_equal(engine_image(eng, dog, &bytes, &len, &row, err, sizeof err), IS_OK);
    assert_string_equal(row.content_type, "image/jpeg");
    assert_int_equal(len, (size_t)row.size);
    free(bytes);
    store_image_clear(&row);

    bool healthy = false;
    assert_int_equal(engine_health(eng, &healthy, msg, sizeof msg), IS_OK);
    assert_true(healthy);
    assert_non_null(strstr(msg, "all 4 images"));
    assert_int_equal(engine_reindex(eng, err, sizeof err), IS_OK);
    assert_int_equal(engine_health(eng, &healthy, msg, sizeof msg), IS_OK);
    assert_true(healthy);
}

static int count_files(const char *path) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "find '%s' -type f | wc -l", path);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void test_restart_and_orphans(void **state) {
    (void)state;
    char err[512], msg[256], blobdir[128], orphan[BLOB_HEX_LEN + 1];
    snprintf(blobdir, sizeof blobdir, "%s/blobs", dir);
    int before = count_files(blobdir);
    engine_close(eng);
    /* what a crash between blob write and commit leaves behind */
    blobs *b;
    assert_int_equal(blobs_open(blobdir, &b, err, sizeof err), IS_OK);
    assert_int_equal(blobs_put(b, "orphan bytes", 12, orphan, err, sizeof err), IS_OK);
    blobs_close(b);
    assert_int_equal(count_files(blobdir), before + 1);
    open_engine();
    assert_int_equal(count_files(blobdir), before);
    bool healthy;
    assert_int_equal(engine_health(eng, &healthy, msg, sizeof msg), IS_OK);
    assert_true(healthy);
    engine_hit *hits;
    int n = search(SKIMAGE_DATA, "rocket.jpg", 1, NULL, &hits, err);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].id, rocket);
    engine_hits_free(hits, n);

    int64_t deleted;
    assert_int_equal(engine_delete_all(eng, &deleted, err, sizeof err), IS_OK);
    assert_int_equal(deleted, 4);
    assert_int_equal(count_files(blobdir), 0);
    assert_int_equal(engine_health(eng, &healthy, msg, sizeof msg), IS_OK);
    assert_true(healthy);
    n = search(NULL, "cat.png", 5, NULL, &hits, err);
    assert_int_equal(n, 0);
    engine_hits_free(hits, n);
    assert_true(add(NULL, "cat.png", NULL) > rocket); /* ids are never reused */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_search),
        cmocka_unit_test(test_concurrent_inference_is_batched),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_bad_input_stores_nothing),
        cmocka_unit_test(test_data_query_delete_health),
        cmocka_unit_test(test_restart_and_orphans),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
