/* Unit tests for the head: every projection level this CPU has agrees with a double-precision
 * product (float32 and bfloat16 weights, every batch size, tails of rows and lengths); the level in
 * use honours IMGSEARCH_SIMD; head_apply gives each image of a batch exactly its batch-1 answer,
 * and its bfloat16 weights stay within rounding of float32. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/head.h"
#include "embed/head_project.h"

static uint64_t seed = 11;

static float next_f(void) { /* reproducible, in [-1, 1) */
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(seed >> 11) / (double)(1ull << 52) - 1.0);
}

static float widen(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const char *level_name(head_simd l) {
    return l == HEAD_SIMD_AVX512 ? "avx512" : l == HEAD_SIMD_AVX2 ? "avx2" : "portable";
}

static void every_level_agrees(void **state) {
    (void)state;
    enum { MAXR = 45, MAXL = 1300, MAXN = 8 };
    static float w[MAXR * MAXL], x[MAXN * MAXL], out[MAXN * MAXR];
    static uint16_t wb[MAXR * MAXL];
    for (int i = 0; i < MAXR * MAXL; i++) {
        w[i] = next_f();
        wb[i] = (uint16_t)(next_f() * 32768 + 32768) & 0xbfffu; /* finite bfloat16 patterns of both signs */
    }
    for (int i = 0; i < MAXN * MAXL; i++) x[i] = next_f();
    const int shapes[][2] = {{1, 1}, {3, 15}, {4, 16}, {13, 37}, {45, 1280}, {8, 1299}};
    int levels = 0;
    for (head_simd l = HEAD_SIMD_PORTABLE; l <= HEAD_SIMD_AVX512; l++) {
        if (!head_simd_supported(l)) continue;
        levels++;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int n = 1; n <= MAXN; n += 2) {
                int rows = shapes[s][0], len = shapes[s][1];
                for (int bf = 0; bf < 2; bf++) {
                    memset(out, 0xff, sizeof out);
                    if (bf) head_project_bf16(l, wb, rows, len, x, n, out);
                    else head_project_f32(l, w, rows, len, x, n, out);
                    for (int k = 0; k < n; k++)
                        for (int d = 0; d < rows; d++) {
                            double ref = 0, mag = 0;
                            for (int i = 0; i < len; i++) {
                                double wi = bf ? widen(wb[(size_t)d * len + i]) : w[(size_t)d * len + i];
                                ref += wi * x[(size_t)k * len + i];
                                mag += fabs(wi * x[(size_t)k * len + i]);
                            }
                            double got = out[(size_t)k * rows + d];
                            if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30))
                                fail_msg("%s %s rows %d len %d n %d: [%d][%d] = %g, expected %g", level_name(l),
                                         bf ? "bf16" : "f32", rows, len, n, k, d, got, ref);
                        }
                }
            }
    }
    assert_true(levels >= 1);
    const char *cap = getenv("IMGSEARCH_SIMD");
    head_simd best = head_simd_supported(HEAD_SIMD_AVX512) ? HEAD_SIMD_AVX512
                     : head_simd_supported(HEAD_SIMD_AVX2) ? HEAD_SIMD_AVX2
                                                           : HEAD_SIMD_PORTABLE;
    if (cap && (!strcmp(cap, "portable") || !strcmp(cap, "avx2")))
        assert_true(!strcmp(level_name(head_simd_used()), cap) || head_simd_used() == best);
    else assert_int_equal(head_simd_used(), best);
    print_message("head kernels: CPU level %s, in use %s\n", level_name(best), level_name(head_simd_used()));
}

/* A head of 20 × 40 written to a temporary directory (power normalisation on). */
enum { IN = 40, OUT = 20 };

static char dir[64];

static void write_head(void) {
    strcpy(dir, "/tmp/imgsearch_head_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/h.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"name\": \"test-head\", \"weights\": \"h.safetensors\", \"power\": true, \"input_dims\": %d, "
               "\"dims\": %d}\n", IN, OUT);
    fclose(f);
    char header[256];
    int hl = snprintf(header, sizeof header,
                      "{\"mean\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
                      "\"projection\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%d,%d]}}",
                      IN, 4 * IN, OUT, IN, 4 * IN, 4 * IN + 4 * IN * OUT);
    while (hl % 8) header[hl++] = ' ';
    header[hl] = 0;
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = (uint64_t)hl;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, (size_t)hl, f);
    for (int i = 0; i < IN + IN * OUT; i++) {
        float v = i < IN ? 0.1f * (next_f() + 1) : next_f();
        fwrite(&v, sizeof v, 1, f);
    }
    fclose(f);
}

static void remove_head(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/h.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

static void batch_matches_batch_one(void **state) {
    (void)state;
    write_head();
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/h.json", dir);
    head *h = NULL;
    assert_int_equal(head_load(path, IN, &h, err, sizeof err), 0);
    assert_non_null(h);
    assert_int_equal(head_dims(h), OUT);
    enum { N = 7 };
    float feats[N][IN], scratch[N][IN], batch[N][OUT], one[OUT], f32[N][OUT];
    for (int k = 0; k < N; k++)
        for (int i = 0; i < IN; i++) feats[k][i] = 3 * (next_f() + 1); /* ReLU6 features: non-negative */
    for (int reduced = 0; reduced < 2; reduced++) {
        memcpy(scratch, feats, sizeof feats);
        head_apply(h, reduced, &scratch[0][0], N, &batch[0][0]);
        for (int k = 0; k < N; k++) {
            float x[IN];
            memcpy(x, feats[k], sizeof x);
            head_apply(h, reduced, x, 1, one);
            assert_memory_equal(one, batch[k], sizeof one); /* bit for bit */
            double norm = 0;
            for (int d = 0; d < OUT; d++) norm += (double)one[d] * one[d];
            assert_true(fabs(norm - 1) < 1e-5);
        }
        if (!reduced) {
            memcpy(f32, batch, sizeof f32);
            continue;
        }
        for (int k = 0; k < N; k++) { /* bfloat16 weights: within their rounding of float32 */
            double dot = 0;
            int same = 1;
            for (int d = 0; d < OUT; d++) {
                dot += (double)f32[k][d] * batch[k][d];
                same &= f32[k][d] == batch[k][d];
            }
            assert_true(dot > 0.9999);
            assert_false(same); /* the reduced path did use the rounded weights */
        }
    }
    head_free(h);
    remove_head();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_level_agrees),
        cmocka_unit_test(batch_matches_batch_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
