#include "embed/decode.h"

#include "embed/decode_internal.h"
#include "embed/icc.h"
#include "embed/resample.h"

#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>
#include <vips/vector.h>

#include "util/status.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_init_rc = -1;
static const char *vips_argv0 = "imgsearch";

/* libvips and its loaders (libpng, libjpeg) report damaged input as GLib warnings on stderr.
 * Every failure that matters comes back to us as an error, so the warnings are noise in a
 * server log: keep them only when IMGSEARCH_DEBUG is set. */
static void vips_log_filter(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
    (void)data;
    if (getenv("IMGSEARCH_DEBUG")) g_log_default_handler(domain, level, msg, NULL);
}

static void vips_init_once(void) {
    vips_init_rc = VIPS_INIT(vips_argv0);
    if (vips_init_rc) return;
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      vips_log_filter, NULL);
    /* The operation cache would keep decoded images of earlier requests alive: off. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    /* Parallelism comes from our own workers; one libvips thread per call keeps memory bounded. */
    vips_concurrency_set(1);
    /* Loaders libvips marks as not fuzzed (e.g. via ImageMagick, matio) never see user input. */
    vips_block_untrusted_set(TRUE);
    /* liborc (0.4.33) compiles libvips' vector kernels into a code area it shares between threads
     * without a lock: resizes built at once on several threads crashed in orc_code_allocate_codemem
     * (seen about 1 run in 60 of test_decode's concurrent test). The C paths cost ~5 % on a 12 MP
     * JPEG (bench_embed decode) and never crash. */
    vips_vector_set_enabled(FALSE);
}

int decode_global_init(const char *argv0, char *err, size_t errlen) {
    if (argv0) vips_argv0 = argv0;
    pthread_once(&vips_once, vips_init_once);
    if (vips_init_rc)
        return is_fail(err, errlen, IS_ERR_INTERNAL, "libvips failed to start: %s",
                       vips_error_buffer());
    return IS_OK;
}

/* libvips keeps ONE error buffer for the whole process, shared by every thread: reading it after a
 * failed call can return another request's message (seen: a truncated PNG answered with a JPEG
 * error under concurrent uploads). So an answer never quotes it. The reason a caller gets is built
 * from what this call knows (the stage that failed and the format its header named); libvips' own
 * text, which may name internal loaders or paths, goes to the log when IMGSEARCH_DEBUG is set. */
static pthread_mutex_t vips_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void vips_log_and_clear(void) {
    pthread_mutex_lock(&vips_log_lock);
    const char *msg = vips_error_buffer();
    if (getenv("IMGSEARCH_DEBUG") && msg && *msg) fprintf(stderr, "imgsearch: libvips: %s", msg);
    vips_error_clear();
    pthread_mutex_unlock(&vips_log_lock);
}

/* "the PNG data is truncated or damaged" for the format the header named. */
int decode_vips_fail(char *err, size_t errlen, int status, const char *what, const char *format) {
    vips_log_and_clear();
    char upper[16];
    size_t n = 0;
    for (; format && format[n] && n < sizeof upper - 1; n++)
        upper[n] = (char)(format[n] >= 'a' && format[n] <= 'z' ? format[n] - 32 : format[n]);
    upper[n] = 0;
    if (status == IS_ERR_CORRUPT_IMAGE)
        return is_fail(err, errlen, status, "%s: the %s%sdata is truncated or damaged", what, upper, n ? " " : "");
    return is_fail(err, errlen, status, "%s", what);
}

static void loader_family(const char *loader, char *out, size_t outlen) {
    /* "jpegload_buffer" → "jpeg", "heifload_buffer" → "heif" */
    size_t n = strcspn(loader, "_");
    if (n >= 4 && !strncmp(loader + n - 4, "load", 4)) n -= 4;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, loader, n);
    out[n] = 0;
}

/* The formats we take from users: the loaders libvips fuzzes and that we can serve back with a
 * known type. Anything else it could open (SVG, PDF, ImageMagick, matrix or CSV text, its own
 * .v format ...) is refused as unsupported before any loader runs. */
static bool accepted_family(const char *family) {
    static const char *ok[] = {"jpeg", "png", "webp", "gif", "tiff", "heif"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(family, ok[i])) return true;
    return false;
}

