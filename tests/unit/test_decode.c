/* Unit tests for decoding and preprocessing: every kind of bad input gets its precise status, and
 * every odd-but-valid image (CMYK, 16-bit, grey, palette + transparency, animation, EXIF rotation)
 * comes out as the right sRGB pixels. Preprocessing uses mean 0 / std 1 so outputs are pixels. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <jpeglib.h>
#include <lcms2.h>
#include <vips/vips.h>
#include <vips/vector.h>

#include "embed/decode.h"
#include "embed/icc.h"
#include "test_util.h"
#include "util/status.h"

#define S 64

static decode_params raw_params(void) {
    decode_params p = {.size = S, .crop_fraction = 0.875, .mean = {0, 0, 0}, .std = {1, 1, 1}};
    return p;
}

static int decode_file(const char *dir, const char *name, float *out, decode_info *info, char *err) {
    size_t len;
    unsigned char *buf = test_read(dir, name, &len);
    decode_params p = raw_params();
    int rc = decode_preprocess(buf, len, &p, out, info, err, 256);
    free(buf);
    return rc;
}

static const float *px(const float *img, int x, int y) { return img + ((size_t)y * S + x) * 3; }

/* The same decode through libvips' own thumbnail path (no DCT shrink, no fast path). */
static int decode_via_thumbnail(const void *buf, size_t len, const decode_params *p, float *out, decode_info *info,
                                char *err, size_t errlen) {
    setenv("IMGSEARCH_JPEG_SHRINK", "vips", 1);
    int rc = decode_preprocess(buf, len, p, out, info, err, errlen);
    unsetenv("IMGSEARCH_JPEG_SHRINK");
    return rc;
}

static double mean_abs_diff(const float *a, const float *b, size_t n) {
    double diff = 0;
    for (size_t i = 0; i < n; i++) diff += fabsf(a[i] - b[i]);
    return diff / (double)n;
}

static void assert_rgb(const float *p, float r, float g, float b, float tol) {
    if (fabsf(p[0] - r) > tol || fabsf(p[1] - g) > tol || fabsf(p[2] - b) > tol)
        fail_msg("pixel (%.1f, %.1f, %.1f), expected (%.1f, %.1f, %.1f)", p[0], p[1], p[2], r, g, b);
}

static void test_bad_inputs(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    assert_int_equal(decode_file(NULL, "empty.jpg", out, &info, err), IS_ERR_EMPTY_IMAGE);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(decode_file(NULL, "text.jpg", out, &info, err), IS_ERR_UNSUPPORTED_IMAGE);
    assert_non_null(strstr(err, "not a supported image format"));
    assert_int_equal(decode_file(NULL, "truncated.jpg", out, &info, err), IS_ERR_CORRUPT_IMAGE);
    assert_non_null(strstr(err, "the JPEG data is truncated or damaged"));
    assert_int_equal(decode_file(NULL, "truncated.png", out, &info, err), IS_ERR_CORRUPT_IMAGE);
    assert_non_null(strstr(err, "the PNG data is truncated or damaged"));
    /* formats libvips could open but that users may not send: refused before any loader runs */
    assert_int_equal(decode_file(NULL, "drawing.svg", out, &info, err), IS_ERR_UNSUPPORTED_IMAGE);
    assert_null(strstr(err, "blocked"));
    assert_int_equal(decode_file(SKIMAGE_DATA, "truncated.jpg", out, &info, err), IS_ERR_CORRUPT_IMAGE);
    assert_int_equal(decode_file(NULL, "garbage.png", out, &info, err), IS_ERR_CORRUPT_IMAGE);
    assert_int_equal(decode_file(NULL, "bomb.png", out, &info, err), IS_ERR_IMAGE_TOO_LARGE);
    assert_non_null(strstr(err, "30000 x 30000"));
    decode_params p = raw_params();
    assert_int_equal(decode_preprocess(NULL, 0, &p, out, &info, err, sizeof err), IS_ERR_EMPTY_IMAGE);
    /* a lower configured limit applies to ordinary photos too */
    size_t len;
    unsigned char *cat = test_read(NULL, "cat.png", &len);
    p.max_pixels = 1000;
    assert_int_equal(decode_preprocess(cat, len, &p, out, &info, err, sizeof err), IS_ERR_IMAGE_TOO_LARGE);
    /* a JPEG cut at every 10% of its length is always refused, never half-decoded */
    unsigned char *jpg = test_read(NULL, "cat_q90.jpg", &len);
    p.max_pixels = 0;
    for (int tenth = 1; tenth < 10; tenth++) {
        int rc = decode_preprocess(jpg, len * (size_t)tenth / 10, &p, out, &info, err, sizeof err);
        assert_int_equal(rc, IS_ERR_CORRUPT_IMAGE);
    }
    free(jpg);
    free(cat);
}

