/* fuzz_decode.c — our code around libvips (src/embed/decode.h): every upload and search query is
 * an image a client sends, probed, decoded and preprocessed for the network, and thumbnailed.
 *
 * Input: the image file. The pixel limit is 4 megapixels here (the server's default is 100), so
 * that a decompression bomb is refused cheaply and a run stays fast; preprocessing makes a 64 x 64
 * input (the model's 224 costs more and reaches no other code), the thumbnail is 32 pixels, JPEG or
 * WebP by the input's length. Checks, beyond the sanitizers: a probe's size is positive and within
 * the limit, and a refusal uses the documented codes; preprocessing succeeds only after a
 * successful probe, with finite values inside the normalised range; a thumbnail is non-empty and
 * its size fits 32 x 32 when probed again. Findings inside libvips or its loaders are reported
 * upstream; this target is about our side staying safe and bounded. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/decode.h"
#include "fuzz_util.h"
#include "util/status.h"

#define FUZZ_MAX_PIXELS 4000000ull
#define FUZZ_SIZE 64

static bool refusal(int rc) {
    return rc == IS_ERR_EMPTY_IMAGE || rc == IS_ERR_UNSUPPORTED_IMAGE || rc == IS_ERR_CORRUPT_IMAGE ||
           rc == IS_ERR_IMAGE_TOO_LARGE || rc == IS_ERR_NOMEM;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    char err[256];
    if (decode_global_init((*argv)[0], err, sizeof err)) {
        fprintf(stderr, "fuzz_decode: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    decode_info info;
    int rc = decode_probe(data, size, FUZZ_MAX_PIXELS, &info, err, sizeof err);
    if (rc) FUZZ_CHECK(refusal(rc) && err[0]);
    else FUZZ_CHECK(info.width > 0 && info.height > 0 && (uint64_t)info.width * (uint64_t)info.height <= FUZZ_MAX_PIXELS &&
                    info.pages >= 1 && info.format[0]);

    decode_params p = {.size = FUZZ_SIZE, .crop_fraction = 0.875, .mean = {127, 127, 127}, .std = {128, 128, 128},
                       .max_pixels = FUZZ_MAX_PIXELS};
    float *out = malloc(sizeof(float) * FUZZ_SIZE * FUZZ_SIZE * 3);
    if (!out) abort();
    decode_info pinfo;
    int prc = decode_preprocess(data, size, &p, out, &pinfo, err, sizeof err);
    if (prc) {
        FUZZ_CHECK(prc != IS_ERR_INTERNAL || !"internal error in preprocessing");
        FUZZ_CHECK(refusal(prc) && err[0]);
    } else {
        FUZZ_CHECK(rc == IS_OK);
        for (size_t i = 0; i < FUZZ_SIZE * FUZZ_SIZE * 3; i++)
            FUZZ_CHECK(isfinite(out[i]) && out[i] >= -127.0f / 128 - 1e-6f && out[i] <= 128.0f / 128 + 1e-6f);
    }
    free(out);

    unsigned char *thumb = NULL;
    size_t tlen = 0;
    const char *format = size % 2 ? "webp" : "jpeg";
    int trc = decode_thumbnail(data, size, 32, format, FUZZ_MAX_PIXELS, &thumb, &tlen, err, sizeof err);
    if (trc) {
        FUZZ_CHECK(thumb == NULL);
        FUZZ_CHECK(trc != IS_ERR_INTERNAL || !"internal error making a thumbnail");
        FUZZ_CHECK(refusal(trc) && err[0]);
    } else {
        FUZZ_CHECK(rc == IS_OK && thumb && tlen > 0);
        decode_info tinfo;
        FUZZ_CHECK(decode_probe(thumb, tlen, 0, &tinfo, err, sizeof err) == IS_OK);
        FUZZ_CHECK(tinfo.width <= 32 && tinfo.height <= 32);
        FUZZ_CHECK(!strcmp(tinfo.format, format));
    }
    free(thumb);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "probe %d %s %dx%d, preprocess %d, thumbnail %d (%zu bytes): %s\n", rc, info.format, info.width,
                info.height, prc, trc, tlen, err);
    return 0;
}
