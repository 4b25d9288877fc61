#include "embed/bf16_round.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float bf16_nearest(float f) {
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return float_of((u | 0x400000u) & 0xffff0000u); /* a quiet NaN */
    return float_of((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

/* The two bfloat16 values around f: toward zero (truncation) and away from it. Equal when f is
 * a bfloat16 already, or when the one away from zero would overflow. */
static void neighbours(float f, float *toward, float *away) {
    uint32_t u = bits_of(f);
    *toward = float_of(u & 0xffff0000u);
    float a = float_of((u & 0xffff0000u) + 0x10000u);
    *away = (u & 0xffffu) && isfinite(a) ? a : *toward;
}

int bf16_round_smooth(float *w, int cout, int cin, int k) {
    int n = cin * k * k;
    if (n < 1 || n > BF16_ROUND_MAX_TAPS) return -1;
    /* The prior covariance of the taps' inputs, tap index (channel, row, column). */
    double c[BF16_ROUND_MAX_TAPS][BF16_ROUND_MAX_TAPS];
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            int ca = a / (k * k), ya = a / k % k, xa = a % k;
            int cb = b / (k * k), yb = b / k % k, xb = b % k;
            c[a][b] = pow(BF16_ROUND_RHO, abs(ya - yb) + abs(xa - xb)) * (ca == cb ? 1.0 : BF16_ROUND_RHO_CHANNEL);
        }
    for (int o = 0; o < cout; o++) {
        float *wo = w + (size_t)o * (size_t)n;
        float lo[BF16_ROUND_MAX_TAPS], hi[BF16_ROUND_MAX_TAPS], pick[BF16_ROUND_MAX_TAPS];
        double d[BF16_ROUND_MAX_TAPS], g[BF16_ROUND_MAX_TAPS]; /* d: pick - w; g = C d */
        for (int t = 0; t < n; t++) {
            neighbours(wo[t], &lo[t], &hi[t]);
            pick[t] = bf16_nearest(wo[t]);
            d[t] = (double)pick[t] - (double)wo[t];
        }
        for (int a = 0; a < n; a++) {
            g[a] = 0;
            for (int b = 0; b < n; b++) g[a] += c[a][b] * d[b];
        }
        /* Each accepted flip lowers dᵀ C d, so this ends; the cap only bounds the work. */
        for (int pass = 0, improved = 1; improved && pass < 4 * n; pass++) {
            improved = 0;
            for (int t = 0; t < n; t++) {
                float other = pick[t] == lo[t] ? hi[t] : lo[t];
                double step = (double)other - (double)pick[t];
                if (step == 0) continue;
                double change = 2 * step * g[t] + step * step * c[t][t];
                if (change >= -1e-30) continue;
                pick[t] = other;
                d[t] += step;
                for (int a = 0; a < n; a++) g[a] += step * c[a][t];
                improved = 1;
            }
        }
        memcpy(wo, pick, (size_t)n * sizeof *wo);
    }
    return 0;
}