static void test_formats_decode(void **state) {
    (void)state;
    static float out[S * S * 3];
    static const char *files[] = {"cat.png", "cat_q90.jpg", "cat.webp", "cat.tiff", "cat_cmyk.jpg",
                                  "cat_rgb16.png", "cat_grey.png", "cat_grey.jpg"};
    char err[256];
    static const char *formats[] = {"png", "jpeg", "webp", "tiff", "jpeg", "png", "png", "jpeg"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        decode_info info;
        int rc = decode_file(NULL, files[i], out, &info, err);
        if (rc) fail_msg("%s: %s", files[i], err);
        assert_int_equal(info.width, 451);
        assert_int_equal(info.height, 300);
        assert_string_equal(info.format, formats[i]);
    }
}

static void test_16bit_equals_8bit(void **state) {
    (void)state;
    static float a[S * S * 3], b[S * S * 3];
    char err[256];
    assert_int_equal(decode_file(NULL, "cat.png", a, NULL, err), IS_OK);
    assert_int_equal(decode_file(NULL, "cat_rgb16.png", b, NULL, err), IS_OK);
    for (size_t i = 0; i < S * S * 3; i++) assert_true(fabsf(a[i] - b[i]) <= 1.0f);
}

static void test_grey_is_replicated(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    assert_int_equal(decode_file(NULL, "cat_grey.png", out, NULL, err), IS_OK);
    for (size_t i = 0; i < S * S; i++) {
        assert_true(out[i * 3] == out[i * 3 + 1]);
        assert_true(out[i * 3] == out[i * 3 + 2]);
    }
}

static void test_alpha_flattened_on_white(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    /* palette PNG, index 0 transparent (green in the palette), red disc in the middle */
    assert_int_equal(decode_file(NULL, "palette_alpha.png", out, &info, err), IS_OK);
    assert_rgb(px(out, 0, 0), 255, 255, 255, 2);
    assert_rgb(px(out, S / 2, S / 2), 255, 0, 0, 2);
    /* RGBA: transparent green background, opaque blue square */
    assert_int_equal(decode_file(NULL, "rgba.png", out, &info, err), IS_OK);
    assert_true(info.has_alpha);
    assert_rgb(px(out, 1, 1), 255, 255, 255, 2);
    assert_rgb(px(out, S / 2, S / 2), 0, 0, 255, 2);
}

static void test_animated_gif_first_frame(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    assert_int_equal(decode_file(NULL, "animated.gif", out, &info, err), IS_OK);
    assert_string_equal(info.format, "gif");
    assert_int_equal(info.pages, 3);
    assert_rgb(px(out, S / 2, S / 2), 255, 0, 0, 3);
}

static void test_exif_orientation_applied(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    assert_int_equal(decode_file(NULL, "exif_rotate90.jpg", out, &info, err), IS_OK);
    assert_int_equal(info.width, 200);
    assert_int_equal(info.height, 400);
    /* shown upright: red on top, blue below (JPEG colours are approximate) */
    assert_rgb(px(out, S / 2, 2), 254, 0, 0, 12);
    assert_rgb(px(out, S / 2, S - 3), 0, 0, 254, 12);
}

