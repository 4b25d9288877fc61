/* Unit tests for the exact index and its parts: the id map against a plain array model, the
 * SIMD dot product against double precision, and flat search against a brute-force reference,
 * with removals and filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/distance.h"
#include "index/flat.h"
#include "util/idmap.h"
#include "util/status.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) { /* xorshift64: deterministic across runs */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float next_f(void) { return (float)((next_u64() >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }

static void random_unit(float *v, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) {
        v[i] = next_f();
        s += (double)v[i] * v[i];
    }
    for (int i = 0; i < d; i++) v[i] = (float)(v[i] / sqrt(s));
}

static void test_idmap_matches_model(void **state) {
    (void)state;
    enum { KEYS = 5000, OPS = 200000 };
    static int64_t model[KEYS]; /* -1 = absent, else the value */
    for (int i = 0; i < KEYS; i++) model[i] = -1;
    idmap m;
    idmap_init(&m);
    size_t live = 0;
    for (int op = 0; op < OPS; op++) {
        int64_t key = (int64_t)(next_u64() % KEYS) * 7919 - 100000; /* negative keys too */
        size_t k = (size_t)((key + 100000) / 7919);
        uint32_t v;
        switch (next_u64() % 3) {
        case 0:
            assert_int_equal(idmap_put(&m, key, (uint32_t)op), 0);
            live += model[k] < 0;
            model[k] = op;
            break;
        case 1:
            assert_int_equal(idmap_remove(&m, key), model[k] >= 0);
            live -= model[k] >= 0;
            model[k] = -1;
            break;
        default:
            assert_int_equal(idmap_get(&m, key, &v), model[k] >= 0);
            if (model[k] >= 0) assert_int_equal(v, (uint32_t)model[k]);
        }
        assert_int_equal(m.count, live);
    }
    for (int i = 0; i < KEYS; i++) {
        uint32_t v;
        assert_int_equal(idmap_get(&m, (int64_t)i * 7919 - 100000, &v), model[i] >= 0);
    }
    idmap_destroy(&m);
}

static void test_dot_matches_double(void **state) {
    (void)state;
    static float a[1300], b[1300];
    for (int i = 0; i < 1300; i++) {
        a[i] = next_f();
        b[i] = next_f();
    }
    int sizes[] = {1, 3, 7, 8, 15, 16, 17, 31, 128, 1280, 1299};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        double ref = 0;
        for (int i = 0; i < sizes[s]; i++) ref += (double)a[i] * b[i];
        assert_true(fabs(dot_f32(a, b, (size_t)sizes[s]) - ref) < 1e-4);
    }
}

/* Every instruction-set level this CPU has gives the same int8 dot products and float ones within
 * rounding, on every length (main bodies and tails); the level in use honours IMGSEARCH_SIMD. */
static void test_every_dot_level_agrees(void **state) {
    (void)state;
    static float a[1300], b[1300];
    static int8_t x[1300], y[1300];
    for (int i = 0; i < 1300; i++) {
        a[i] = next_f();
        b[i] = next_f();
        x[i] = (int8_t)(next_f() * 254 - 127);
        y[i] = (int8_t)(i % 3 ? -127 : 127); /* the extremes, so the int32 sums are large */
    }
    int levels = 0;
    for (dot_level l = DOT_PORTABLE; l <= DOT_AVX512_VNNI; l++) {
        dot_f32_fn f = dot_f32_at(l);
        dot_i8_fn g = dot_i8_at(l);
        assert_true((f == NULL) == (l > dot_cpu_level()));
        if (!f) continue;
        levels++;
        for (int n = 0; n <= 1299; n += n < 70 ? 1 : 37) {
            double ref = 0;
            int32_t iref = 0;
            for (int i = 0; i < n; i++) {
                ref += (double)a[i] * b[i];
                iref += (int32_t)x[i] * y[i];
            }
            assert_true(fabs(f(a, b, (size_t)n) - ref) < 1e-4);
            assert_int_equal(g(x, y, (size_t)n), iref);
        }
    }
    assert_true(levels >= 1);
    const char *cap = getenv("IMGSEARCH_SIMD");
    if (cap) assert_true(!strcmp(dot_level_name(dot_level_used()), cap) || dot_level_used() == dot_cpu_level());
    else assert_int_equal(dot_level_used(), dot_cpu_level());
    print_message("dot kernels: CPU level %s, in use %s\n", dot_level_name(dot_cpu_level()),
                  dot_level_name(dot_level_used()));
}

enum { D = 48, N = 3000 };
static float vecs[N][D];

static bool accept_even(int64_t id, void *ctx) {
    (void)ctx;
    return id % 2 == 0;
}

