/* fuzz_apikey.c — API keys as requests present them (src/auth/apikey.h): the Authorization and
 * X-API-Key header values (or the UI's cookie), and the names and scopes `imgsearch keys` takes.
 *
 * Input: a flags byte (bit 0: an Authorization header is sent, bit 1: an X-API-Key header), then
 * the Authorization value, a NUL, the X-API-Key value (each cut at the next NUL, as header values
 * are C strings). The whole rest also goes to auth_name_valid and auth_scope_parse.
 * Checks, beyond the sanitizers: a presented key points into one of the two values, is 1..256
 * printable ASCII bytes without spaces, and when both headers are sent they name the same key; no
 * header means 0; its digest is 64 lower-case hex digits equal to itself and to nothing else
 * presented; a valid name is 1..64 of [A-Za-z0-9._-]; a parsed scope names itself back. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *rest = fuzz_cstr(data + 1, size - 1);
    size_t alen = strlen(rest);
    const char *authorization = (data[0] & 1) ? rest : NULL;
    const char *x_api_key = (data[0] & 2) ? (alen < size - 1 ? rest + alen + 1 : "") : NULL;
    char *xcopy = x_api_key ? strdup(x_api_key) : NULL; /* its own allocation: ASan sees its bounds */
    if (x_api_key && !xcopy) abort();

    const char *key = NULL;
    size_t len = 0;
    char why[160] = "";
    int rc = auth_key_presented(authorization, xcopy, &key, &len, why, sizeof why);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc == 0) FUZZ_CHECK(!authorization && !xcopy);
    if (rc < 0) FUZZ_CHECK(why[0]);
    if (rc == 1) {
        FUZZ_CHECK(len >= 1 && len <= 256);
        bool in_auth = authorization && key >= authorization && key + len <= authorization + strlen(authorization);
        bool in_x = xcopy && key >= xcopy && key + len <= xcopy + strlen(xcopy);
        FUZZ_CHECK(in_auth || in_x);
        for (size_t i = 0; i < len; i++) FUZZ_CHECK(key[i] > ' ' && key[i] <= '~');
        if (xcopy) FUZZ_CHECK(strlen(xcopy) == len && !memcmp(xcopy, key, len));
        if (authorization && xcopy) FUZZ_CHECK(strstr(authorization, xcopy) != NULL);
        char hex[AUTH_DIGEST_HEX + 1], again[AUTH_DIGEST_HEX + 1], other[AUTH_DIGEST_HEX + 1];
        auth_key_digest(key, len, hex);
        auth_key_digest(key, len, again);
        FUZZ_CHECK(strlen(hex) == AUTH_DIGEST_HEX);
        for (int i = 0; i < AUTH_DIGEST_HEX; i++) FUZZ_CHECK(isdigit((unsigned char)hex[i]) || (hex[i] >= 'a' && hex[i] <= 'f'));
        FUZZ_CHECK(auth_digest_equal(hex, again));
        auth_key_digest(key, len - 1, other);
        FUZZ_CHECK(!auth_digest_equal(hex, other));
    }

    const char *word = rest;
    if (auth_name_valid(word)) {
        size_t n = strlen(word);
        FUZZ_CHECK(n >= 1 && n <= AUTH_NAME_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(isalnum((unsigned char)word[i]) || word[i] == '.' || word[i] == '_' || word[i] == '-');
    }
    auth_scope scope;
    if (auth_scope_parse(word, &scope)) {
        FUZZ_CHECK(scope >= AUTH_READ && scope <= AUTH_ADMIN);
        FUZZ_CHECK(!strcmp(auth_scope_name(scope), word));
    }
    free(xcopy);
    free(rest);
    return 0;
}