/* Large JPEGs take libjpeg's DCT shrink (decode.c): oriented like any other, and the picture is
 * the one libvips' own thumbnail path gives, within a few levels. */
static void test_large_jpeg_fast_shrink(void **state) {
    (void)state;
    static float fast[S * S * 3];
    char err[256];
    decode_info info;
    assert_int_equal(decode_file(NULL, "exif_rotate90_large.jpg", fast, &info, err), IS_OK);
    assert_int_equal(info.width, 2000);
    assert_int_equal(info.height, 4000);
    assert_rgb(px(fast, S / 2, 2), 254, 0, 0, 12); /* upright: red on top */
    assert_rgb(px(fast, S / 2, S - 3), 0, 0, 254, 12);
    /* at the model's own size (224, box 256) a 3000-pixel short side shrinks by 8 in libjpeg,
     * where libvips' thumbnail alone stops at 4 */
    enum { M = 224 };
    static float a[M * M * 3], b[M * M * 3];
    decode_params p = raw_params();
    p.size = M;
    const char *photos[] = {"cat_12mp.jpg", "exif_rotate90_large.jpg"};
    for (int k = 0; k < 2; k++) {
        size_t len;
        unsigned char *buf = test_read(NULL, photos[k], &len);
        assert_int_equal(decode_preprocess(buf, len, &p, a, &info, err, sizeof err), IS_OK);
        assert_int_equal(decode_via_thumbnail(buf, len, &p, b, &info, err, sizeof err), IS_OK);
        free(buf);
        double diff = mean_abs_diff(a, b, (size_t)M * M * 3);
        print_message("%s: mean |DCT shrink - libvips' thumbnail| = %.2f levels\n", photos[k], diff);
        assert_true(diff > 0 && diff < 3.0); /* > 0: the two paths really differ here */
    }
}

/* W × H RGB (malloc'd): red rising across, green rising down, blue 90. */
static unsigned char *gradient_rgb(int W, int H) {
    unsigned char *rgb = malloc((size_t)W * H * 3);
    assert_non_null(rgb);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            unsigned char *q = rgb + ((size_t)y * W + x) * 3;
            q[0] = (unsigned char)(x * 255 / (W - 1));
            q[1] = (unsigned char)(y * 255 / (H - 1));
            q[2] = 90;
        }
    return rgb;
}

/* The large-JPEG fast path (decode_jpeg.c) applies each of the 8 EXIF orientations: a picture
 * stored turned or mirrored, tagged so, gives the upright one's tensor. The size (1003 × 757) is
 * not a multiple of libjpeg's shrink (8 here), which is where a misplaced window would show. */
static VipsImage *stored_for(VipsImage *u, int o) {
    VipsImage *a = NULL, *b = NULL;
    switch (o) {
    case 2: vips_flip(u, &b, VIPS_DIRECTION_HORIZONTAL, NULL); break;
    case 3: vips_rot(u, &b, VIPS_ANGLE_D180, NULL); break;
    case 4: vips_flip(u, &b, VIPS_DIRECTION_VERTICAL, NULL); break;
    case 5: /* transpose */
        vips_rot(u, &a, VIPS_ANGLE_D90, NULL);
        vips_flip(a, &b, VIPS_DIRECTION_HORIZONTAL, NULL);
        break;
    case 6: vips_rot(u, &b, VIPS_ANGLE_D270, NULL); break;
    case 7: /* transverse */
        vips_rot(u, &a, VIPS_ANGLE_D270, NULL);
        vips_flip(a, &b, VIPS_DIRECTION_HORIZONTAL, NULL);
        break;
    case 8: vips_rot(u, &b, VIPS_ANGLE_D90, NULL); break;
    default: vips_copy(u, &b, NULL);
    }
    if (a) g_object_unref(a);
    assert_non_null(b);
    VipsImage *tagged = NULL;
    assert_int_equal(vips_copy(b, &tagged, NULL), 0);
    g_object_unref(b);
    vips_image_set_int(tagged, VIPS_META_ORIENTATION, o);
    return tagged;
}

