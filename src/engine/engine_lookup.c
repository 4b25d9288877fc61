/* engine_lookup.c — which images are stored already, by the SHA-256 of their bytes (engine.h:
 * engine_hashes_stored). The names are checked here, so every caller (the API, `imgsearch import
 * --data`) refuses the same malformed input. Thread-safe: the store serialises what it must. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "util/status.h"

/* 64 lowercase hex digits, the form store_image.sha256 has. */
static bool well_formed(const char *hex) {
    return strlen(hex) == BLOB_HEX_LEN && strspn(hex, "0123456789abcdef") == BLOB_HEX_LEN;
}

int engine_hashes_stored(engine *e, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    if (n < 0 || n > ENGINE_HASHES_MAX)
        return is_fail(err, errlen, IS_ERR_INVALID, "from 0 to %d hashes at a time, not %d", ENGINE_HASHES_MAX, n);
    for (int i = 0; i < n; i++) {
        if (!hexes[i] || !well_formed(hexes[i])) {
            char shown[24] = ""; /* its start, letters and digits only (the text came from a client) */
            size_t k = 0;
            for (const char *p = hexes[i]; p && *p && k < 16; p++)
                shown[k++] = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ? *p : '?';
            if (hexes[i] && strlen(hexes[i]) > 16) memcpy(shown + k, "...", 4);
            else shown[k] = 0;
            return is_fail(err, errlen, IS_ERR_INVALID,
                           "hash %d ('%s') is not a SHA-256 as 64 lowercase hexadecimal digits", i, shown);
        }
    }
    return store_hashes_stored(e->db, hexes, n, stored, err, errlen);
}
