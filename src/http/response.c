#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "util/status.h"

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

void http_fail(http_response *res, int status_code, const char *err) {
    http_error(res, is_status_http(status_code), err && *err ? err : is_status_name(status_code));
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