int decode_probe(const void *buf, size_t len, uint64_t max_pixels, decode_info *info,
                 char *err, size_t errlen) {
    int rc = decode_global_init(NULL, err, errlen);
    if (rc) return rc;
    if (!max_pixels) max_pixels = DECODE_DEFAULT_MAX_PIXELS;
    memset(info, 0, sizeof *info);
    if (!buf || len == 0) return is_fail(err, errlen, IS_ERR_EMPTY_IMAGE, "the image is empty (0 bytes)");

    const char *loader = vips_foreign_find_load_buffer(buf, len);
    /* libvips answers with a class name ("VipsForeignLoadPngBuffer"); its nickname is the
     * operation name ("pngload_buffer"), from which we keep the family. */
    const char *nick = loader ? vips_nickname_find(g_type_from_name(loader)) : NULL;
    if (loader) loader_family(nick ? nick : loader, info->format, sizeof info->format);
    if (!loader || !accepted_family(info->format)) {
        vips_log_and_clear();
        info->format[0] = 0;
        return is_fail(err, errlen, IS_ERR_UNSUPPORTED_IMAGE,
                       "not a supported image format (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF)");
    }

    /* Header only: pixels are decoded later, on demand. */
    VipsImage *img = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!img) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot read the image header", info->format);
    int w = vips_image_get_width(img), h = vips_image_get_height(img);
    int orientation = 1, pages = 1;
    if (vips_image_get_typeof(img, VIPS_META_ORIENTATION))
        vips_image_get_int(img, VIPS_META_ORIENTATION, &orientation);
    if (vips_image_get_typeof(img, VIPS_META_N_PAGES)) vips_image_get_int(img, VIPS_META_N_PAGES, &pages);
    info->has_alpha = vips_image_hasalpha(img);
    g_object_unref(img);

    if (w <= 0 || h <= 0) return is_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "the image has no pixels");
    if ((uint64_t)w * (uint64_t)h > max_pixels)
        return is_fail(err, errlen, IS_ERR_IMAGE_TOO_LARGE,
                       "%d x %d is %.1f megapixels, over the limit of %.1f megapixels", w, h,
                       (double)w * h / 1e6, (double)max_pixels / 1e6);
    /* Orientations 5..8 turn the image by 90 degrees. */
    info->width = orientation >= 5 && orientation <= 8 ? h : w;
    info->height = orientation >= 5 && orientation <= 8 ? w : h;
    info->pages = pages > 0 ? pages : 1;
    info->orientation = orientation >= 1 && orientation <= 8 ? orientation : 1;
    return IS_OK;
}

/* An RGB image with an embedded ICC profile other than sRGB's (Adobe RGB, a phone's Display P3)
 * is converted to sRGB with it: libvips' thumbnail leaves the pixels in the profile's space, and
 * the model was trained on sRGB. A profile lcms cannot use leaves the pixels as they are (what a
 * browser shows). CMYK and grey are to_srgb8's. Replaces *img when it converts. */
static void manage_colour(VipsImage **img) {
    const void *icc = NULL;
    size_t icc_len = 0;
    if (vips_image_get_interpretation(*img) != VIPS_INTERPRETATION_sRGB || vips_image_get_bands(*img) < 3 ||
        !vips_image_get_typeof(*img, VIPS_META_ICC_NAME) ||
        vips_image_get_blob(*img, VIPS_META_ICC_NAME, &icc, &icc_len) || icc_is_srgb(icc, icc_len))
        return;
    VipsImage *managed = NULL;
    if (vips_icc_transform(*img, &managed, "srgb", "embedded", TRUE, "intent", VIPS_INTENT_RELATIVE, NULL)) {
        vips_log_and_clear();
        return;
    }
    g_object_unref(*img);
    *img = managed; /* 8 bits (icc_transform's default depth) */
}

/* Brings any thumbnail libvips produced to 8-bit sRGB: 3 bands, or 4 when it has alpha. Alpha is
 * flattened by flatten_white() over pixels in memory, not by vips_flatten: building a flatten runs
 * a nested pipeline for its background colour, and with libvips 8.14 that nested run was seen to
 * hang intermittently, which would stall a server worker for good. */
