#include "index/distance.h"

#include <pthread.h>

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
static pthread_once_t dot_once = PTHREAD_ONCE_INIT;

static void dot_choose(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) dot_impl = dot_avx2;
    if (__builtin_cpu_supports("avx2")) dot_i8_impl = dot_i8_avx2;
#endif
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
