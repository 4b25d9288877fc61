/* resample.c — see resample.h. */
#include "embed/resample.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/status.h"

static float lanczos3(double x) {
    if (x == 0) return 1.0f;
    if (x <= -3 || x >= 3) return 0.0f;
    double px = M_PI * x;
    return (float)(3.0 * sin(px) * sin(px / 3.0) / (px * px));
}

/* Catmull-Rom (bicubic, a = -0.5) */
static float cubic(double x) {
    x = fabs(x);
    if (x < 1) return (float)((1.5 * x - 2.5) * x * x + 1);
    if (x < 2) return (float)(((-0.5 * x + 2.5) * x - 4) * x + 2);
    return 0.0f;
}

int resample_axis(resample_taps *t, int n, int off, double scale, double origin, int src_n, char *err,
                  size_t errlen) {
    bool enlarge = scale < 1;
    double fscale = enlarge ? 1 : scale, support = enlarge ? 2 : 3 * fscale;
    t->n = n;
    t->stride = (int)ceil(2 * support) + 2;
    t->first = malloc(sizeof(int) * 2 * (size_t)n);
    t->count = t->first ? t->first + n : NULL;
    t->w = malloc(sizeof(float) * (size_t)n * (size_t)t->stride);
    if (!t->first || !t->w) {
        resample_axis_free(t);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        double centre = (off + i + 0.5) * scale - origin;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > src_n) hi = src_n;
        if (hi - lo > t->stride) hi = lo + t->stride;
        float *w = t->w + (size_t)i * t->stride, sum = 0;
        for (int k = lo; k < hi; k++) {
            w[k - lo] = enlarge ? cubic(k + 0.5 - centre) : lanczos3((k + 0.5 - centre) / fscale);
            sum += w[k - lo];
        }
        if (hi <= lo || !(sum > 0)) {
            resample_axis_free(t);
            return is_fail(err, errlen, IS_ERR_INTERNAL, "output pixel %d of %d has no source pixel (of %d) in reach",
                           i, n, src_n);
        }
        for (int k = 0; k < hi - lo; k++) w[k] /= sum;
        t->first[i] = lo;
        t->count[i] = hi - lo;
    }
    return IS_OK;
}

void resample_axis_free(resample_taps *t) {
    free(t->first);
    free(t->w);
    t->first = t->count = NULL;
    t->w = NULL;
}

/* Rows first (each output row from its taps' rows, over the window's width), then columns. */
int resample_rgb(const unsigned char *win, int ww, int wx0, int wy0, const resample_taps *tx, const resample_taps *ty,
                 const float mean[3], const float std[3], float *out, char *err, size_t errlen) {
    size_t row_len = (size_t)ww * 3;
    float *restrict line = malloc(sizeof(float) * row_len);
    if (!line) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    float scale[3], shift[3];
    for (int c = 0; c < 3; c++) {
        scale[c] = 1.0f / std[c];
        shift[c] = -mean[c] / std[c];
    }
    for (int oy = 0; oy < ty->n; oy++) {
        const float *wy = ty->w + (size_t)oy * ty->stride;
        const unsigned char *rows = win + (size_t)(ty->first[oy] - wy0) * row_len;
        for (size_t k = 0; k < row_len; k++) line[k] = 0;
        for (int t = 0; t < ty->count[oy]; t++) {
            const unsigned char *restrict r = rows + (size_t)t * row_len;
            float wt = wy[t];
            for (size_t k = 0; k < row_len; k++) line[k] += wt * r[k];
        }
        float *o = out + (size_t)oy * tx->n * 3;
        for (int ox = 0; ox < tx->n; ox++) {
            const float *wx = tx->w + (size_t)ox * tx->stride;
            const float *src = line + (size_t)(tx->first[ox] - wx0) * 3;
            float r = 0, g = 0, b = 0;
            for (int t = 0; t < tx->count[ox]; t++, src += 3) {
                r += wx[t] * src[0];
                g += wx[t] * src[1];
                b += wx[t] * src[2];
            }
            /* Lanczos rings past the ends: clip as an 8-bit image would */
            r = r < 0 ? 0 : r > 255 ? 255 : r;
            g = g < 0 ? 0 : g > 255 ? 255 : g;
            b = b < 0 ? 0 : b > 255 ? 255 : b;
            o[ox * 3 + 0] = r * scale[0] + shift[0];
            o[ox * 3 + 1] = g * scale[1] + shift[1];
            o[ox * 3 + 2] = b * scale[2] + shift[2];
        }
    }
    free(line);
    return IS_OK;
}
