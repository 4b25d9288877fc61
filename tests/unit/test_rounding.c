/* Unit tests for bf16_round: the weights stay one of their two bfloat16 neighbours, and on smooth
 * patches the output error is smaller than rounding each weight to its nearest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/bf16_round.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A reproducible uniform draw in [-1, 1) (the tests must not depend on the C library's rand). */
static double uniform(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*state >> 11) / (double)(1ull << 52) - 1.0;
}

static void nearest_ties_to_even(void **state) {
    (void)state;
    assert_true(bf16_nearest(1.0f) == 1.0f);
    assert_true(bf16_nearest(1.0f + 0x1p-8f) == 1.0f);                 /* halfway: to the even 1.0 */
    assert_true(bf16_nearest(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);   /* halfway: to the even one above */
    assert_true(bf16_nearest(-(1.0f + 0x1p-8f + 0x1p-20f)) == -(1.0f + 0x1p-7f)); /* past halfway */
}

/* Every result is a bfloat16 and one of the weight's two neighbours. */
static void picks_a_neighbour(void **state) {
    (void)state;
    enum { COUT = 40, CIN = 3, K = 3, N = COUT * CIN * K * K };
    float w[N], r[N];
    uint64_t s = 1;
    for (int i = 0; i < N; i++) w[i] = (float)(uniform(&s) * pow(2.0, 8 * uniform(&s)));
    w[5] = 0.5f; /* exact already: must stay */
    memcpy(r, w, sizeof r);
    assert_int_equal(bf16_round_smooth(r, COUT, CIN, K), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(bits(r[i]) & 0xffffu, 0);
        float toward = from_bits(bits(w[i]) & 0xffff0000u);
        float away = from_bits((bits(w[i]) & 0xffff0000u) + 0x10000u);
        assert_true(r[i] == toward || r[i] == away);
    }
    assert_true(r[5] == 0.5f);
}

/* Depthwise-like 3 × 3 kernels whose taps nearly cancel (an edge detector after batch-norm
 * folding), applied to smooth patches (a level, a gradient and a little noise): the output error
 * of the chosen rounding is well below that of rounding each weight to its nearest. */
static void smaller_error_on_smooth_patches(void **state) {
    (void)state;
    enum { COUT = 300, K = 3, TAPS = K * K, PATCHES = 200 };
    static float w[COUT * TAPS], r[COUT * TAPS];
    uint64_t s = 7;
    for (int o = 0; o < COUT; o++) {
        double mean = 0, scale = 4 + 30 * (uniform(&s) + 1);
        float *wo = w + o * TAPS;
        for (int t = 0; t < TAPS; t++) mean += (wo[t] = (float)uniform(&s)) / TAPS;
        for (int t = 0; t < TAPS; t++) wo[t] = (float)((wo[t] - mean + 0.02 * uniform(&s)) * scale);
    }
    memcpy(r, w, sizeof r);
    assert_int_equal(bf16_round_smooth(r, COUT, 1, K), 0);
    double err_nearest = 0, err_smooth = 0;
    for (int p = 0; p < PATCHES; p++) {
        double level = 2 * uniform(&s), gy = 0.1 * uniform(&s), gx = 0.1 * uniform(&s), x[TAPS];
        for (int t = 0; t < TAPS; t++) x[t] = level + gy * (t / K) + gx * (t % K) + 0.01 * uniform(&s);
        for (int o = 0; o < COUT; o++) {
            double en = 0, es = 0;
            for (int t = 0; t < TAPS; t++) {
                double wt = w[o * TAPS + t];
                en += ((double)bf16_nearest((float)wt) - wt) * x[t];
                es += ((double)r[o * TAPS + t] - wt) * x[t];
            }
            err_nearest += en * en;
            err_smooth += es * es;
        }
    }
    print_message("output error (mean square): nearest %.3g, smooth %.3g (%.1f× less)\n", err_nearest / (COUT * PATCHES),
                  err_smooth / (COUT * PATCHES), err_nearest / err_smooth);
    assert_true(err_smooth * 4 < err_nearest);
}

static void refuses_too_many_taps(void **state) {
    (void)state;
    float w[75], copy[75];
    for (int i = 0; i < 75; i++) w[i] = copy[i] = 1.0f + 0x1p-12f * (float)i;
    assert_int_equal(bf16_round_smooth(w, 1, 3, 5), -1); /* 75 taps */
    assert_memory_equal(w, copy, sizeof w);
    assert_int_equal(bf16_round_smooth(w, 1, 1, 0), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nearest_ties_to_even),
        cmocka_unit_test(picks_a_neighbour),
        cmocka_unit_test(smaller_error_on_smooth_patches),
        cmocka_unit_test(refuses_too_many_taps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