static int to_srgb8(VipsImage *in, VipsImage **out) {
    VipsImage *cur = in, *next = NULL;
    g_object_ref(cur);
#define STEP(call)              \
    do {                        \
        int rc_ = (call);       \
        g_object_unref(cur);    \
        if (rc_) return rc_;    \
        cur = next;             \
    } while (0)
    if (vips_image_get_interpretation(cur) != VIPS_INTERPRETATION_sRGB)
        STEP(vips_colourspace(cur, &next, VIPS_INTERPRETATION_sRGB, NULL));
    if (vips_image_get_format(cur) != VIPS_FORMAT_UCHAR) STEP(vips_cast(cur, &next, VIPS_FORMAT_UCHAR, NULL));
    int bands = vips_image_get_bands(cur);
    bool alpha = vips_image_hasalpha(cur);
    if (bands < 3) {
        /* grey (and alpha) that colourspace left alone: replicate grey into R, G, B */
        VipsImage *grey = NULL, *parts[4];
        if (vips_extract_band(cur, &grey, 0, NULL)) {
            g_object_unref(cur);
            return -1;
        }
        VipsImage *a = NULL;
        if (bands == 2 && vips_extract_band(cur, &a, 1, NULL)) {
            g_object_unref(grey);
            g_object_unref(cur);
            return -1;
        }
        parts[0] = parts[1] = parts[2] = grey;
        parts[3] = a;
        int rc = vips_bandjoin(parts, &next, a ? 4 : 3, NULL);
        g_object_unref(grey);
        if (a) g_object_unref(a);
        g_object_unref(cur);
        if (rc) return rc;
        cur = next;
    } else if (bands > 4 || (bands == 4 && !alpha)) {
        STEP(vips_extract_band(cur, &next, 0, "n", alpha ? 4 : 3, NULL));
    }
#undef STEP
    *out = cur;
    return 0;
}

/* RGBA → RGB on a white background, in place (rgb may alias rgba). */
static void flatten_white(const unsigned char *rgba, size_t npix, unsigned char *rgb) {
    for (size_t i = 0; i < npix; i++) {
        unsigned a = rgba[i * 4 + 3];
        for (int c = 0; c < 3; c++)
            rgb[i * 3 + c] = (unsigned char)((rgba[i * 4 + c] * a + 255u * (255u - a) + 127u) / 255u);
    }
}

/* Writes an 8-bit sRGB image (3 or 4 bands) to memory as RGB, alpha flattened on white.
 * Returns a g_malloc'ed buffer of w*h*3 bytes, or NULL. */
static unsigned char *rgb_pixels(VipsImage *img) {
    size_t nbytes = 0;
    int bands = vips_image_get_bands(img);
    unsigned char *px = vips_image_write_to_memory(img, &nbytes);
    size_t npix = (size_t)vips_image_get_width(img) * (size_t)vips_image_get_height(img);
    if (!px || nbytes != npix * (size_t)bands) {
        g_free(px);
        return NULL;
    }
    if (bands == 4) flatten_white(px, npix, px);
    return px;
}

/* The JPEG shrink-on-load factor for a short side of `shortest` to become `box`: the largest of 8,
 * 4, 2 that keeps it at least box, as Pillow's draft() picks, else 1; 0 (no JPEG path) for other
 * formats and multi-page files. libvips' thumbnail alone stops a factor of two short (a 12 MP
 * photo decoded at 1000 × 750, four times the pixels). IMGSEARCH_JPEG_SHRINK=vips sends every
 * JPEG through libvips' thumbnail with its own choice (tests and bench compare the two). */
static int jpeg_shrink_for(const decode_info *info, int shortest, int box) {
    const char *mode = getenv("IMGSEARCH_JPEG_SHRINK");
    if ((mode && !strcmp(mode, "vips")) || strcmp(info->format, "jpeg") || info->pages > 1) return 0;
    for (int f = 8; f > 1; f /= 2)
        if (shortest / f >= box) return f;
    return 1;
}

/* The centre square of the short side of the image, at most box × box, as 8-bit sRGB: box × box
 * when the image is at least that large, else the image's own short side (the caller enlarges it).
 * `loaded` (taken over, may be NULL) is the JPEG already shrunk on load when the JPEG path
 * (decode_jpeg.c) does not take it (CMYK, grey, an ICC profile other than sRGB's): libvips'
 * thumbnail then does the rest, and manage_colour() the colour; otherwise the thumbnail reads buf
 * itself.
 *
 * The cost is bounded by the image's pixel count, whatever its shape: the image is first only ever
 * shrunk (shrink-on-load where the format has it) so that its short side is at most box, then the
 * centre square is cut out, and only that square is scaled up (by the caller) if smaller. Scaling a
 * whole thin image so that its short side becomes box would make a 65535 x 1 PNG of 270 bytes into
 * a 19-million-pixel-wide strip (seen: 12 GB and two minutes per request). For the usual photo the
 * first step already gives a short side of box, and the result is what a crop-mode thumbnail gives. */