static void test_large_jpeg_every_orientation(void **state) {
    (void)state;
    enum { W = 1003, H = 757 };
    unsigned char *rgb = gradient_rgb(W, H);
    for (int y = 0; y < H; y++) /* and a blue disc off centre */
        for (int x = 0; x < W; x++)
            rgb[((size_t)y * W + x) * 3 + 2] = (x - 600) * (x - 600) + (y - 250) * (y - 250) < 120 * 120 ? 255 : 0;
    VipsImage *upright = vips_image_new_from_memory_copy(rgb, (size_t)W * H * 3, W, H, 3, VIPS_FORMAT_UCHAR);
    free(rgb);
    assert_non_null(upright);
    size_t ulen;
    void *upx = vips_image_write_to_memory(upright, &ulen);
    static float ref[S * S * 3], got[S * S * 3];
    decode_params p = raw_params();
    char err[256];
    decode_info info;
    for (int o = 1; o <= 8; o++) {
        VipsImage *stored = stored_for(upright, o), *back = NULL;
        /* the test's own transform is right: libvips' autorot turns it back to the picture */
        assert_int_equal(vips_autorot(stored, &back, NULL), 0);
        size_t blen;
        void *bpx = vips_image_write_to_memory(back, &blen);
        assert_true(blen == ulen && !memcmp(bpx, upx, ulen));
        g_free(bpx);
        g_object_unref(back);
        void *jpg = NULL;
        size_t len = 0;
        assert_int_equal(vips_jpegsave_buffer(stored, &jpg, &len, "Q", 95, NULL), 0);
        g_object_unref(stored);
        assert_int_equal(decode_preprocess(jpg, len, &p, got, &info, err, sizeof err), IS_OK);
        assert_int_equal(info.width, W); /* upright, whatever the tag */
        assert_int_equal(info.height, H);
        /* and the fast path gives libvips' thumbnail path's picture */
        if (o == 1) assert_int_equal(decode_via_thumbnail(jpg, len, &p, ref, &info, err, sizeof err), IS_OK);
        g_free(jpg);
        double diff = mean_abs_diff(got, ref, (size_t)S * S * 3);
        print_message("orientation %d: mean |fast path - upright thumbnail| = %.2f levels\n", o, diff);
        assert_true(diff < 2.0); /* a turn or mirror gone wrong is tens of levels */
    }
    g_free(upx);
    g_object_unref(upright);
}

/* A smooth W × H picture (red across, green down) as a JPEG written by libjpeg: with a scan script
 * (progressive) when scans is given, with an ICC profile when icc is. */
static unsigned char *gradient_jpeg(int W, int H, int quality, const jpeg_scan_info *scans, int nscans,
                                    const unsigned char *icc, unsigned icc_len, unsigned long *len) {
    unsigned char *rgb = gradient_rgb(W, H), *out = NULL;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    *len = 0;
    jpeg_mem_dest(&c, &out, len);
    c.image_width = (JDIMENSION)W;
    c.image_height = (JDIMENSION)H;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (scans) {
        c.scan_info = scans;
        c.num_scans = nscans;
    }
    jpeg_start_compress(&c, TRUE);
    if (icc) jpeg_write_icc_profile(&c, icc, icc_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)rgb + (size_t)c.next_scanline * W * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(rgb);
    return out;
}

/* A progressive JPEG of `nscans` scans (the script below), W × H, from libjpeg. With
 * refine, every AC coefficient of every component gets a first scan and a refinement scan. */
