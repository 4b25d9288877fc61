/* distance.h — vector kernels. dot_f32 and dot_i8 use the best instruction set the CPU
 * has (checked once, at first use): AVX-512 (int8 with VNNI where present), else AVX2+FMA, else a
 * portable loop. IMGSEARCH_SIMD=portable|avx2|avx512|avx512-vnni caps the choice (to test or
 * measure a fallback; a level the CPU lacks is never used). Every level gives the same int8
 * results and float results within rounding. Thread-safe; no state but the choice. */
#ifndef IMGSEARCH_DISTANCE_H
#define IMGSEARCH_DISTANCE_H

#include <stddef.h>

#include <stdint.h>

typedef enum { DOT_PORTABLE, DOT_AVX2, DOT_AVX512, DOT_AVX512_VNNI } dot_level;

/* The best level this CPU supports; the level in use (after IMGSEARCH_SIMD); a level's name. */
dot_level dot_cpu_level(void);
dot_level dot_level_used(void);
const char *dot_level_name(dot_level l);

float dot_f32(const float *a, const float *b, size_t n);
/* The implementations dot_f32 / dot_i8 dispatch to, for hot loops that resolve them once. */
typedef float (*dot_f32_fn)(const float *a, const float *b, size_t n);
typedef int32_t (*dot_i8_fn)(const int8_t *a, const int8_t *b, size_t n);
dot_f32_fn dot_f32_best(void);
dot_i8_fn dot_i8_best(void);
/* One level's kernels, NULL when the CPU lacks it (tests compare every level the CPU has). */
dot_f32_fn dot_f32_at(dot_level l);
dot_i8_fn dot_i8_at(dot_level l);

/* Exact integer dot product of two int8 vectors (n < 2^17, so the sum fits in 32 bits). */
int32_t dot_i8(const int8_t *a, const int8_t *b, size_t n);

/* Cosine distance of two L2-normalised vectors: 1 - a·b, in [0, 2]. */
static inline float cosine_distance(const float *a, const float *b, size_t n) {
    return 1.0f - dot_f32(a, b, n);
}

#endif
