/* resample.h — one resample of 8-bit RGB pixels straight into the model's normalised float
 * tensor (decode.h's layout), for the decoders (decode_jpeg.c, decode.c).
 *
 * Geometry: output pixel i of an axis is pixel off + i of the scaled image, whose centre lies at
 * (off + i + 0.5) · scale - origin in source pixels (scale: source pixels per scaled pixel; origin:
 * how far into the image the source's first pixel starts); source pixel k is centred on k + 0.5.
 * Reducing: Lanczos-3 widened by the scale (libvips' reduce). Enlarging: Catmull-Rom bicubic
 * (vips_resize's interpolator for enlargement). bench/quality.py chose between the two for
 * enlargement: bicubic gave copy recall@1 0.968 / mAP 0.979 / semantic P@10 0.334, Lanczos-3
 * 0.963 / 0.976 / 0.340 (vips_resize, half a pixel off: 0.964 / 0.977 / 0.330). Results are
 * clipped to 0..255 as an 8-bit image would be, then normalised.
 *
 * Ownership: resample_axis allocates the taps, resample_axis_free releases them. Thread-safe: no
 * shared state. */
#ifndef IMGSEARCH_RESAMPLE_H
#define IMGSEARCH_RESAMPLE_H

#include <stddef.h>

/* Output pixel i reads source pixels first[i] .. first[i] + count[i] - 1 (clamped to the image),
 * with weights w[i * stride ...] summing to 1. */
typedef struct {
    int n, stride;
    int *first, *count;
    float *w;
} resample_taps;

/* The taps of n outputs along an axis of src_n source pixels. IS_OK, IS_ERR_NOMEM, or
 * IS_ERR_INTERNAL when an output has no source pixel in reach (with a message in err). */
int resample_axis(resample_taps *t, int n, int off, double scale, double origin, int src_n, char *err,
                  size_t errlen);
void resample_axis_free(resample_taps *t);

/* out (ty->n rows × tx->n columns × 3, normalised as (x - mean) / std) from an RGB window of
 * ww pixels per row whose top-left is source pixel (wx0, wy0), holding every row and column the
 * taps reach. IS_OK or IS_ERR_NOMEM (with a message in err). */
int resample_rgb(const unsigned char *win, int ww, int wx0, int wy0, const resample_taps *tx, const resample_taps *ty,
                 const float mean[3], const float std[3], float *out, char *err, size_t errlen);

#endif
