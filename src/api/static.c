/* Static assets from the web directory (names are fixed by the router, never taken from the URL). */
#include <limits.h>
#include <stdio.h>

#include "api/api.h"
#include "util/file.h"
#include "util/status.h"

#define STATIC_MAX_BYTES (8u << 20)

void api_static(const char *web_dir, const char *name, const char *content_type, http_response *res) {
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/%s", web_dir, name);
    unsigned char *buf;
    size_t len;
    int rc = file_read_all(path, STATIC_MAX_BYTES, &buf, &len, err, sizeof err);
    if (rc) {
        http_fail(res, rc == IS_ERR_NOT_FOUND ? IS_ERR_INTERNAL : rc, "the server's web assets are missing");
        return;
    }
    http_bytes(res, content_type, buf, len);
}
