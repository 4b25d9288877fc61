/* distance.h — vector kernels. dot_f32 and dot_i8 pick AVX2+FMA when the CPU has it (checked once), a
 * portable loop otherwise. Thread-safe. */
#ifndef IMGSEARCH_DISTANCE_H
#define IMGSEARCH_DISTANCE_H

#include <stddef.h>

#include <stdint.h>

float dot_f32(const float *a, const float *b, size_t n);
/* The implementations dot_f32 / dot_i8 dispatch to, for hot loops that resolve them once. */
typedef float (*dot_f32_fn)(const float *a, const float *b, size_t n);
typedef int32_t (*dot_i8_fn)(const int8_t *a, const int8_t *b, size_t n);
dot_f32_fn dot_f32_best(void);
dot_i8_fn dot_i8_best(void);

/* Exact integer dot product of two int8 vectors (n < 2^17, so the sum fits in 32 bits). */
int32_t dot_i8(const int8_t *a, const int8_t *b, size_t n);

/* Cosine distance of two L2-normalised vectors: 1 - a·b, in [0, 2]. */
static inline float cosine_distance(const float *a, const float *b, size_t n) {
    return 1.0f - dot_f32(a, b, n);
}

#endif