static unsigned char *progressive_jpeg(int W, int H, int refine, int *nscans, unsigned long *len) {
    static jpeg_scan_info scans[1 + 3 * 63 * 2];
    int n = 0;
    scans[n++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 0, 0};
    for (int c = 0; c < 3; c++)
        for (int k = 1; k < 64; k++) {
            scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 0, refine ? 1 : 0};
            if (refine) scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 1, 0};
        }
    *nscans = n;
    return gradient_jpeg(W, H, 90, scans, n, NULL, 0, len);
}

/* The large-JPEG fast path refuses a progressive JPEG of more scans than DECODE_JPEG_MAX_SCANS (a
 * hostile one of thousands costs seconds of CPU), and decodes one under the limit as the thumbnail
 * path does. */
static void test_large_jpeg_scan_limit(void **state) {
    (void)state;
    static float a[S * S * 3], b[S * S * 3];
    decode_params p = raw_params();
    decode_info info;
    char err[256];
    for (int refine = 0; refine < 2; refine++) {
        int nscans;
        unsigned long len;
        unsigned char *jpg = progressive_jpeg(1200, 800, refine, &nscans, &len);
        int rc = decode_preprocess(jpg, len, &p, a, &info, err, sizeof err);
        print_message("%d scans: %s\n", nscans, rc ? err : "decoded");
        if (refine) {
            assert_true(nscans > 256);
            assert_int_equal(rc, IS_ERR_CORRUPT_IMAGE);
            assert_non_null(strstr(err, "a progressive JPEG of more than 256 scans"));
        } else {
            assert_true(nscans > 100 && nscans <= 256);
            assert_int_equal(rc, IS_OK);
            assert_int_equal(decode_via_thumbnail(jpg, len, &p, b, &info, err, sizeof err), IS_OK);
            double diff = mean_abs_diff(a, b, (size_t)S * S * 3);
            print_message("mean |fast path - thumbnail| = %.2f levels\n", diff);
            assert_true(diff < 2.0);
        }
        free(jpg);
    }
}

/* Small images land where the geometry says, whichever path decodes them: a JPEG too small for DCT
 * scaling takes decode_jpeg.c, the same picture as PNG libvips' thumbnail and then the same
 * resample (resample.h). Waves of 40 (across) and 50 (down) pixels, 12 to 19 levels per pixel at
 * their steepest, so a picture half a pixel off shows as 5 levels and more (libvips' vips_resize,
 * used before for small images, gave 3.5). One picture is enlarged (short side 200 to the box of
 * 256), one reduced (300 to 256). */
static double waves_error(const float *out, int W, int H, int M, int BOX) {
    /* output pixel o's centre is (off + o + 0.5) · (source / scaled) in the source, whose pixel i
     * is centred on i + 0.5 */
    int tw = (int)lround((double)W * BOX / H), offx = (tw - BOX) / 2 + (BOX - M) / 2, offy = (BOX - M) / 2;
    double sx = (double)W / tw, sy = (double)H / BOX, diff = 0;
    for (int oy = 0; oy < M; oy++)
        for (int ox = 0; ox < M; ox++) {
            double x = (offx + ox + 0.5) * sx - 0.5, y = (offy + oy + 0.5) * sy - 0.5;
            const float *o = out + ((size_t)oy * M + ox) * 3;
            diff += fabs(o[0] - (128 + 100 * sin(2 * M_PI * x / 40)));
            diff += fabs(o[1] - (128 + 100 * sin(2 * M_PI * y / 50)));
        }
    return diff / (2.0 * M * M);
}

