/* Static assets from the web directory. The router picks the file: a fixed name, or a UI asset
 * name that passed ui_type's whitelist (no slashes, no dots but the extension's), so a URL can
 * never name a path outside the web directory. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/file.h"
#include "util/status.h"

#define STATIC_MAX_BYTES (8u << 20)

/* What the UI's pages may load: only this server; images also from blob: (query previews). */
#define UI_CSP                                                                                        \
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "            \
    "frame-ancestors 'none'; form-action 'self'"

/* A strong validator from the content (FNV-1a 64): cheap next to reading the file. */
static void etag_of(const unsigned char *buf, size_t len, char out[24]) {
    unsigned long long h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ buf[i]) * 1099511628211ull;
    snprintf(out, 24, "\"%016llx\"", h);
}

/* Reads web_dir/name; missing_status is the answer when the file is absent. Assets are revalidated
 * on every load (no-cache + ETag), so a new binary's UI is never mixed with a cached old one. */
static void serve(const char *web_dir, const char *name, const char *content_type, int missing_status,
                  const http_request *req, http_response *res) {
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/%s", web_dir, name);
    unsigned char *buf;
    size_t len;
    int rc = file_read_all(path, STATIC_MAX_BYTES, &buf, &len, err, sizeof err);
    if (rc == IS_ERR_NOT_FOUND && missing_status == 404) {
        http_error(res, 404, "no such web asset");
        return;
    }
    if (rc) {
        http_fail(res, rc == IS_ERR_NOT_FOUND ? IS_ERR_INTERNAL : rc, "the server's web assets are missing");
        return;
    }
    char etag[24];
    etag_of(buf, len, etag);
    const char *inm = http_header(req, "If-None-Match");
    if (inm && strstr(inm, etag)) {
        free(buf);
        res->status = 304;
        res->content_type = content_type;
    } else {
        http_bytes(res, content_type, buf, len);
    }
    memcpy(res->etag, etag, sizeof etag);
    res->cache_control = "no-cache";
}

void api_static(const char *web_dir, const char *name, const char *content_type, const http_request *req,
                http_response *res) {
    serve(web_dir, name, content_type, 500, req, res);
}

void api_html_page(const char *web_dir, const char *name, const http_request *req, http_response *res) {
    serve(web_dir, name, "text/html; charset=utf-8", 500, req, res);
    if (res->status < 400) res->csp = UI_CSP;
}

/* The content type of an allowed UI asset name, or NULL: [a-z0-9_-]{1,64} then one of a few
 * extensions. */
static const char *ui_type(const char *name) {
    static const char *ext[][2] = {{"html", "text/html; charset=utf-8"},
                                   {"js", "text/javascript; charset=utf-8"},
                                   {"css", "text/css; charset=utf-8"},
                                   {"svg", "image/svg+xml"},
                                   {"png", "image/png"}};
    const char *dot = strchr(name, '.');
    if (!dot || dot == name || dot - name > 64) return NULL;
    for (const char *p = name; p < dot; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) return NULL;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcmp(dot + 1, ext[i][0])) return ext[i][1];
    return NULL;
}

void api_ui_asset(const char *web_dir, const char *name, const http_request *req, http_response *res) {
    const char *type = ui_type(name);
    if (!type) {
        http_error(res, 404, "no such web asset");
        return;
    }
    serve(web_dir, name, type, 404, req, res);
    if (res->status < 400 && !strncmp(type, "text/html", 9)) res->csp = UI_CSP;
}
