/* decode_jpeg.c — decode.c's path for plain JPEGs (see decode_internal.h).
 *
 * A JPEG is decoded by libjpeg(-turbo) itself, at 1/2, 1/4 or 1/8 (DCT scaling, as Pillow's
 * draft()) when it is at least twice the box, and the size × size output pixels are computed
 * straight from those pixels: one resample of only the crop (resample.h: Lanczos-3 reducing, the
 * filter of libvips' thumbnail and of bench/embed.py's quality reference; bicubic enlarging a small
 * JPEG), in float, clipped to 0..255 and normalised as it is written.
 *
 * Why libjpeg directly and not libvips' loader, which this file used before: what is left of a
 * 12 MP photo's decode is libjpeg's Huffman decoding of every coefficient (~8 ms, no option skips
 * it); libvips' loader cost ~1.3 ms around it (a second header parse, its region pipeline). Here
 * the rows above the crop's window are skipped (jpeg_skip_scanlines: no colour conversion) and
 * decoding stops after its last row. The pixels are bit for bit those libvips' loader gave (same
 * library, same settings; checked on the 56 packaged JPEGs). jpeg_crop_scanline is not used: its
 * upsampling at the cut differed by a level here and there, and it saved nothing measurable.
 * What libvips checked is checked here: the pixel limit (decode_probe, before this runs), a
 * cut-off file is an error (libvips' fail_on=truncated; other libjpeg warnings, such as extraneous
 * bytes before a marker, are tolerated as libvips tolerated them), and a progressive JPEG may have
 * at most DECODE_JPEG_MAX_SCANS scans (a hostile file of thousands of tiny scans costs seconds
 * of CPU otherwise; ordinary ones have about ten).
 *
 * The geometry is the thumbnail path's (short side scaled to box, long side to
 * round(long · box / short), the centre square, its centre size × size, the same integer offsets),
 * with each output pixel placed through the full-resolution size, so a size that is not a multiple
 * of the shrink does not shift the picture. Only 3-component 8-bit JPEGs (YCbCr or RGB) with no
 * ICC profile or an sRGB one (icc.h; a quarter of the packaged photos carry one) come here; CMYK,
 * grey and other profiles (Adobe RGB, Display P3) go back to decode.c's thumbnail path, which
 * converts them to sRGB (DECODE_JPEG_NOT_PLAIN). EXIF orientation is applied to the window read,
 * pixel for pixel as libvips' autorot would. */
#include <math.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* jpeglib.h needs size_t and FILE declared first */
#include <jerror.h>
#include <jpeglib.h>

#include "embed/decode_internal.h"
#include "embed/icc.h"
#include "embed/resample.h"
#include "util/status.h"

/* Where pixel (x, y) of the upright image lies in the stored one (sw × sh), for EXIF orientation o:
 * stored = (ax·x + bx·y + cx, ay·x + by·y + cy). 5..8 swap the axes. */
typedef struct {
    int ax, bx, cx, ay, by, cy;
} orient_map;

static orient_map orientation_map(int o, int sw, int sh) {
    switch (o) {
    case 2: return (orient_map){-1, 0, sw - 1, 0, 1, 0};       /* mirrored */
    case 3: return (orient_map){-1, 0, sw - 1, 0, -1, sh - 1}; /* turned 180 */
    case 4: return (orient_map){1, 0, 0, 0, -1, sh - 1};       /* mirrored vertically */
    case 5: return (orient_map){0, 1, 0, 1, 0, 0};             /* transposed */
    case 6: return (orient_map){0, 1, 0, -1, 0, sh - 1};       /* turned 90 clockwise */
    case 7: return (orient_map){0, -1, sw - 1, -1, 0, sh - 1}; /* transversed */
    case 8: return (orient_map){0, -1, sw - 1, 1, 0, 0};       /* turned 90 anticlockwise */
    default: return (orient_map){1, 0, 0, 0, 1, 0};
    }
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int too_many_scans;
} jpeg_errors;

static void jpeg_log(j_common_ptr c) {
    if (!getenv("IMGSEARCH_DEBUG")) return;
    char msg[JMSG_LENGTH_MAX];
    c->err->format_message(c, msg);
    fprintf(stderr, "imgsearch: libjpeg: %s\n", msg);
}

