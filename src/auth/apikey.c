#include "auth/apikey.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const SCOPE_NAMES[] = {"none", "read", "write", "admin"};

const char *auth_scope_name(auth_scope scope) {
    return scope >= AUTH_NONE && scope <= AUTH_ADMIN ? SCOPE_NAMES[scope] : "none";
}

bool auth_scope_parse(const char *text, auth_scope *out) {
    for (int s = AUTH_READ; s <= AUTH_ADMIN; s++)
        if (text && !strcmp(text, SCOPE_NAMES[s])) {
            *out = (auth_scope)s;
            return true;
        }
    return false;
}

bool auth_name_valid(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > AUTH_NAME_MAX) return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return false;
    return true;
}

bool auth_key_generate(char out[AUTH_KEY_LEN + 1]) {
    static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[33] = {0}; /* 32 random bytes, one zero byte so that 264 bits = 44 sextets */
    if (RAND_bytes(raw, 32) != 1) return false;
    memcpy(out, AUTH_KEY_PREFIX, 4);
    char *o = out + 4;
    for (int i = 0; i < 33; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        for (int j = 0; j < 4 && o < out + AUTH_KEY_LEN; j++) *o++ = B64URL[(v >> (18 - 6 * j)) & 63];
    }
    *o = 0;
    OPENSSL_cleanse(raw, sizeof raw);
    return true;
}

void auth_key_digest(const char *key, size_t len, char hex[AUTH_DIGEST_HEX + 1]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) memset(md, 0, sizeof md);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

bool auth_digest_equal(const char *a, const char *b) {
    return strlen(a) == AUTH_DIGEST_HEX && strlen(b) == AUTH_DIGEST_HEX && CRYPTO_memcmp(a, b, AUTH_DIGEST_HEX) == 0;
}

/* A token: printable ASCII without spaces, 1..256 bytes (keys are 47; longer is never a key). */
static bool token_ok(const char *t, size_t n) {
    if (n < 1 || n > 256) return false;
    for (size_t i = 0; i < n; i++)
        if (t[i] <= ' ' || t[i] > '~') return false;
    return true;
}

static int refuse(char *why, size_t whylen, const char *msg) {
    snprintf(why, whylen, "%s", msg);
    return -1;
}

int auth_key_presented(const char *authorization, const char *x_api_key, const char **key, size_t *len, char *why,
                       size_t whylen) {
    const char *k = NULL;
    size_t n = 0;
    if (authorization) {
        const char *p = authorization;
        while (*p == ' ') p++;
        if (strncasecmp(p, "Bearer ", 7))
            return refuse(why, whylen, "the Authorization header must be 'Bearer <key>'");
        p += 7;
        while (*p == ' ') p++;
        n = strlen(p);
        while (n && p[n - 1] == ' ') n--;
        if (!token_ok(p, n)) return refuse(why, whylen, "the Authorization header's key is empty or malformed");
        k = p;
    }
    if (x_api_key) {
        size_t m = strlen(x_api_key);
        if (!token_ok(x_api_key, m)) return refuse(why, whylen, "the X-API-Key header is empty or malformed");
        if (k && (m != n || memcmp(k, x_api_key, n)))
            return refuse(why, whylen, "Authorization and X-API-Key name different keys");
        k = x_api_key;
        n = m;
    }
    if (!k) return 0;
    *key = k;
    *len = n;
    return 1;
}