static void test_small_image_geometry(void **state) {
    (void)state;
    enum { M = 224, BOX = 256 };
    static float out[M * M * 3];
    decode_params p = raw_params();
    p.size = M;
    const int sizes[2][2] = {{300, 200}, {420, 300}};
    for (int k = 0; k < 2; k++) {
        int W = sizes[k][0], H = sizes[k][1];
        for (int png = 0; png < 2; png++) {
            char name[64];
            snprintf(name, sizeof name, "waves_%dx%d.%s", W, H, png ? "png" : "jpg"); /* make_images.py */
            size_t len;
            unsigned char *file = test_read(NULL, name, &len);
            decode_info info;
            char err[256];
            assert_int_equal(decode_preprocess(file, len, &p, out, &info, err, sizeof err), IS_OK);
            free(file);
            double diff = waves_error(out, W, H, M, BOX);
            print_message("%s: mean |decoded - the waves where the geometry puts them| = %.2f levels\n", name, diff);
            assert_true(diff < 1.5);
        }
    }
}

/* icc_is_srgb: sRGB profiles as lcms2 makes them (v4) and as a packaged photo embeds one (the
 * v2 "sRGB IEC61966-2.1" editors write) pass; other primaries, another curve, a LUT profile,
 * damaged and cut-off bytes do not. */
static unsigned char *profile_bytes(cmsHPROFILE p, cmsUInt32Number *len) {
    assert_non_null(p);
    assert_true(cmsSaveProfileToMem(p, NULL, len));
    unsigned char *b = malloc(*len);
    assert_true(cmsSaveProfileToMem(p, b, len));
    cmsCloseProfile(p);
    return b;
}

static cmsHPROFILE rgb_profile(double gamma, int p3) {
    cmsCIExyY d65 = {0.3127, 0.3290, 1.0};
    cmsCIExyYTRIPLE srgb = {{0.64, 0.33, 1}, {0.30, 0.60, 1}, {0.15, 0.06, 1}},
                    dp3 = {{0.680, 0.320, 1}, {0.265, 0.690, 1}, {0.150, 0.060, 1}};
    cmsToneCurve *g = cmsBuildGamma(NULL, gamma), *curves[3] = {g, g, g};
    cmsHPROFILE p = cmsCreateRGBProfile(&d65, p3 ? &dp3 : &srgb, curves);
    cmsFreeToneCurve(g);
    return p;
}

static void test_icc_is_srgb(void **state) {
    (void)state;
    cmsUInt32Number n;
    unsigned char *b = profile_bytes(cmsCreate_sRGBProfile(), &n);
    assert_true(icc_is_srgb(b, n));
    for (cmsUInt32Number cut = 0; cut < n; cut += n / 7) assert_false(icc_is_srgb(b, cut)); /* cut off */
    for (cmsUInt32Number i = 0; i < n; i += 3) { /* a flipped byte: either answer, never a crash */
        b[i] ^= 0x5a;
        (void)icc_is_srgb(b, n);
        b[i] ^= 0x5a;
    }
    free(b);
    assert_false(icc_is_srgb(NULL, 0));
    /* what a photo embeds: dog.jpg carries Photoshop's sRGB IEC61966-2.1 */
    size_t len;
    unsigned char *jpg = test_read(DARKNET_DATA, "dog.jpg", &len);
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, jpg, (unsigned long)len);
    jpeg_save_markers(&c, JPEG_APP0 + 2, 0xFFFF);
    jpeg_read_header(&c, TRUE);
    JOCTET *icc = NULL;
    unsigned int icc_len = 0;
    assert_true(jpeg_read_icc_profile(&c, &icc, &icc_len));
    jpeg_destroy_decompress(&c);
    free(jpg);
    assert_true(icc_is_srgb(icc, icc_len));
    free(icc);
    /* sRGB's primaries with a 2.2 gamma, Display P3 with sRGB-like gamma, a grey profile */
    b = profile_bytes(rgb_profile(2.2, 0), &n);
    assert_false(icc_is_srgb(b, n));
    free(b);
    b = profile_bytes(rgb_profile(2.4, 1), &n);
    assert_false(icc_is_srgb(b, n));
    free(b);
    cmsToneCurve *g = cmsBuildGamma(NULL, 2.2);
    b = profile_bytes(cmsCreateGrayProfile(cmsD50_xyY(), g), &n);
    cmsFreeToneCurve(g);
    assert_false(icc_is_srgb(b, n));
    free(b);
    b = profile_bytes(cmsCreateLab4Profile(NULL), &n);
    assert_false(icc_is_srgb(b, n));
    free(b);
}