/* Brute force in double precision over ids in [0, N) that are present and accepted. */
static int reference(const float *q, const bool *present, bool even_only, int k, index_hit *out) {
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (!present[i] || (even_only && i % 2)) continue;
        double dot = 0;
        for (int j = 0; j < D; j++) dot += (double)q[j] * vecs[i][j];
        index_hit h = {i, (float)(1 - dot)};
        int pos = n < k ? n++ : k;
        if (pos == k && !hit_worse(out[k - 1], h)) continue;
        if (pos == k) pos = k - 1;
        while (pos > 0 && hit_worse(out[pos - 1], h)) {
            out[pos] = out[pos - 1];
            pos--;
        }
        out[pos] = h;
    }
    return n;
}

static void assert_same_hits(const index_hit *a, int na, const index_hit *b, int nb) {
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        /* float and double rankings may swap near-ties; the distances must agree */
        assert_true(fabsf(a[i].dist - b[i].dist) < 1e-5f);
    }
    int same = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) same += a[i].id == b[j].id;
    assert_true(same >= na - 1);
}

static void test_flat_search_is_exact(void **state) {
    (void)state;
    static bool present[N];
    flat_index *f = flat_new(D);
    assert_non_null(f);
    for (int i = 0; i < N; i++) {
        random_unit(vecs[i], D);
        assert_int_equal(flat_add(f, i, vecs[i]), IS_OK);
        present[i] = true;
    }
    assert_int_equal(flat_add(f, 5, vecs[5]), IS_ERR_INVALID);
    /* remove a third, in an order that exercises the row swap */
    for (int i = 0; i < N; i += 3) {
        assert_int_equal(flat_remove(f, i), IS_OK);
        present[i] = false;
    }
    assert_int_equal(flat_remove(f, 0), IS_ERR_NOT_FOUND);
    assert_int_equal(flat_count(f), N - (N + 2) / 3);
    for (int i = 0; i < N; i++) {
        const float *v = flat_get(f, i);
        if (!present[i]) assert_null(v);
        else assert_memory_equal(v, vecs[i], sizeof vecs[i]);
    }
    index_hit got[20], want[20];
    for (int qn = 0; qn < 50; qn++) {
        float q[D];
        random_unit(q, D);
        int ng, nw;
        assert_int_equal(flat_search(f, q, 20, NULL, NULL, got, &ng), IS_OK);
        nw = reference(q, present, false, 20, want);
        assert_same_hits(got, ng, want, nw);
        assert_int_equal(flat_search(f, q, 20, accept_even, NULL, got, &ng), IS_OK);
        nw = reference(q, present, true, 20, want);
        assert_same_hits(got, ng, want, nw);
        for (int i = 0; i < ng; i++) assert_true(got[i].id % 2 == 0 && present[got[i].id]);
    }
    /* a stored vector is its own nearest neighbour at distance ~0 */
    int ng;
    assert_int_equal(flat_search(f, vecs[1], 1, NULL, NULL, got, &ng), IS_OK);
    assert_int_equal(ng, 1);
    assert_int_equal(got[0].id, 1);
    assert_true(fabsf(got[0].dist) < 1e-5f);
    /* candidates only: absent ids are skipped */
    int64_t ids[] = {0, 1, 2, 4, 5};
    assert_int_equal(flat_search_ids(f, vecs[4], ids, 5, 10, got, &ng), IS_OK);
    assert_int_equal(ng, 4);
    assert_int_equal(got[0].id, 4);
    for (int i = 0; i < ng; i++) assert_true(got[i].id != 0);
    assert_int_equal(flat_search(f, vecs[1], 0, NULL, NULL, got, &ng), IS_ERR_INVALID);
    flat_free(f);
}

static void test_fewer_than_k_and_ties(void **state) {
    (void)state;
    flat_index *f = flat_new(4);
    float v[4] = {1, 0, 0, 0};
    index_hit got[10];
    int n;
    assert_int_equal(flat_search(f, v, 10, NULL, NULL, got, &n), IS_OK);
    assert_int_equal(n, 0);
    for (int64_t id = 9; id >= 7; id--) assert_int_equal(flat_add(f, id, v), IS_OK); /* equal vectors */
    assert_int_equal(flat_search(f, v, 10, NULL, NULL, got, &n), IS_OK);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(got[i].id, 7 + i); /* ties: smaller id first */
    flat_free(f);
    assert_null(flat_new(0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idmap_matches_model),
        cmocka_unit_test(test_dot_matches_double),
        cmocka_unit_test(test_every_dot_level_agrees),
        cmocka_unit_test(test_flat_search_is_exact),
        cmocka_unit_test(test_fewer_than_k_and_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