static int centre_square(const void *buf, size_t len, const decode_info *info, int box, VipsImage *loaded,
                         VipsImage **out, char *err, size_t errlen) {
    int w = info->width, h = info->height, shortest = w < h ? w : h;
    int target = shortest < box ? shortest : box;
    VipsImage *fit = NULL, *rgb = NULL, *square = NULL;
    /* fit inside target × unbounded (or the other way round): the short side becomes target */
    if (loaded) {
        int bad = vips_thumbnail_image(loaded, &fit, w <= h ? target : VIPS_MAX_COORD, "height",
                                       w <= h ? VIPS_MAX_COORD : target, "size", VIPS_SIZE_DOWN, NULL);
        g_object_unref(loaded);
        if (bad) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", info->format);
    } else if (vips_thumbnail_buffer((void *)buf, len, &fit, w <= h ? target : VIPS_MAX_COORD, "height",
                                     w <= h ? VIPS_MAX_COORD : target, "size", VIPS_SIZE_DOWN, "option_string",
                                     "fail_on=truncated", NULL)) {
        /* fail_on=truncated: a cut-off JPEG or PNG is an error, not a half-grey picture. */
        return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", info->format);
    }
    manage_colour(&fit);
    int rc = to_srgb8(fit, &rgb);
    g_object_unref(fit);
    if (rc) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot convert the image to sRGB", info->format);
    int tw = vips_image_get_width(rgb), th = vips_image_get_height(rgb), side = tw < th ? tw : th;
    rc = vips_extract_area(rgb, &square, (tw - side) / 2, (th - side) / 2, side, side, NULL);
    g_object_unref(rgb);
    if (rc) return decode_vips_fail(err, errlen, IS_ERR_INTERNAL, "cannot crop the image", NULL);
    *out = square;
    return IS_OK;
}

int decode_preprocess(const void *buf, size_t len, const decode_params *p, float *out,
                      decode_info *info, char *err, size_t errlen) {
    decode_info local;
    if (!info) info = &local;
    if (p->size < 8 || p->size > 4096 || !(p->crop_fraction > 0 && p->crop_fraction <= 1))
        return is_fail(err, errlen, IS_ERR_INVALID, "bad preprocessing parameters");
    int rc = decode_probe(buf, len, p->max_pixels, info, err, errlen);
    if (rc) return rc;

    /* TF's EfficientNet evaluation: the centre square of the short side scaled so that
     * crop_fraction of it is `size` pixels, then its centre size × size. */
    int box = (int)lround(p->size / p->crop_fraction);
    if (box < p->size) box = p->size;
    int shortest = info->width < info->height ? info->width : info->height;
    int jpeg_shrink = jpeg_shrink_for(info, shortest, box);
    VipsImage *loaded = NULL, *square = NULL, *crop = NULL;
    if (jpeg_shrink > 0) {
        /* the JPEG path (decode_jpeg.c) takes a plain 3-band JPEG of any size; one with another
         * ICC profile than sRGB's (Adobe RGB, Display P3), CMYK or grey goes to libvips' thumbnail
         * and manage_colour(), loaded here already shrunk when libjpeg can shrink it */
        rc = decode_jpeg_tensor(buf, len, info, jpeg_shrink, box, p, out, err, errlen);
        if (rc != DECODE_JPEG_NOT_PLAIN) return rc;
        /* fail_on=truncated: a cut-off JPEG is an error, not a half-grey picture. */
        if (jpeg_shrink > 1 && vips_jpegload_buffer((void *)buf, len, &loaded, "shrink", jpeg_shrink, "fail_on",
                                                    VIPS_FAIL_ON_TRUNCATED, "access", VIPS_ACCESS_SEQUENTIAL, NULL))
            return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", info->format);
    }
    rc = centre_square(buf, len, info, box, loaded, &square, err, errlen);
    if (rc) return rc;
    int side = vips_image_get_width(square);
    unsigned char *px = NULL;
    if (side >= box) {
        /* the usual photo: the centre size × size of the box × box square, as it is */
        if (vips_extract_area(square, &crop, (side - p->size) / 2, (side - p->size) / 2, p->size, p->size, NULL)) {
            g_object_unref(square);
            return decode_vips_fail(err, errlen, IS_ERR_INTERNAL, "cannot crop the image", NULL);
        }
        g_object_unref(square);
        px = rgb_pixels(crop);
        g_object_unref(crop);
        if (!px)
            return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image pixels", info->format);
        size_t n = (size_t)p->size * (size_t)p->size;
        float scale[3], shift[3]; /* as resample_rgb normalises */
        for (int c = 0; c < 3; c++) {
            scale[c] = 1.0f / p->std[c];
            shift[c] = -p->mean[c] / p->std[c];
        }
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++) out[i * 3 + c] = px[i * 3 + c] * scale[c] + shift[c];
        g_free(px);
        return IS_OK;
    }
    /* a small (or thin) image: its square enlarged to the box, of which the centre size × size, in
     * one resample (resample.h: bicubic) that places it as decode_jpeg.c does; this costs
     * size × size pixels (vips_resize, used before, put the picture about half a pixel off) */
    px = rgb_pixels(square);
    g_object_unref(square);
    if (!px) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image pixels", info->format);
    int off = (box - p->size) / 2;
    resample_taps tx = {0}, ty = {0};
    rc = resample_axis(&tx, p->size, off, (double)side / box, 0, side, err, errlen);
    if (!rc) rc = resample_axis(&ty, p->size, off, (double)side / box, 0, side, err, errlen);
    if (!rc) rc = resample_rgb(px, side, 0, 0, &tx, &ty, p->mean, p->std, out, err, errlen);
    resample_axis_free(&tx);
    resample_axis_free(&ty);
    g_free(px);
    return rc;
}