/* A large JPEG (1200 × 800: DCT scaling) written by libjpeg, with an ICC profile or none. */
static unsigned char *jpeg_with_profile(const unsigned char *icc, unsigned icc_len, unsigned long *len) {
    return gradient_jpeg(1200, 800, 95, NULL, 0, icc, icc_len, len);
}

/* An embedded sRGB profile keeps a JPEG on decode_jpeg.c's path (the same pixels as with no
 * profile, bit for bit); a Display P3 one sends it through libvips' colour management, which
 * moves the colours (P3's red is redder than sRGB can show, so it comes out clipped). */
static void test_jpeg_profiles(void **state) {
    (void)state;
    static float none[S * S * 3], got[S * S * 3];
    decode_params p = raw_params();
    decode_info info;
    char err[256];
    unsigned long len;
    unsigned char *jpg = jpeg_with_profile(NULL, 0, &len);
    assert_int_equal(decode_preprocess(jpg, len, &p, none, &info, err, sizeof err), IS_OK);
    free(jpg);
    cmsUInt32Number n;
    unsigned char *srgb = profile_bytes(cmsCreate_sRGBProfile(), &n);
    jpg = jpeg_with_profile(srgb, n, &len);
    free(srgb);
    assert_int_equal(decode_preprocess(jpg, len, &p, got, &info, err, sizeof err), IS_OK);
    free(jpg);
    assert_memory_equal(got, none, sizeof none);
    unsigned char *p3 = profile_bytes(rgb_profile(2.4, 1), &n);
    jpg = jpeg_with_profile(p3, n, &len);
    free(p3);
    assert_int_equal(decode_preprocess(jpg, len, &p, got, &info, err, sizeof err), IS_OK);
    free(jpg);
    double diff = mean_abs_diff(got, none, (size_t)S * S * 3);
    print_message("Display P3 profile: mean |converted - as if sRGB| = %.1f levels\n", diff);
    assert_true(diff > 3.0);
}

static void test_normalisation_and_tiny(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    size_t len;
    unsigned char *buf = test_read(NULL, "grey127.png", &len);
    decode_params p = {.size = S, .crop_fraction = 0.875, .mean = {127, 127, 127}, .std = {128, 128, 128}};
    assert_int_equal(decode_preprocess(buf, len, &p, out, NULL, err, sizeof err), IS_OK);
    for (size_t i = 0; i < S * S * 3; i++) assert_true(fabsf(out[i]) < 1e-6f);
    free(buf);
    /* a single pixel is upscaled to the whole input */
    assert_int_equal(decode_file(NULL, "one_pixel.png", out, NULL, err), IS_OK);
    assert_rgb(px(out, 0, 0), 200, 100, 50, 1);
    assert_rgb(px(out, S - 1, S - 1), 200, 100, 50, 1);
}

static void test_large_jpeg_probe(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    assert_int_equal(decode_file(NULL, "cat_12mp.jpg", out, &info, err), IS_OK);
    assert_int_equal(info.width, 4000);
    assert_int_equal(info.height, 3000);
}

/* A 65535 x 1 image is 65 k pixels: its cost must be that of 65 k pixels, whatever the shape (the
 * model's input used to be made by scaling the whole strip until its short side was 292 pixels). */