static void jpeg_on_error(j_common_ptr c) {
    jpeg_log(c);
    longjmp(((jpeg_errors *)c->err)->jump, 1);
}

/* Warnings (level -1): a file that ends early is an error; other damage libjpeg recovers from. */
static void jpeg_on_message(j_common_ptr c, int level) {
    if (level >= 0) return; /* trace messages */
    c->err->num_warnings++;
    if (c->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(c);
    jpeg_log(c);
}

static void jpeg_on_progress(j_common_ptr c) {
    if (((j_decompress_ptr)c)->input_scan_number <= DECODE_JPEG_MAX_SCANS) return;
    ((jpeg_errors *)c->err)->too_many_scans = 1;
    longjmp(((jpeg_errors *)c->err)->jump, 1);
}

/* An APP2 "ICC_PROFILE" marker (kept by jpeg_save_markers), whole or not. */
static int has_icc_marker(j_decompress_ptr c) {
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && !memcmp(m->data, "ICC_PROFILE", 12)) return 1;
    return 0;
}

/* No ICC profile, or one that is sRGB (icc.h): converting to sRGB would change nothing. */
static int colour_is_srgb(j_decompress_ptr c) {
    if (!has_icc_marker(c)) return 1;
    JOCTET *icc = NULL;
    unsigned int icc_len = 0;
    int srgb = jpeg_read_icc_profile(c, &icc, &icc_len) && icc_is_srgb(icc, icc_len);
    free(icc);
    return srgb;
}

/* Rows top .. top + rh - 1, columns left .. left + rw - 1 of the JPEG decoded at 1/shrink (as
 * stored, W × H at full size) into px (rw · rh · 3 bytes, RGB). IS_OK, DECODE_JPEG_NOT_PLAIN or an
 * error. */