int decode_thumbnail(const void *buf, size_t len, int size, const char *format, uint64_t max_pixels,
                     unsigned char **out, size_t *out_len, char *err, size_t errlen) {
    *out = NULL;
    *out_len = 0;
    bool webp = !strcmp(format, "webp");
    if (!webp && strcmp(format, "jpeg"))
        return is_fail(err, errlen, IS_ERR_INVALID, "thumbnail format must be jpeg or webp, not '%.20s'", format);
    if (size < 16 || size > 2048)
        return is_fail(err, errlen, IS_ERR_INVALID, "thumbnail size must be between 16 and 2048, not %d", size);
    decode_info info;
    int rc = decode_probe(buf, len, max_pixels, &info, err, errlen);
    if (rc) return rc;
    VipsImage *thumb = NULL, *rgb = NULL;
    /* never enlarge: a small image is its own thumbnail */
    if (vips_thumbnail_buffer((void *)buf, len, &thumb, size, "height", size, "size", VIPS_SIZE_DOWN,
                              "option_string", "fail_on=truncated", NULL))
        return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image", info.format);
    manage_colour(&thumb); /* the thumbnail is written without a profile: its pixels must be sRGB */
    rc = to_srgb8(thumb, &rgb);
    g_object_unref(thumb);
    if (rc) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot convert the image to sRGB", info.format);
    int w = vips_image_get_width(rgb), h = vips_image_get_height(rgb);
    unsigned char *px = rgb_pixels(rgb);
    g_object_unref(rgb);
    if (!px) return decode_vips_fail(err, errlen, IS_ERR_CORRUPT_IMAGE, "cannot decode the image pixels", info.format);
    VipsImage *flat = vips_image_new_from_memory(px, (size_t)w * (size_t)h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    void *enc = NULL;
    size_t enc_len = 0;
    rc = !flat ? -1
         : webp ? vips_webpsave_buffer(flat, &enc, &enc_len, "Q", 80, NULL)
                : vips_jpegsave_buffer(flat, &enc, &enc_len, "Q", 82, "strip", TRUE, NULL);
    if (flat) g_object_unref(flat); /* before the pixels it points at */
    g_free(px);
    if (rc) return decode_vips_fail(err, errlen, IS_ERR_INTERNAL, "cannot encode the thumbnail", NULL);
    /* hand back malloc'ed memory so callers free it like every other buffer of ours */
    *out = malloc(enc_len ? enc_len : 1);
    if (!*out) {
        g_free(enc);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    memcpy(*out, enc, enc_len);
    *out_len = enc_len;
    g_free(enc);
    return IS_OK;
}
