/* head_project.h — the head's projection: out[k][d] = w[d] · x[k] for a few images at once
 * (internal to src/embed; head.c is its only caller).
 *
 * The weights are float32 or bfloat16. A bfloat16 weight is widened exactly to float32 and
 * multiplied by the float32 features, so only the weights' rounding differs from the float32
 * product. At batch 1 the product is bound by reading the weights (2.6 MB of float32, 1.3 MB of
 * bfloat16 for the shipped 512 × 1280 head), and by the latency of one chain of additions if
 * written naively: the kernels take four rows at a time (four independent chains of vector FMAs),
 * and every image's features stream past those rows while they sit in L1, so a batch reads the
 * weights once.
 *
 * Levels: AVX-512F, AVX2+FMA, portable C, the best the CPU has, chosen on first use. The
 * IMGSEARCH_SIMD variable the index's kernels honour (portable|avx2) caps it here too, so CI
 * tests a fallback on a CPU that has more. Levels agree within float rounding (their sums run in
 * different orders). Thread-safe: no state but the choice, made once. */
#ifndef IMGSEARCH_HEAD_PROJECT_H
#define IMGSEARCH_HEAD_PROJECT_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { HEAD_SIMD_PORTABLE, HEAD_SIMD_AVX2, HEAD_SIMD_AVX512 } head_simd;

/* The level in use (the CPU's best, capped by IMGSEARCH_SIMD), and whether the CPU has level l. */
head_simd head_simd_used(void);
bool head_simd_supported(head_simd l);

/* w: [rows][len] float32 (head_project_f32) or bfloat16 bit patterns (head_project_bf16);
 * x: [n][len]; out: [n][rows]. level must be supported (head_simd_supported). */
void head_project_f32(head_simd level, const float *w, int rows, int len, const float *x, int n, float *out);
void head_project_bf16(head_simd level, const uint16_t *w, int rows, int len, const float *x, int n, float *out);

#endif
