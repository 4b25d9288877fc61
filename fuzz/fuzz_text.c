/* fuzz_text.c — bytes from outside made safe to store, show and log (src/util/text.h): uploaded
 * file names (multipart filename), names read back from old rows, request targets and methods in
 * the log line.
 *
 * Input: any bytes. Checks, beyond the sanitizers: text_utf8_valid agrees with a reference decoder
 * written here from RFC 3629; text_utf8_dup returns valid UTF-8 and the input unchanged when it was
 * valid; a stored file name is non-empty, valid UTF-8, at most TEXT_NAME_MAX bytes, without '/',
 * '\' or control bytes, never "." or ".."; a log-escaped string fits its buffer, is terminated and
 * holds only printable ASCII other than '"' (a backslash only to begin an \xNN escape). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "util/text.h"

/* RFC 3629 by code points: decode, then refuse overlong forms, surrogates and > U+10FFFF. */
static bool reference_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_of[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

static void check_escaped(const char *out, size_t outlen) {
    size_t n = strlen(out);
    FUZZ_CHECK(n < outlen);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK(c >= 0x20 && c < 0x7F && c != '"');
        if (c == '\\') FUZZ_CHECK(i + 3 < n + 1 && out[i + 1] == 'x');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    bool valid = text_utf8_valid(s, size);
    FUZZ_CHECK(valid == reference_valid(data, size));

    char *dup = text_utf8_dup(s, size);
    FUZZ_CHECK(dup);
    /* NUL bytes are valid UTF-8 and copied: compare up to the first */
    size_t dlen = strlen(dup);
    FUZZ_CHECK(text_utf8_valid(dup, dlen));
    if (valid) FUZZ_CHECK(!memcmp(dup, s, dlen) && (dlen == size || data[dlen] == 0));
    free(dup);

    char *cstr = fuzz_cstr(data, size);
    char *name = text_file_name_dup(cstr, "image");
    FUZZ_CHECK(name);
    size_t nlen = strlen(name);
    FUZZ_CHECK(nlen >= 1 && nlen <= TEXT_NAME_MAX);
    FUZZ_CHECK(text_utf8_valid(name, nlen));
    FUZZ_CHECK(strcmp(name, ".") && strcmp(name, ".."));
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7F && c != '/' && c != '\\');
    }
    free(name);

    static const size_t sizes[] = {1, 2, 4, 5, 8, 40, 600};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *out = malloc(sizes[i]);
        if (!out) abort();
        text_log_escape(cstr, out, sizes[i]);
        check_escaped(out, sizes[i]);
        free(out);
    }
    free(cstr);
    return 0;
}
