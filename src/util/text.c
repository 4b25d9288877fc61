#include "util/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (at most n bytes available), or 0 when the bytes
 * there are not one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

bool text_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

char *text_utf8_dup(const char *s, size_t len) {
    char *out = malloc(len * 3 + 1); /* every byte may become three */
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t j = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k) {
            memcpy(out + j, p + i, k);
            j += k;
            i += k;
        } else {
            memcpy(out + j, REPLACEMENT, 3);
            j += 3;
            i++;
        }
    }
    out[j] = 0;
    return out;
}

char *text_file_name_dup(const char *raw, const char *fallback) {
    const char *base = raw ? raw : "";
    for (const char *p = base; *p; p++)
        if (*p == '/' || *p == '\\') base = p + 1;
    char *clean = text_utf8_dup(base, strlen(base));
    if (!clean) return NULL;
    size_t n = 0;
    for (unsigned char *p = (unsigned char *)clean; *p; p++) {
        if (*p < 0x20 || *p == 0x7F) *p = '_';
        n++;
    }
    if (n > TEXT_NAME_MAX) { /* cut before a continuation byte would be split */
        n = TEXT_NAME_MAX;
        while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80) n--;
        clean[n] = 0;
    }
    if (n == 0 || !strcmp(clean, ".") || !strcmp(clean, "..")) {
        free(clean);
        return strdup(fallback);
    }
    return clean;
}

void text_log_escape(const char *s, char *out, size_t outlen) {
    if (!outlen) return;
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        bool plain = *p >= 0x20 && *p < 0x7F && *p != '\\' && *p != '"';
        size_t need = plain ? 1 : 4;
        if (j + need + 4 > outlen) { /* room for "..." and the terminator */
            if (outlen >= 4 && j + 4 <= outlen) {
                memcpy(out + j, "...", 3);
                j += 3;
            }
            break;
        }
        if (plain) out[j++] = (char)*p;
        else j += (size_t)snprintf(out + j, outlen - j, "\\x%02X", *p);
    }
    out[j < outlen ? j : outlen - 1] = 0;
}
