#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "util/status.h"
#include "util/text.h"

void http_json(http_response *res, int status, json_t *body) {
    res->status = status;
    res->content_type = "application/json";
    res->body = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    res->len = res->body ? strlen(res->body) : 0;
    json_decref(body);
    if (!res->body && status < 500) http_error(res, 503, "out of memory");
}

void http_error(http_response *res, int status, const char *msg) {
    json_t *b = json_pack("{s:s}", "detail", msg ? msg : "error");
    res->status = status;
    res->content_type = "application/json";
    res->body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    res->len = res->body ? strlen(res->body) : 0;
    json_decref(b);
}

/* A server-side failure's own text names files, libraries and internals: it goes to the log under
 * a reference number, and the client gets that number with a plain statement. */
static atomic_ulong error_refs;

void http_fail(http_response *res, int status_code, const char *err) {
    int http = is_status_http(status_code);
    const char *name = is_status_name(status_code);
    if (status_code == IS_ERR_BUSY) { /* says nothing internal, and when to come back */
        http_error(res, http, err && *err ? err : name);
        http_add_header(res, "Retry-After", "1");
        return;
    }
    if (http < 500) {
        http_error(res, http, err && *err ? err : name);
        return;
    }
    unsigned long ref = atomic_fetch_add(&error_refs, 1) + 1;
    char logged[1024], msg[320];
    text_log_escape(err && *err ? err : name, logged, sizeof logged);
    fprintf(stderr, "imgsearch: error %lu (%s): %s\n", ref, name, logged);
    snprintf(msg, sizeof msg, "%s: %s (error %lu in the server log)", name,
             status_code == IS_ERR_NOMEM ? "the server is out of memory, try again later"
             : status_code == IS_ERR_UNAVAILABLE
                 ? "the database cannot be reached just now, so this was not done; try again later (searches "
                   "go on from this server's index)"
                 : status_code == IS_ERR_NO_SPACE
                     ? "the server's disk is full, so this was not stored (what was stored before is intact, "
                       "and searches go on); try again once space has been freed"
                     : "the server could not complete the request",
             ref);
    http_error(res, http, msg);
}

void http_result(http_response *res, int status, json_t *result, const char *message) {
    json_t *b = json_object();
    json_object_set_new(b, "result", result ? result : json_null());
    if (message) json_object_set_new(b, "message", json_string(message));
    http_json(res, status, b);
}

void http_bytes(http_response *res, const char *content_type, unsigned char *bytes, size_t len) {
    res->status = 200;
    res->content_type = content_type;
    res->body = (char *)bytes;
    res->len = len;
}

void http_add_header(http_response *res, const char *name, const char *value) {
    if (res->nheaders >= (int)(sizeof res->headers / sizeof *res->headers)) return;
    res->headers[res->nheaders].name = name;
    snprintf(res->headers[res->nheaders].value, sizeof res->headers[0].value, "%s", value);
    res->nheaders++;
}