static int read_window(const void *buf, size_t len, int shrink, int W, int H, int left, int top, int rw, int rh,
                       unsigned char *px, char *err, size_t errlen) {
    struct jpeg_decompress_struct c;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    jpeg_errors e = {.too_many_scans = 0};
    unsigned char *volatile line = NULL;
    volatile int rc = IS_OK;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_on_error;
    e.pub.emit_message = jpeg_on_message;
    if (setjmp(e.jump)) {
        rc = e.too_many_scans ? is_fail(err, errlen, IS_ERR_CORRUPT_IMAGE,
                                        "cannot decode the image: a progressive JPEG of more than %d scans",
                                        DECODE_JPEG_MAX_SCANS)
                              : decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", "jpeg");
        goto done;
    }
    jpeg_create_decompress(&c);
    c.progress = &progress;
    jpeg_mem_src(&c, buf, (unsigned long)len);
    jpeg_save_markers(&c, JPEG_APP0 + 2, 0xFFFF);
    jpeg_read_header(&c, TRUE);
    if (c.num_components != 3 || (c.jpeg_color_space != JCS_YCbCr && c.jpeg_color_space != JCS_RGB) ||
        c.data_precision != 8 || !colour_is_srgb(&c)) {
        rc = DECODE_JPEG_NOT_PLAIN;
        goto done;
    }
    if ((int)c.image_width != W || (int)c.image_height != H) {
        /* decode_probe read the same header through libvips: never seen, but never trusted */
        rc = decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", "jpeg");
        goto done;
    }
    c.scale_num = 1;
    c.scale_denom = (unsigned)shrink;
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    /* output_width is W / shrink rounded up, and the window lies within W / shrink rounded down */
    line = malloc((size_t)c.output_width * 3);
    if (!line) {
        rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (top > 0 && jpeg_skip_scanlines(&c, (JDIMENSION)top) != (JDIMENSION)top) longjmp(e.jump, 1);
    for (int y = 0; y < rh; y++) {
        JSAMPROW r = line;
        if (jpeg_read_scanlines(&c, &r, 1) != 1) longjmp(e.jump, 1);
        memcpy(px + (size_t)y * rw * 3, line + (size_t)left * 3, (size_t)rw * 3);
    }
    /* the rows past the window are not decoded */
    jpeg_abort_decompress(&c);
done:
    jpeg_destroy_decompress(&c);
    free(line);
    return rc;
}

int decode_jpeg_tensor(const void *buf, size_t len, const decode_info *info, int shrink, int box,
                       const decode_params *p, float *out, char *err, size_t errlen) {
    int o = info->orientation >= 1 && info->orientation <= 8 ? info->orientation : 1;
    /* the image upright (W × H), as stored, and shrunk: whole pixels only (rounded down, as
     * libvips' loader kept them; libjpeg also gives the last partial one, never read) */
    int W = info->width, H = info->height;
    int storedW = o >= 5 ? H : W, storedH = o >= 5 ? W : H;
    int sw = storedW / shrink, sh = storedH / shrink;
    int uw = o >= 5 ? sh : sw, uh = o >= 5 ? sw : sh; /* upright */
    /* the scaled image of the slow path: short side box, long side round(long · box / short) */
    int tw = W <= H ? box : (int)lround((double)W * box / H), th = W <= H ? (int)lround((double)H * box / W) : box;
    int offx = (tw - box) / 2 + (box - p->size) / 2, offy = (th - box) / 2 + (box - p->size) / 2;
    double scalex = (double)W / shrink / tw, scaley = (double)H / shrink / th;
    /* the few image pixels past the last whole shrunk pixel are dropped, which after a mirror or a turn are at the start
     * of an upright axis, so the source starts that far (< 1 source pixel) into the image */
    orient_map m = orientation_map(o, sw, sh);
    int rem_w = storedW - sw * shrink, rem_h = storedH - sh * shrink; /* stored axes */
    double originx = (m.ax + m.ay < 0 ? (o >= 5 ? rem_h : rem_w) : 0) / (double)shrink;
    double originy = (m.bx + m.by < 0 ? (o >= 5 ? rem_w : rem_h) : 0) / (double)shrink;
    int n = p->size;
    resample_taps tx = {0}, ty = {0};
    unsigned char *px = NULL, *upright = NULL;
    int rc = resample_axis(&tx, n, offx, scalex, originx, uw, err, errlen);
    if (!rc) rc = resample_axis(&ty, n, offy, scaley, originy, uh, err, errlen);
    if (rc) goto done;
    /* the window of upright pixels the taps reach, and where it lies in the stored image */
    int wx0 = tx.first[0], wx1 = tx.first[n - 1] + tx.count[n - 1];
    int wy0 = ty.first[0], wy1 = ty.first[n - 1] + ty.count[n - 1];
    int ww = wx1 - wx0, wh = wy1 - wy0;
    int ax = m.ax * wx0 + m.bx * wy0 + m.cx, ay = m.ay * wx0 + m.by * wy0 + m.cy;
    int bx = m.ax * (wx1 - 1) + m.bx * (wy1 - 1) + m.cx, by = m.ay * (wx1 - 1) + m.by * (wy1 - 1) + m.cy;
    int left = ax < bx ? ax : bx, top = ay < by ? ay : by;
    int rw = abs(bx - ax) + 1, rh = abs(by - ay) + 1;
    px = malloc((size_t)rw * rh * 3);
    if (!px) {
        rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = read_window(buf, len, shrink, storedW, storedH, left, top, rw, rh, px, err, errlen);
    if (rc != IS_OK) goto done;
    const unsigned char *win = px;
    if (o != 1) {
        /* upright the window: step through the stored pixels in the order the upright ones run */
        upright = malloc((size_t)ww * wh * 3);
        if (!upright) {
            rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
            goto done;
        }
        ptrdiff_t step_x = ((ptrdiff_t)m.ay * rw + m.ax) * 3, step_y = ((ptrdiff_t)m.by * rw + m.bx) * 3;
        const unsigned char *row = px + ((size_t)(ay - top) * rw + (size_t)(ax - left)) * 3;
        unsigned char *d = upright;
        for (int y = 0; y < wh; y++, row += step_y) {
            const unsigned char *s = row;
            for (int x = 0; x < ww; x++, s += step_x, d += 3) {
                d[0] = s[0];
                d[1] = s[1];
                d[2] = s[2];
            }
        }
        win = upright;
    }
    rc = resample_rgb(win, ww, wx0, wy0, &tx, &ty, p->mean, p->std, out, err, errlen);
done:
    free(upright);
    free(px);
    resample_axis_free(&tx);
    resample_axis_free(&ty);
    return rc;
}