static void test_thin_images(void **state) {
    (void)state;
    static float out[S * S * 3];
    char err[256];
    decode_info info;
    static const struct {
        const char *name;
        int w, h;
        float r, g, b, tol;
    } thin[] = {{"thin_wide.png", 65535, 1, 200, 30, 30, 1},
                {"thin_tall.png", 1, 65535, 30, 200, 30, 1},
                {"thin_wide.jpg", 65500, 1, 30, 30, 200, 8}};
    for (size_t i = 0; i < sizeof thin / sizeof *thin; i++) {
        assert_int_equal(decode_file(NULL, thin[i].name, out, &info, err), IS_OK);
        assert_int_equal(info.width, thin[i].w);
        assert_int_equal(info.height, thin[i].h);
        assert_rgb(px(out, 0, 0), thin[i].r, thin[i].g, thin[i].b, thin[i].tol);
        assert_rgb(px(out, S / 2, S / 2), thin[i].r, thin[i].g, thin[i].b, thin[i].tol);
        assert_rgb(px(out, S - 1, S - 1), thin[i].r, thin[i].g, thin[i].b, thin[i].tol);
    }
}

/* libvips has one error buffer per process: messages must come from each call's own failure, also
 * when many threads fail at once with different inputs. */
typedef struct {
    const char *file, *expect;
    int status, failures;
} error_job;

static void *decode_bad_repeatedly(void *arg) {
    error_job *job = arg;
    size_t len;
    unsigned char *buf = test_read(NULL, job->file, &len);
    static __thread float out[S * S * 3];
    decode_params p = raw_params();
    for (int i = 0; i < 60; i++) {
        char err[256];
        int rc = decode_preprocess(buf, len, &p, out, NULL, err, sizeof err);
        if (rc != job->status || !strstr(err, job->expect)) job->failures++;
    }
    free(buf);
    return NULL;
}

/* liborc's code area is not safe when several threads build resizes at once (a crash about 1 run in
 * 60 of the test below): decode_global_init turns libvips' vector kernels off for good. */
static void test_vector_kernels_are_off(void **state) {
    (void)state;
    assert_false(vips_vector_isenabled());
}

static void test_errors_belong_to_their_call(void **state) {
    (void)state;
    error_job jobs[] = {
        {"truncated.jpg", "the JPEG data is truncated or damaged", IS_ERR_CORRUPT_IMAGE, 0},
        {"truncated.png", "the PNG data is truncated or damaged", IS_ERR_CORRUPT_IMAGE, 0},
        {"garbage.png", "the PNG data is truncated or damaged", IS_ERR_CORRUPT_IMAGE, 0},
        {"text.jpg", "not a supported image format", IS_ERR_UNSUPPORTED_IMAGE, 0},
        {"drawing.svg", "not a supported image format", IS_ERR_UNSUPPORTED_IMAGE, 0},
        {"cat_q90.jpg", "", IS_OK, 0},
    };
    enum { N = sizeof jobs / sizeof *jobs };
    pthread_t t[N];
    for (int i = 0; i < N; i++) assert_int_equal(pthread_create(&t[i], NULL, decode_bad_repeatedly, &jobs[i]), 0);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++)
        if (jobs[i].failures) fail_msg("%s: %d answers that were not its own", jobs[i].file, jobs[i].failures);
}

int main(void) {
    char err[256];
    if (decode_global_init("test_decode", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_formats_decode),
        cmocka_unit_test(test_16bit_equals_8bit),
        cmocka_unit_test(test_grey_is_replicated),
        cmocka_unit_test(test_alpha_flattened_on_white),
        cmocka_unit_test(test_animated_gif_first_frame),
        cmocka_unit_test(test_exif_orientation_applied),
        cmocka_unit_test(test_large_jpeg_fast_shrink),
        cmocka_unit_test(test_large_jpeg_every_orientation),
        cmocka_unit_test(test_large_jpeg_scan_limit),
        cmocka_unit_test(test_small_image_geometry),
        cmocka_unit_test(test_icc_is_srgb),
        cmocka_unit_test(test_jpeg_profiles),
        cmocka_unit_test(test_normalisation_and_tiny),
        cmocka_unit_test(test_large_jpeg_probe),
        cmocka_unit_test(test_thin_images),
        cmocka_unit_test(test_vector_kernels_are_off),
        cmocka_unit_test(test_errors_belong_to_their_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
