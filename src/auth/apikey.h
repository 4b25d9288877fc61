/* apikey.h — API keys: their scopes, how they are made, named, hashed and presented.
 *
 * A key is "isk_" followed by 43 base64url characters (32 random bytes from the operating system's
 * generator). Only its SHA-256 is ever stored: keys carry 256 bits of entropy, so a fast hash is
 * as good as a slow one against guessing, and checking a request costs one hash. Digests are
 * compared in constant time. Scopes are ordered: admin ⊃ write ⊃ read.
 *
 * Pure functions, thread-safe; nothing here allocates. */
#ifndef IMGSEARCH_APIKEY_H
#define IMGSEARCH_APIKEY_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { AUTH_NONE = 0, AUTH_READ = 1, AUTH_WRITE = 2, AUTH_ADMIN = 3 } auth_scope;

#define AUTH_KEY_PREFIX "isk_"
#define AUTH_KEY_LEN 47     /* prefix + 43 base64url characters */
#define AUTH_DIGEST_HEX 64  /* SHA-256 as lower-case hex */
#define AUTH_NAME_MAX 64

/* "read", "write", "admin" ("none" for AUTH_NONE). */
const char *auth_scope_name(auth_scope scope);
/* The scope a word names; false for anything else. */
bool auth_scope_parse(const char *text, auth_scope *out);
/* A key's name: 1..AUTH_NAME_MAX of [A-Za-z0-9._-], so that it is safe in logs and file names. */
bool auth_name_valid(const char *name);
/* A new random key into out (AUTH_KEY_LEN + 1 bytes); false when the generator failed. */
bool auth_key_generate(char out[AUTH_KEY_LEN + 1]);
/* The stored form of a presented key: hex SHA-256 of its len bytes. */
void auth_key_digest(const char *key, size_t len, char hex[AUTH_DIGEST_HEX + 1]);
/* Two hex digests equal? Takes the same time wherever they differ. */
bool auth_digest_equal(const char *a, const char *b);

/* The key a request presents, from its Authorization and X-API-Key header values (either may be
 * NULL): "Bearer <key>" (scheme case-insensitive) or the bare key. Returns 1 with *key and *len set,
 * 0 when neither header is there, -1 with why written when a header is malformed (another scheme,
 * an empty or over-long token, two different keys). */
int auth_key_presented(const char *authorization, const char *x_api_key, const char **key, size_t *len, char *why,
                       size_t whylen);

#endif
