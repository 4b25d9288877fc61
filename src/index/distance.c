#include "index/distance.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* int8 → int16, then multiply-add pairs into int32 lanes: 16 products per step, exact. */
__attribute__((target("avx2"))) static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i + 16)));
        __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i + 16)));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
    }
    __m256i s = _mm256_add_epi32(s0, s1);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    int32_t r = _mm_cvtsi128_si32(h);
    for (; i < n; i++) r += (int32_t)a[i] * b[i];
    return r;
}

/* 64 floats a step in four independent sums (the FMA latency is 4 cycles); the tail by masked
 * loads, so no scalar loop. */
__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* int8 → int16 (32 at a time), then pairwise multiply-add into int32 lanes: exact. With VNNI the
 * multiply-add and the accumulation are one instruction (vpdpwssd). */
#define DOT_I8_AVX512(name, target_attr, madd_acc)                                                       \
    __attribute__((target(target_attr))) static int32_t name(const int8_t *a, const int8_t *b, size_t n) { \
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();                                \
        size_t i = 0;                                                                                    \
        for (; i + 64 <= n; i += 64) {                                                                   \
            __m512i a0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(a + i)));             \
            __m512i b0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + i)));             \
            __m512i a1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(a + i + 32)));        \
            __m512i b1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + i + 32)));        \
            s0 = madd_acc(s0, a0, b0);                                                                   \
            s1 = madd_acc(s1, a1, b1);                                                                   \
        }                                                                                                \
        for (; i < n; i += 32) {                                                                         \
            __mmask32 m = n - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - i)) - 1);                   \
            __m512i a0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, a + i));                        \
            __m512i b0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, b + i));                        \
            s0 = madd_acc(s0, a0, b0);                                                                   \
        }                                                                                                \
        return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));                                        \
    }

#define MADD_BW(acc, x, y) _mm512_add_epi32(acc, _mm512_madd_epi16(x, y))
#define MADD_VNNI(acc, x, y) _mm512_dpwssd_epi32(acc, x, y)
DOT_I8_AVX512(dot_i8_avx512bw, "avx512f,avx512bw,avx512vl", MADD_BW)
DOT_I8_AVX512(dot_i8_avx512vnni, "avx512f,avx512bw,avx512vl,avx512vnni", MADD_VNNI)

#endif

static int32_t dot_i8_portable(const int8_t *a, const int8_t *b, size_t n) {
    int32_t r = 0;
    for (size_t i = 0; i < n; i++) r += (int32_t)a[i] * b[i];
    return r;
}

/* Several independent sums so the compiler can keep them in vector registers. */
static float dot_portable(const float *a, const float *b, size_t n) {
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float r = 0;
    for (int j = 0; j < 8; j++) r += acc[j];
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

static float (*dot_impl)(const float *, const float *, size_t) = dot_portable;
static int32_t (*dot_i8_impl)(const int8_t *, const int8_t *, size_t) = dot_i8_portable;
static dot_level chosen = DOT_PORTABLE;
static pthread_once_t dot_once = PTHREAD_ONCE_INIT;

dot_level dot_cpu_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return __builtin_cpu_supports("avx512vnni") ? DOT_AVX512_VNNI : DOT_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DOT_AVX2;
#endif
    return DOT_PORTABLE;
}

static const char *const LEVEL_NAMES[] = {"portable", "avx2", "avx512", "avx512-vnni"};

const char *dot_level_name(dot_level l) { return l >= DOT_PORTABLE && l <= DOT_AVX512_VNNI ? LEVEL_NAMES[l] : "?"; }

dot_f32_fn dot_f32_at(dot_level l) {
    if (l > dot_cpu_level()) return NULL;
#if defined(__x86_64__)
    if (l >= DOT_AVX512) return dot_avx512;
    if (l == DOT_AVX2) return dot_avx2;
#endif
    return dot_portable;
}

dot_i8_fn dot_i8_at(dot_level l) {
    if (l > dot_cpu_level()) return NULL;
#if defined(__x86_64__)
    if (l == DOT_AVX512_VNNI) return dot_i8_avx512vnni;
    if (l == DOT_AVX512) return dot_i8_avx512bw;
    if (l == DOT_AVX2) return dot_i8_avx2;
#endif
    return dot_i8_portable;
}

/* The CPU's best level, or a lower one named by IMGSEARCH_SIMD (to test or measure a fallback). */
static void dot_choose(void) {
    dot_level l = dot_cpu_level();
    const char *cap = getenv("IMGSEARCH_SIMD");
    for (int i = DOT_PORTABLE; cap && i <= DOT_AVX512_VNNI; i++)
        if (!strcmp(cap, LEVEL_NAMES[i]) && (dot_level)i < l) l = (dot_level)i;
    chosen = l;
    dot_impl = dot_f32_at(l);
    dot_i8_impl = dot_i8_at(l);
}

dot_level dot_level_used(void) {
    pthread_once(&dot_once, dot_choose);
    return chosen;
}

float dot_f32(const float *a, const float *b, size_t n) {
    pthread_once(&dot_once, dot_choose);
    return dot_impl(a, b, n);
}

int32_t dot_i8(const int8_t *a, const int8_t *b, size_t n) {
    pthread_once(&dot_once, dot_choose);
    return dot_i8_impl(a, b, n);
}

dot_f32_fn dot_f32_best(void) {
    pthread_once(&dot_once, dot_choose);
    return dot_impl;
}

dot_i8_fn dot_i8_best(void) {
    pthread_once(&dot_once, dot_choose);
    return dot_i8_impl;
}
