#include "embed/head_project.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float from_f32(float f) { return f; }

/* One kernel: four rows at a time, each row's dot products with every image while the four rows
 * sit in L1; the rows left over (rows % 4) one at a time. VEC/LANES/LOAD_W/LOAD_X/FMA/ZERO/HSUM
 * are the level's vector operations, WIDEN turns one weight into a float for the tails. */
#define PROJECT_KERNEL(NAME, TARGET, W, VEC, LANES, LOAD_W, LOAD_X, FMA, ZERO, HSUM, WIDEN)                    \
    TARGET static void NAME(const W *w, int rows, int len, const float *x, int n, float *out) {               \
        int d = 0;                                                                                             \
        for (; d + 4 <= rows; d += 4) {                                                                        \
            const W *r0 = w + (size_t)d * (size_t)len, *r1 = r0 + len, *r2 = r1 + len, *r3 = r2 + len;         \
            for (int k = 0; k < n; k++) {                                                                      \
                const float *xk = x + (size_t)k * (size_t)len;                                                 \
                VEC a0 = ZERO, a1 = ZERO, a2 = ZERO, a3 = ZERO;                                                \
                int i = 0;                                                                                     \
                for (; i + LANES <= len; i += LANES) {                                                         \
                    VEC xv = LOAD_X(xk + i);                                                                   \
                    a0 = FMA(LOAD_W(r0 + i), xv, a0);                                                          \
                    a1 = FMA(LOAD_W(r1 + i), xv, a1);                                                          \
                    a2 = FMA(LOAD_W(r2 + i), xv, a2);                                                          \
                    a3 = FMA(LOAD_W(r3 + i), xv, a3);                                                          \
                }                                                                                              \
                float s0 = HSUM(a0), s1 = HSUM(a1), s2 = HSUM(a2), s3 = HSUM(a3);                              \
                for (; i < len; i++) {                                                                         \
                    s0 += WIDEN(r0[i]) * xk[i];                                                                \
                    s1 += WIDEN(r1[i]) * xk[i];                                                                \
                    s2 += WIDEN(r2[i]) * xk[i];                                                                \
                    s3 += WIDEN(r3[i]) * xk[i];                                                                \
                }                                                                                              \
                float *o = out + (size_t)k * (size_t)rows + (size_t)d;                                         \
                o[0] = s0, o[1] = s1, o[2] = s2, o[3] = s3;                                                    \
            }                                                                                                  \
        }                                                                                                      \
        for (; d < rows; d++) {                                                                                \
            const W *r = w + (size_t)d * (size_t)len;                                                          \
            for (int k = 0; k < n; k++) {                                                                      \
                const float *xk = x + (size_t)k * (size_t)len;                                                 \
                float s = 0;                                                                                   \
                for (int i = 0; i < len; i++) s += WIDEN(r[i]) * xk[i];                                        \
                out[(size_t)k * (size_t)rows + (size_t)d] = s;                                                 \
            }                                                                                                  \
        }                                                                                                      \
    }

/* Portable: scalar, but four independent chains. */
#define P_LOAD_F32(p) (*(p))
#define P_LOAD_BF16(p) from_bf16(*(p))
#define P_FMA(a, b, c) ((c) + (a) * (b))
#define P_HSUM(v) (v)
PROJECT_KERNEL(project_f32_portable, , float, float, 1, P_LOAD_F32, P_LOAD_F32, P_FMA, 0.0f, P_HSUM, from_f32)
PROJECT_KERNEL(project_bf16_portable, , uint16_t, float, 1, P_LOAD_BF16, P_LOAD_F32, P_FMA, 0.0f, P_HSUM, from_bf16)

#if defined(__x86_64__)
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx512f")))

T_AVX2 static inline __m256 avx2_load_bf16(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

T_AVX2 static inline float avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T_AVX512 static inline __m512 avx512_load_bf16(const uint16_t *p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

T_AVX512 static inline float avx512_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

PROJECT_KERNEL(project_f32_avx2, T_AVX2, float, __m256, 8, _mm256_loadu_ps, _mm256_loadu_ps, _mm256_fmadd_ps,
               _mm256_setzero_ps(), avx2_hsum, from_f32)
PROJECT_KERNEL(project_bf16_avx2, T_AVX2, uint16_t, __m256, 8, avx2_load_bf16, _mm256_loadu_ps, _mm256_fmadd_ps,
               _mm256_setzero_ps(), avx2_hsum, from_bf16)
PROJECT_KERNEL(project_f32_avx512, T_AVX512, float, __m512, 16, _mm512_loadu_ps, _mm512_loadu_ps, _mm512_fmadd_ps,
               _mm512_setzero_ps(), avx512_hsum, from_f32)
PROJECT_KERNEL(project_bf16_avx512, T_AVX512, uint16_t, __m512, 16, avx512_load_bf16, _mm512_loadu_ps,
               _mm512_fmadd_ps, _mm512_setzero_ps(), avx512_hsum, from_bf16)
#endif

bool head_simd_supported(head_simd l) {
    if (l == HEAD_SIMD_PORTABLE) return true;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (l == HEAD_SIMD_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (l == HEAD_SIMD_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return false;
}

static head_simd used = HEAD_SIMD_PORTABLE;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    head_simd best = head_simd_supported(HEAD_SIMD_AVX512) ? HEAD_SIMD_AVX512
                     : head_simd_supported(HEAD_SIMD_AVX2) ? HEAD_SIMD_AVX2
                                                           : HEAD_SIMD_PORTABLE;
    const char *cap = getenv("IMGSEARCH_SIMD");
    if (cap && !strcmp(cap, "portable")) best = HEAD_SIMD_PORTABLE;
    else if (cap && !strcmp(cap, "avx2") && best > HEAD_SIMD_AVX2) best = HEAD_SIMD_AVX2;
    used = best;
}

head_simd head_simd_used(void) {
    pthread_once(&choose_once, choose);
    return used;
}

void head_project_f32(head_simd level, const float *w, int rows, int len, const float *x, int n, float *out) {
#if defined(__x86_64__)
    if (level == HEAD_SIMD_AVX512) project_f32_avx512(w, rows, len, x, n, out);
    else if (level == HEAD_SIMD_AVX2) project_f32_avx2(w, rows, len, x, n, out);
    else
#endif
        project_f32_portable(w, rows, len, x, n, out);
}

void head_project_bf16(head_simd level, const uint16_t *w, int rows, int len, const float *x, int n, float *out) {
#if defined(__x86_64__)
    if (level == HEAD_SIMD_AVX512) project_bf16_avx512(w, rows, len, x, n, out);
    else if (level == HEAD_SIMD_AVX2) project_bf16_avx2(w, rows, len, x, n, out);
    else
#endif
        project_bf16_portable(w, rows, len, x, n, out);
}
