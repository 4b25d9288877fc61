/* decode.h — image bytes → the model's input tensor, with libvips (and libjpeg itself for plain
 * JPEGs, decode_jpeg.c).
 *
 * Takes JPEG, PNG, WebP, GIF (first frame), TIFF and HEIF/AVIF; anything else libvips could open
 * (SVG, PDF, ImageMagick's formats, text matrices ...) is refused as unsupported before a loader
 * runs. EXIF orientation is applied, colour is converted to sRGB (CMYK, 16-bit, greyscale,
 * palette, an embedded ICC profile other than sRGB's), alpha is flattened on white, and large
 * JPEGs are shrunk while loading. The pixel count
 * is checked from the header before any pixel is decoded, so a decompression bomb costs a header
 * read, and the cost of a decode is bounded by the pixel count whatever the shape (a 65535 x 1
 * strip costs what 65 k pixels cost).
 *
 * Preprocessing follows TensorFlow's EfficientNet evaluation: the centre square of the short side
 * scaled so that crop_fraction of it is `size` pixels, centre crop size × size, (x - mean) / std.
 *
 * Errors: messages are built from what the call itself knows (the stage and the format its header
 * named: "cannot decode the image: the PNG data is truncated or damaged"), never read from libvips'
 * process-wide error buffer, which other threads write to at the same time; libvips' own text is
 * logged to stderr when IMGSEARCH_DEBUG is set.
 *
 * Thread-safe after decode_global_init(); each call uses only its own buffers. */
#ifndef IMGSEARCH_DECODE_H
#define IMGSEARCH_DECODE_H

#include <stddef.h>
#include <stdint.h>

#define DECODE_DEFAULT_MAX_PIXELS 100000000ull /* 100 megapixels */

typedef struct {
    int width, height;     /* of the original, after EXIF orientation */
    char format[16];       /* libvips loader family: "jpeg", "png", "webp", "gif", ... */
    int has_alpha;
    int pages;             /* frames in an animation or pages in a TIFF (1 otherwise) */
    int orientation;       /* EXIF orientation 1..8 as stored (1 when there is none) */
} decode_info;

typedef struct {
    int size;              /* output is size × size × 3 */
    double crop_fraction;  /* 0 < f <= 1 */
    float mean[3], std[3]; /* pixel units (0..255) */
    uint64_t max_pixels;   /* 0 means DECODE_DEFAULT_MAX_PIXELS */
} decode_params;

/* Starts libvips once per process (argv0 may be NULL). Returns an is_status. */
int decode_global_init(const char *argv0, char *err, size_t errlen);

/* Reads only the header: format, size after orientation, pages. Fails like decode_preprocess
 * would for empty, unknown, unreadable or oversized input. */
int decode_probe(const void *buf, size_t len, uint64_t max_pixels, decode_info *info,
                 char *err, size_t errlen);

/* Decodes buf and writes size*size*3 floats (NHWC) into out. info may be NULL.
 * Errors: IS_ERR_EMPTY_IMAGE, IS_ERR_UNSUPPORTED_IMAGE, IS_ERR_CORRUPT_IMAGE,
 * IS_ERR_IMAGE_TOO_LARGE, IS_ERR_NOMEM, IS_ERR_INTERNAL. */
int decode_preprocess(const void *buf, size_t len, const decode_params *p, float *out,
                      decode_info *info, char *err, size_t errlen);

/* A thumbnail that fits in size × size (aspect kept, EXIF orientation applied, sRGB), encoded as
 * "jpeg" or "webp" into a new buffer the caller frees with free(). */
int decode_thumbnail(const void *buf, size_t len, int size, const char *format, uint64_t max_pixels,
                     unsigned char **out, size_t *out_len, char *err, size_t errlen);

#endif
